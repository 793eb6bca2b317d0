"""The `beach host` a CI step shares its shell with: a child process, headless, whose join
information is told to the job once and whose exit code becomes the step's.

beach host prints its join information on stdout as a banner; here the banner is held back
(the notice says it instead: once, not twice in the log) and every other line it prints, on
stdout (who joined, who left) or stderr (its exit line), goes to the log made inert. The
banner's first line is the sign that the info file is there: `beach host` writes the file,
then prints the banner.

The child has a process group of its own, so a signal meant for the step (the runner's
cancel, a Ctrl-C) reaches it once, from here, as SIGTERM: it then ends its session, telling
its joiners, and exits 143.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BeachError
from . import report
from .workflow import StepLog, append_outputs, append_summary

# The first line of `beach host --headless`'s banner (host/session.py, _headless_banner); the
# banner's other lines are indented by two spaces.
BANNER = "beach sharing session "
STOP_GRACE = 15.0  # after SIGTERM, beach host has this long to end its session, then SIGKILL
DRAIN = 5.0  # once beach host has exited, what it printed has this long to be read
# Past --max-duration, beach host has ended the session by itself; this much later, we end it.
WATCHDOG_SLACK = 60.0
LINE_BYTES = 64 * 1024  # a longer line from beach host is not shown


@dataclass(frozen=True)
class ShareOptions:
    server: str | None  # None: beach host's embedded server
    limits: report.Limits
    wait_for_joiner: str | None  # durations as given (checked), passed on to beach host
    max_duration: str | None
    ice_servers: tuple[str, ...] = ()
    command: tuple[str, ...] = ()  # the shared program; empty: the user's shell
    start_timeout: float = 60.0  # for beach host to register and write its join information
    output_file: Path | None = None  # $GITHUB_OUTPUT
    summary_file: Path | None = None  # $GITHUB_STEP_SUMMARY
    env: dict[str, str] = field(default_factory=dict)  # beach host's environment


def host_argv(opts: ShareOptions, info_file: Path) -> list[str]:
    """The `beach host` command line: this Python's beach, whatever is on PATH."""
    argv = [sys.executable, "-m", "beach_cli", "host", "--headless", "--info-file", str(info_file)]
    if opts.server is not None:
        argv += ["--server", opts.server]
    for url in opts.ice_servers:
        argv += ["--ice-server", url]
    if opts.wait_for_joiner is not None:
        argv += ["--wait-for-joiner", opts.wait_for_joiner]
    if opts.max_duration is not None:
        argv += ["--max-duration", opts.max_duration]
    if opts.limits.exit_when_last_leaves:
        argv.append("--exit-when-last-leaves")
    if opts.limits.github_user is not None:
        argv += ["--github-user", opts.limits.github_user]
    if opts.command:
        argv += ["--", *opts.command]
    return argv


def share(opts: ShareOptions, log: StepLog) -> int:
    """Share until beach host ends; the step's exit code."""
    runner_temp = os.environ.get("RUNNER_TEMP", "")  # the runner empties it after the job
    workdir = tempfile.mkdtemp(
        prefix="beach-ci-", dir=runner_temp if os.path.isdir(runner_temp) else None
    )
    try:
        return asyncio.run(_Share(opts, log, Path(workdir) / "info.json").run())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _Share:
    def __init__(self, opts: ShareOptions, log: StepLog, info_file: Path) -> None:
        self.opts = opts
        self.log = log
        self.info_file = info_file
        self.proc: asyncio.subprocess.Process | None = None
        self.registered = asyncio.Event()  # the banner's first line came
        self.announced = False  # the job was told how to join
        self.last_line = ""  # beach host's last line on stderr: why it ended
        self.failure: str | None = None  # why we ended it, when we did
        self._banner = "before"  # before | in | after: the banner is held back
        self._stopping = False
        self._stop_asked = False
        self._timers: list[asyncio.TimerHandle] = []

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        for sig in signals:  # before the child exists: it must never outlive us unasked
            loop.add_signal_handler(sig, self._stop, None)
        self.proc = proc = await asyncio.create_subprocess_exec(
            *host_argv(self.opts, self.info_file),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.opts.env,
            process_group=0,
            limit=LINE_BYTES,
        )
        assert proc.stdout is not None and proc.stderr is not None
        if self._stop_asked:
            self._stop(None)
        pumps = [
            asyncio.create_task(self._pump(proc.stdout, self._stdout_line)),
            asyncio.create_task(self._pump(proc.stderr, self._stderr_line)),
        ]
        exited = asyncio.create_task(proc.wait())
        try:
            await self._until_registered(exited)
            code = await exited
            _, pending = await asyncio.wait(pumps, timeout=DRAIN)
            for task in pending:
                task.cancel()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            for timer in self._timers:
                timer.cancel()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        return self._end(128 - code if code < 0 else code)

    async def _until_registered(self, exited: asyncio.Task[int]) -> None:
        """beach host registers (the job is told how to join) or ends first, in time."""
        registered = asyncio.create_task(self.registered.wait())
        try:
            done, _ = await asyncio.wait(
                {registered, exited},
                timeout=self.opts.start_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            registered.cancel()
        if registered in done:
            try:
                self._announce()
            except BeachError as exc:
                self._stop(exc.message)
            return
        if not done:
            self._stop(f"beach host did not register within {self.opts.start_timeout:g} s")

    def _announce(self) -> None:
        info = report.JoinInfo.read(self.info_file)
        limits = self.opts.limits
        # The files first: once the notice is out, someone may already be joining.
        if self.opts.output_file is not None:
            append_outputs(self.opts.output_file, report.outputs(info, limits))
        if self.opts.summary_file is not None:
            append_summary(self.opts.summary_file, report.summary(info, limits))
        self.announced = True
        title, message = report.notice(info, limits)
        self.log.command("notice", message, title=title)
        if limits.max_duration is not None:
            self._later(limits.max_duration + WATCHDOG_SLACK, "beach host outlived --max-duration")

    def _stop(self, failure: str | None) -> None:
        """End beach host's session: on a signal to us (failure None), or because of `failure`."""
        if failure is not None and self.failure is None:
            self.failure = failure
        proc = self.proc
        if proc is None:  # a signal while it is being started: stopped once it is
            self._stop_asked = True
            return
        if self._stopping or proc.returncode is not None:
            return
        self._stopping = True
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        self._later(STOP_GRACE, None, kill=True)

    def _later(self, delay: float, failure: str | None, kill: bool = False) -> None:
        def fire() -> None:
            if kill and self.proc is not None and self.proc.returncode is None:
                self.proc.kill()
            elif not kill:
                self._stop(failure)

        self._timers.append(asyncio.get_running_loop().call_later(delay, fire))

    # -- what beach host prints ------------------------------------------------------------------

    async def _pump(self, stream: asyncio.StreamReader, each: Callable[[str], None]) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # longer than LINE_BYTES: asyncio drops it
                each("(a line too long to show)")
                continue
            if not raw:
                return
            each(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _stdout_line(self, line: str) -> None:
        if self._banner == "before" and line.startswith(BANNER):
            self._banner = "in"
            self.registered.set()
            return
        if self._banner == "in":
            if line.startswith("  "):
                return
            self._banner = "after"
        self.log.say(line)

    def _stderr_line(self, line: str) -> None:
        self.log.say(line)
        if line.strip():
            self.last_line = line.strip()

    # -- the end ---------------------------------------------------------------------------------

    def _end(self, code: int) -> int:
        limits = self.opts.limits
        if self.failure is not None:
            outcome = report.Outcome(1, "error", "beach: the session was ended", "failed")
            why = self.failure
        else:
            outcome = report.judge(code, limits)
            why = self.last_line or f"beach host exited with code {code}"
        if outcome.level is not None:
            self.log.command(outcome.level, why, title=outcome.title)
        try:
            if self.opts.output_file is not None:
                ending = {"exit_code": str(code), "outcome": outcome.name}
                append_outputs(self.opts.output_file, ending)
            if self.opts.summary_file is not None and self.announced:
                append_summary(self.opts.summary_file, report.summary_ending(outcome, why))
        except BeachError as exc:
            self.log.command("error", exc.message, title="beach")
            return outcome.code or 1
        return outcome.code
