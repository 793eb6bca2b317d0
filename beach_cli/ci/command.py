"""`python -m beach_cli.ci`: what action.yml's share step runs, one option per input of the
action (booleans and durations as the action's inputs spell them: text).

A bad input is one `::error::` line in the log and exit code 2, before beach host starts:
the step's log is where the person who set it up looks.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from ..durations import BadDuration, parse_duration
from .report import Limits
from .share import ShareOptions, share
from .workflow import StepLog

# `server: embedded`: beach host's own server, on the runner (reachable only on its network).
EMBEDDED = "embedded"
# A GitHub account name: letters, digits and hyphens, at most 39. A bot (`name[bot]`) has none.
_GITHUB_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}", re.ASCII)
_LIST = re.compile(r"[\s,]+")


class ActionInputError(click.UsageError):
    """An input of the action that cannot be used; the message names the input."""


def _duration(name: str, text: str) -> tuple[str | None, float | None]:
    """The duration as given (for beach host) and in seconds (for what we say); empty: none."""
    text = text.strip()
    if not text:
        return None, None
    try:
        return text, parse_duration(text)
    except BadDuration as exc:
        raise ActionInputError(f"{name}: {exc}") from None


def _server(text: str, env: dict[str, str]) -> str | None:
    """The server beach host uses: the input, else $BEACH_SERVER; `embedded` for its own."""
    server = text.strip() or env.get("BEACH_SERVER", "").strip()
    if not server:
        raise ActionInputError(
            "server: no server given. A runner's own (embedded) server cannot be reached from "
            "outside its network: set `server` (or BEACH_SERVER) to a `beach serve` that both "
            f"the runner and you can reach, e.g. wss://beach.example.com, or to `{EMBEDDED}` "
            "for a runner you can reach directly"
        )
    return None if server == EMBEDDED else server


def _github_user(limit: bool, actor: str | None) -> str | None:
    if not limit:
        return None
    actor = (actor or "").strip()
    if not actor:
        raise ActionInputError(
            "limit-access-to-actor: GITHUB_ACTOR is not set: who is the workflow's actor?"
        )
    if not _GITHUB_USER.fullmatch(actor):
        raise ActionInputError(
            f"limit-access-to-actor: the workflow's actor {actor[:60]!r} is not a GitHub user "
            "name with SSH keys (a bot has none); set limit-access-to-actor: false to let "
            "anyone with the link in"
        )
    return actor


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--server", default="", help=f"URL of a `beach serve`; empty: $BEACH_SERVER; {EMBEDDED!r}."
)
@click.option(
    "--limit-access-to-actor",
    type=click.BOOL,
    default=True,
    show_default=True,
    help="Only $GITHUB_ACTOR may join (beach host --github-user).",
)
@click.option("--actor", envvar="GITHUB_ACTOR", help="The workflow's actor (GITHUB_ACTOR).")
@click.option("--wait-for-joiner", default="10m", show_default=True, help="Empty: no limit.")
@click.option("--max-duration", default="1h", show_default=True, help="Empty: no limit.")
@click.option("--exit-when-last-leaves", type=click.BOOL, default=True, show_default=True)
@click.option("--ice-servers", default="", help="STUN/TURN URLs, comma or newline separated.")
@click.option(
    "--fail-if-nobody-joins",
    type=click.BOOL,
    default=False,
    show_default=True,
    help="Nobody joining fails the step (else: a warning, and the job goes on).",
)
@click.option(
    "--start-timeout",
    type=click.FloatRange(1, 600),
    default=60.0,
    show_default=True,
    help="Seconds for beach host to register with the server.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def share_command(
    server: str,
    limit_access_to_actor: bool,
    actor: str | None,
    wait_for_joiner: str,
    max_duration: str,
    exit_when_last_leaves: bool,
    ice_servers: str,
    fail_if_nobody_joins: bool,
    start_timeout: float,
    command: tuple[str, ...],
) -> ShareOptions:
    """Share this CI job's shell with beach; tell the job how to join once."""
    env = dict(os.environ)
    url = _server(server, env)
    if url is None:
        env.pop("BEACH_SERVER", None)  # beach host would use it instead of its own
    wait_text, wait = _duration("wait-for-joiner", wait_for_joiner)
    max_text, limit = _duration("max-duration", max_duration)
    limits = Limits(
        wait_for_joiner=wait,
        max_duration=limit,
        exit_when_last_leaves=exit_when_last_leaves,
        fail_if_nobody_joins=fail_if_nobody_joins,
        github_user=_github_user(limit_access_to_actor, actor),
    )
    return ShareOptions(
        server=url,
        limits=limits,
        wait_for_joiner=wait_text,
        max_duration=max_text,
        ice_servers=tuple(u for u in _LIST.split(ice_servers) if u),
        command=command,
        start_timeout=start_timeout,
        output_file=_step_file(env, "GITHUB_OUTPUT"),
        summary_file=_step_file(env, "GITHUB_STEP_SUMMARY"),
        env=env,
    )


def _step_file(env: dict[str, str], name: str) -> Path | None:
    value = env.get(name)
    return Path(value) if value else None


def main() -> None:
    log = StepLog(sys.stdout)
    try:
        result: Any = share_command.main(sys.argv[1:], prog_name="beach-ci", standalone_mode=False)
    except click.ClickException as exc:
        log.command("error", exc.format_message(), title="beach: a bad input")
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    if not isinstance(result, ShareOptions):  # --help
        sys.exit(0)
    sys.exit(share(result, log))
