"""GitHub Actions' two channels from a step to the runner, written so that no value can forge
a command or an output.

Log commands: the runner reads every line a step prints, and acts on `::name k=v,...::data`
at the start of a line (after leading whitespace) and on `##[name k=v;...]data` *anywhere* in
a line (its older form: `##[set-output name=x;]y` in the middle of a line still sets an
output). It splits what it reads on `\\n`, on `\\r` and on `\\r\\n`. So a command we write has
its data and properties escaped (`%`, CR, LF; in properties `:` and `,` too, as the runner
unescapes them), and a line that comes from elsewhere (beach's own output, which can carry what
a server or a joiner said) is made inert: no control character, no `##[`, no leading `::`.

Step files: `$GITHUB_OUTPUT` takes `name<<DELIMITER`, the value's lines, then `DELIMITER` alone
on a line. A random delimiter per value, checked absent from it, lets any value through whole
and none end early (a `name=value` line would let a newline in the value start a new output).
`$GITHUB_STEP_SUMMARY` is Markdown, appended to.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from ..errors import BeachError
from ..text import printable

# What a line from elsewhere may hold at most: longer is cut (it is a log line, not data).
LINE_LIMIT = 2000
_OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*", re.ASCII)


def escape_data(text: str) -> str:
    """A command's data (after the second `::`): the runner turns these three back."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A command's property value (`title=...`): `:` would end the command's name part and `,`
    the property."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, data: str, **properties: str) -> str:
    """One log command line, e.g. `::notice title=T::message`."""
    props = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items())
    return f"::{name}{' ' + props if props else ''}::{escape_data(data)}"


def inert(line: str) -> str:
    """A line from elsewhere as the runner will only ever show it: controls (CR among them,
    which the runner reads as a line break) become '?', the older form's `##[` is broken up,
    and a line that would start with `::` gets a backslash before it."""
    text = printable(line, LINE_LIMIT).replace("##[", "## [")
    if text.lstrip().startswith("::"):
        text = "\\" + text
    return text


class StepLog:
    """The step's log: our stdout. Our own commands go through `command`; every other line,
    whatever its source, through `say`."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def say(self, line: str) -> None:
        self._write(inert(line))

    def command(self, name: str, data: str, **properties: str) -> None:
        self._write(command(name, data, **properties))

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()


class StepFileError(BeachError):
    """A step file could not be written."""


def output_block(name: str, value: str) -> str:
    """One output in the delimiter form, with a delimiter of its own that the value lacks."""
    if not _OUTPUT_NAME.fullmatch(name):
        raise ValueError(f"not an output name: {name!r}")
    for _ in range(8):
        delimiter = f"beach_{secrets.token_hex(16)}"
        if delimiter not in value:
            return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"
    raise ValueError(f"no delimiter found for the value of {name}")  # 8 collisions of 128 bits


def append_outputs(path: Path, values: Mapping[str, str]) -> None:
    """Append step outputs to `$GITHUB_OUTPUT`, in one write."""
    _append(path, "".join(output_block(name, value) for name, value in values.items()))


def append_summary(path: Path, markdown: str) -> None:
    """Append Markdown to `$GITHUB_STEP_SUMMARY`."""
    _append(path, markdown if markdown.endswith("\n") else markdown + "\n")


def _append(path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise StepFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
