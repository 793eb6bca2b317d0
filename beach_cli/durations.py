"""Durations as people write them (`90s`, `10m`, `1h30m`, `1.5h`, plain seconds), parsed in one
place, and the click types of the command line's human values.

A duration is one or more numbers, each with a unit (`d`, `h`, `m`, `s`), largest unit first and
each unit once; or a plain number of seconds. Digits are ASCII only (Python's `int` would take
Arabic-Indic or fullwidth ones), the text is short, and the result is more than zero and at
most MAX_SECONDS: a timer of a thousand years is a typo, and some event loops overflow on it.
"""

from __future__ import annotations

import math
import re
from typing import Any

import click

MAX_SECONDS = 365 * 24 * 3600.0
MAX_LENGTH = 32  # characters of a duration: more is not a duration (and int() of it is slow)
EXAMPLES = "e.g. 90s, 10m, 1h30m, or plain seconds"

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_PLAIN = re.compile(_NUMBER, re.ASCII)
_PART = re.compile(rf"({_NUMBER})([dhms])", re.ASCII)


class BadDuration(ValueError):
    """Not a duration; the message says why, in words for the person who typed it."""


def parse_duration(text: str) -> float:
    """Seconds, from `90s`, `10m`, `1h30m`, `1.5h`, `2d`, or plain seconds (`90`, `0.5`)."""
    value = text.strip()
    if not value:
        raise BadDuration(f"empty; expected a duration ({EXAMPLES})")
    if len(value) > MAX_LENGTH:
        raise BadDuration(f"too long to be a duration ({EXAMPLES})")
    if _PLAIN.fullmatch(value):
        seconds = float(value)
    else:
        seconds, pos, last = 0.0, 0, math.inf
        for part in _PART.finditer(value):
            if part.start() != pos:
                break
            size = UNITS[part.group(2)]
            if size >= last:  # `30m1h`, `1h1h`: largest unit first, each once
                raise BadDuration(f"{value!r}: put each unit once, largest first ({EXAMPLES})")
            last = size
            seconds += float(part.group(1)) * size
            pos = part.end()
        if pos != len(value) or pos == 0:
            raise BadDuration(f"{value!r} is not a duration ({EXAMPLES})")
    if not seconds > 0:
        raise BadDuration(f"{value!r}: a duration must be longer than 0 s")
    if seconds > MAX_SECONDS:
        raise BadDuration(f"{value!r} is longer than {format_duration(MAX_SECONDS)}")
    return seconds


def format_duration(seconds: float) -> str:
    """The short human form: 90 -> `1m30s`, 3600 -> `1h`, 0.5 -> `0.5s`."""
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:g}s"
    whole, out = round(seconds), ""
    for unit, size in UNITS.items():
        n, whole = divmod(whole, size)
        if n:
            out += f"{n}{unit}"
    return out or "0s"


def session_limits(
    wait_for_joiner: float | None, max_duration: float | None, exit_when_last_leaves: bool
) -> list[str]:
    """How a session's limits read after "the session ends ...": in the headless banner and
    in a CI job's summary, the same words."""
    limits = []
    if wait_for_joiner is not None:
        limits.append(f"if nobody joins within {format_duration(wait_for_joiner)}")
    if max_duration is not None:
        limits.append(f"after {format_duration(max_duration)} in any case")
    if exit_when_last_leaves:
        limits.append("when the last joiner leaves")
    return limits


class OneLineBadParameter(click.BadParameter):
    """A bad option value as one line (`beach: Invalid value for ...`) and exit code 2, instead
    of click's usage block: the line is all a script's log needs."""

    def show(self, file: Any = None) -> None:
        click.echo(f"beach: {self.format_message()}", err=True)


class Duration(click.ParamType):
    """A click option taking a duration; its value is seconds (float)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        try:
            return parse_duration(value)
        except BadDuration as exc:
            raise OneLineBadParameter(str(exc), ctx, param) from None
        except (TypeError, AttributeError):
            raise OneLineBadParameter(
                f"{value!r} is not a duration ({EXAMPLES})", ctx, param
            ) from None
