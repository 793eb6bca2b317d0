"""What a CI job is told, in words: how to join (once: a notice, a step summary, step outputs),
what limits the session has, and how it ended (the step's exit code and why).

The join information comes from `beach host --info-file`; its values (the server's URL, the
session id a server chose) are data from elsewhere, shown only as code in Markdown and only
through workflow.py in the log.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..durations import format_duration, session_limits
from ..errors import BeachError
from ..text import printable

# beach host's exit codes the step does not count as failures (README, "Errors").
NOBODY_JOINED = 11
TIME_LIMIT = 12

# A link shown as a Markdown link only when it is plainly one (else as code): no space, quote,
# angle bracket, backtick or pipe that could end it early or turn it into something else.
_PLAIN_LINK = re.compile(r"https?://[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+", re.ASCII)


@dataclass(frozen=True)
class Limits:
    """What bounds the session besides its shell, and who may join (None: anyone with a link)."""

    wait_for_joiner: float | None
    max_duration: float | None
    exit_when_last_leaves: bool
    fail_if_nobody_joins: bool
    github_user: str | None

    def sentence(self) -> str:
        parts = session_limits(self.wait_for_joiner, self.max_duration, self.exit_when_last_leaves)
        if not parts:
            return "The session ends when its shell does (or the step's timeout-minutes)."
        return "The session ends " + ", ".join(parts) + "."

    def who(self) -> str:
        if self.github_user is None:
            return (
                "Anyone with the link can join: whoever can read this job's log can read it "
                "(for a public repository, everyone)."
            )
        return (
            f"Only {self.github_user} can join, from a terminal, with an SSH key of that GitHub "
            "account (beach join uses the ssh-agent, or -i KEYFILE)."
        )


@dataclass(frozen=True)
class JoinInfo:
    """The session as `beach host --info-file` describes it."""

    session: str
    server: str
    join_link: str
    join_command: str  # a shell command line, quoted
    view_link: str
    view_command: str

    @classmethod
    def read(cls, path: Path) -> JoinInfo:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BeachError(f"cannot read beach host's join information in {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise BeachError(f"{path} does not hold beach host's join information")
        return cls(
            session=_text(data, "session"),
            server=_text(data, "server"),
            join_link=_text(data, "join_link"),
            join_command=shlex.join(_argv(data, "join_command")),
            view_link=_text(data, "view_link"),
            view_command=shlex.join(_argv(data, "view_join_command")),
        )


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise BeachError(f"beach host's join information has no {key}")
    return value


def _argv(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BeachError(f"beach host's join information has no {key}")
    return value


# -- how to join, said once ------------------------------------------------------------------------


def notice(info: JoinInfo, limits: Limits) -> tuple[str, str]:
    """The annotation's title and message (the job's log and its run page show both)."""
    title = f"beach: this job's shell is shared (session {info.session})"
    lines = [
        f"Join: {info.join_link}",
        f"From a terminal: {info.join_command}",
        f"Watch (view-only): {info.view_link}",
        limits.who(),
        f"{limits.sentence()} In the shared shell, `beach continue` ends it and the job goes on.",
    ]
    return title, "\n".join(lines)


def summary(info: JoinInfo, limits: Limits) -> str:
    """The step summary's block, in Markdown."""
    wait = limits.wait_for_joiner
    if wait is None:
        nobody = ""
    elif limits.fail_if_nobody_joins:
        nobody = f" If nobody joins within {format_duration(wait)}, this step fails."
    else:
        nobody = (
            f" If nobody joins within {format_duration(wait)}, this step ends with a warning and "
            "the job goes on."
        )
    return "\n".join(
        [
            "### beach: this job's shell is shared",
            "",
            f"Session {_code(info.session)} on {_code(info.server)}.",
            "",
            f"- **Join** (read-write): {_link(info.join_link)}",
            f"- **Watch** (view-only): {_link(info.view_link)}",
            "",
            "From a terminal:",
            "",
            _block(info.join_command),
            "",
            f"**Who can join.** {limits.who()}",
            "",
            f"**Limits.** {limits.sentence()}{nobody}",
            "",
            "**Let the job go on.** In the shared shell, run `beach continue` (or "
            '`touch "$BEACH_CONTINUE_FILE"`): the session ends and this step succeeds. `exit 1` '
            "ends it and fails the step instead.",
            "",
        ]
    )


def outputs(info: JoinInfo, limits: Limits) -> dict[str, str]:
    """The step's outputs, as soon as the session is up."""
    return {
        "session": info.session,
        "server": info.server,
        "join_link": info.join_link,
        "join_command": info.join_command,
        "view_link": info.view_link,
        "view_command": info.view_command,
        "github_user": limits.github_user or "",
    }


def _code(text: str) -> str:
    """Inline code that no value can close early: a run of backticks longer than any in it."""
    text = printable(text, 1000)
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def _block(text: str) -> str:
    text = printable(text, 1000)
    fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence}sh\n{text}\n{fence}"


def _link(url: str) -> str:
    return f"<{url}>" if _PLAIN_LINK.fullmatch(url) else _code(url)


# -- how it ended ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The step's ending: its exit code, the annotation that says why (none for a plain
    success), and the `outcome` output."""

    code: int
    level: str | None  # "warning" or "error": the annotation's command
    title: str
    name: str  # ended | nobody-joined | time-limit | failed


def judge(beach_code: int, limits: Limits) -> Outcome:
    """beach host's exit code -> the step's (its last line says why, in the annotation)."""
    if beach_code == 0:
        return Outcome(0, None, "", "ended")
    if beach_code == NOBODY_JOINED and not limits.fail_if_nobody_joins:
        return Outcome(0, "warning", "beach: nobody joined; the job goes on", "nobody-joined")
    if beach_code == NOBODY_JOINED:
        return Outcome(beach_code, "error", "beach: nobody joined", "nobody-joined")
    if beach_code == TIME_LIMIT:
        return Outcome(0, "warning", "beach: the session's time ran out", "time-limit")
    # The shared shell's own status (`exit 1` in it), a bad option, an unreachable server...
    title = f"beach: the session ended with exit code {beach_code}"
    return Outcome(beach_code, "error", title, "failed")


def summary_ending(outcome: Outcome, line: str) -> str:
    said = _code(line) if line else "(beach host said nothing)"
    if outcome.code == 0:
        goes_on = "this step succeeded"
    else:
        goes_on = f"this step failed with exit code {outcome.code}"
    return f"\n**Ended.** {said}: {goes_on}.\n"
