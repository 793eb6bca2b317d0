# ruff: noqa: F811 (keys and keys_site are test_identity's fixtures)
"""The CI recipe: action.yml and the step it runs (`python -m beach_cli.ci`), with a real
`beach serve`, the real step starting a real `beach host`, real `beach join`s, and the step's
GITHUB_OUTPUT and GITHUB_STEP_SUMMARY pointed at files here.

What the GitHub runner does with a step's log and files is modelled below from its documented
behaviour (and its source, actions/runner: ActionCommand.cs, ActionCommandManager.cs,
FileCommandManager.cs): the tests read the step's output the way the runner would, so a value
that could forge a command or an output there fails here.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest
import yaml
from conftest import BEACH, SHELL, TIMEOUT, Procs, beach_env, shell_ready
from hypothesis import given, settings
from hypothesis import strategies as st
from pexpect import fdpexpect
from test_identity import Agent, Key, keys, keys_site  # noqa: F401 (fixtures)

from beach_cli.ci import command as ci_command
from beach_cli.ci import report, share, workflow

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action.yml"

# -- the runner, as far as a step's output goes ----------------------------------------------------

# The commands the runner acts on (ActionCommandManager's extensions), besides a stop token.
REGISTERED = {
    "stop-commands",
    "set-env",
    "set-output",
    "save-state",
    "add-mask",
    "add-path",
    "add-matcher",
    "remove-matcher",
    "debug",
    "warning",
    "error",
    "notice",
    "group",
    "endgroup",
    "echo",
}


@dataclass(frozen=True)
class Command:
    name: str
    properties: dict[str, str]
    data: str


def _unescape(text: str, pairs: list[tuple[str, str]]) -> str:
    for escaped, char in pairs:
        text = text.replace(escaped, char)
    return text


DATA = [("%0D", "\r"), ("%0A", "\n"), ("%25", "%")]
PROPERTY = [("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")]
OLD = [("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%25", "%")]


def _split_properties(text: str, sep: str, pairs: list[tuple[str, str]]) -> dict[str, str]:
    props = {}
    for part in text.split(sep):
        key, eq, value = part.partition("=")
        if part and eq and key and value:
            props[key] = _unescape(value, pairs)
    return props


def _parse_v2(line: str, registered: set[str]) -> Command | None:
    """`::name k=v,...::data`, at the start of the line once leading whitespace is trimmed."""
    message = line.lstrip()
    if not message.startswith("::"):
        return None
    end = message.find("::", 2)
    if end < 0:
        return None
    name, space, props = message[2:end].partition(" ")
    if name.lower() not in registered:
        return None
    properties = _split_properties(props.strip(), ",", PROPERTY) if space else {}
    return Command(name, properties, _unescape(message[end + 2 :], DATA))


def _parse_v1(line: str, registered: set[str]) -> Command | None:
    """`##[name k=v;...]data`, anywhere in the line."""
    start = line.find("##[")
    if start < 0:
        return None
    close = line.find("]", start)
    if close < 0:
        return None
    name, space, props = line[start + 3 : close].partition(" ")
    if name.lower() not in registered:
        return None
    properties = _split_properties(props, ";", OLD) if space else {}
    return Command(name, properties, _unescape(line[close + 1 :], OLD))


def runner_commands(log: str) -> list[Command]:
    """The commands the runner would act on in this log (stop-commands honoured)."""
    registered, stop, found = set(REGISTERED), None, []
    for line in re.split(r"\r\n|\r|\n", log):
        cmd = _parse_v2(line, registered) or _parse_v1(line, registered)
        if cmd is None:
            continue
        if stop is not None:
            if cmd.name.lower() == stop:
                registered.discard(stop)
                stop = None
            continue
        if cmd.name.lower() == "stop-commands":
            stop = cmd.data.lower()
            registered.add(stop)
            continue
        found.append(cmd)
    return found


def runner_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it: `name=value`, or `name<<DELIM`, lines, `DELIM`."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    outputs: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        eq, heredoc = line.find("="), line.find("<<")
        if eq >= 0 and (heredoc < 0 or eq < heredoc):
            name, value = line.split("=", 1)
            outputs[name] = value
            continue
        assert heredoc > 0, f"the runner would fail on {line!r}"
        name, delimiter = line.split("<<", 1)
        value: list[str] = []
        while True:
            assert i < len(lines), f"the runner would find no delimiter for {name}"
            i += 1
            if lines[i - 1] == delimiter:
                break
            value.append(lines[i - 1])
        outputs[name] = "\n".join(value)
    return outputs


def outside_code(markdown: str) -> str:
    """The Markdown with its fenced blocks and code spans taken out: what renders as markup."""
    text = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1[ \t]*$", "", markdown)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", text, flags=re.S)


# -- the formats, on their own ---------------------------------------------------------------------

# Text made of what the runner's parsers and Markdown treat specially, and anything else.
PIECES = [*"ab:,%=;]#[ \r\n\t\x1b`<>", "::", "##[", "%0A", "%0D", "%25", "%3A", "%2C", "%3B", "%5D"]
HOSTILE = st.lists(st.sampled_from(PIECES) | st.characters(), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(HOSTILE, HOSTILE)
def test_a_command_carries_any_data_and_title_whole(data: str, title: str) -> None:
    title = "t" + title.strip() + "t"  # our titles: our own words around a value
    line = workflow.command("notice", data, title=title)
    assert "\n" not in line and "\r" not in line
    assert runner_commands(line) == [Command("notice", {"title": title}, data)]


@settings(max_examples=300, deadline=None)
@given(HOSTILE)
def test_a_line_from_elsewhere_is_never_a_command(text: str) -> None:
    for line in (text, "::" + text, "  ##[set-output name=x;]" + text, text + "##[error]x"):
        assert runner_commands(workflow.inert(line)) == []


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b_c", "join-link"]), HOSTILE | st.just("x\ny=1")))
def test_outputs_carry_any_value_whole_and_forge_none(values: dict[str, str]) -> None:
    block = "".join(workflow.output_block(name, value) for name, value in values.items())
    # The runner reads lines on LF; a lone CR stays in the value.
    assert runner_outputs(block) == values


def test_an_output_value_holding_a_would_be_delimiter_stays_one_value(tmp_path: Path) -> None:
    path = tmp_path / "out"
    evil = "x\nEOF\ninjected<<EOF\nowned\nEOF\nsession=evil"
    workflow.append_outputs(path, {"session": evil, "join_link": "ok"})
    assert runner_outputs(path.read_text()) == {"session": evil, "join_link": "ok"}


def test_github_user_is_passed_to_beach_host_only_when_access_is_limited(tmp_path: Path) -> None:
    def argv(user: str | None) -> list[str]:
        limits = report.Limits(60.0, 3600.0, True, False, user)
        opts = share.ShareOptions("ws://s:1/ws", limits, "1m", "1h", command=("sh",))
        return share.host_argv(opts, tmp_path / "info.json")

    limited = argv("octocat")
    assert limited[limited.index("--github-user") + 1] == "octocat"
    assert limited[-2:] == ["--", "sh"] and limited.index("--github-user") < limited.index("--")
    assert "--github-user" not in argv(None)


def test_the_server_input_falls_back_to_beach_server_and_embedded_means_the_runners_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def options(*argv: str) -> share.ShareOptions:
        args = [*argv, "--limit-access-to-actor", "false"]
        opts = ci_command.share_command.main(args, standalone_mode=False)
        assert isinstance(opts, share.ShareOptions)
        return opts

    monkeypatch.setenv("BEACH_SERVER", "wss://from-env.example")
    assert options().server == "wss://from-env.example"
    assert options("--server", "wss://given.example\n").server == "wss://given.example"
    embedded = options("--server", "embedded")
    assert embedded.server is None
    assert "BEACH_SERVER" not in embedded.env  # else beach host would use it after all
    assert "--server" not in share.host_argv(embedded, Path("info.json"))


# -- action.yml ------------------------------------------------------------------------------------


def _action() -> dict:
    return yaml.safe_load(ACTION.read_text())


def _share_step(action: dict) -> dict:
    return next(step for step in action["runs"]["steps"] if step.get("id") == "share")


def test_action_yml_is_a_composite_action_whose_inputs_are_all_used_and_declared() -> None:
    action = _action()
    assert action["runs"]["using"] == "composite"
    declared = set(action["inputs"])
    used = set(re.findall(r"\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}", ACTION.read_text()))
    assert used == declared, f"declared, never used: {declared - used}; used: {used - declared}"
    for name, spec in action["inputs"].items():
        assert spec.get("description"), name
        assert "default" in spec and isinstance(spec["default"], str), name

    # Each input reaches the share step's script through an environment variable (never spliced
    # into the script's text), as the option of the same name, which the script has.
    step = _share_step(action)
    options = {opt for param in ci_command.share_command.params for opt in param.opts}
    for name in declared:
        var = "IN_" + name.upper().replace("-", "_")
        assert re.fullmatch(rf"\$\{{\{{\s*inputs\.{name}\s*\}}\}}", step["env"][var]), name
        assert f'--{name} "${var}"' in step["run"], name
        assert f"--{name}" in options, name
    for step in action["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), f"an expression in {step['name']}'s script"


def test_action_yml_outputs_are_the_steps_outputs() -> None:
    action = _action()
    info = report.JoinInfo("s", "ws://x/ws", "http://x/j/#s-t", "beach join s-t", "v", "v")
    expected = set(report.outputs(info, report.Limits(None, None, False, False, None)))
    expected |= {"exit_code", "outcome"}
    assert set(action["outputs"]) == expected
    for name, spec in action["outputs"].items():
        assert spec["value"] == f"${{{{ steps.share.outputs.{name} }}}}", name


@pytest.mark.e2e
def test_action_yml_scripts_are_valid_bash() -> None:
    for step in _action()["runs"]["steps"]:
        if "run" in step:
            done = subprocess.run(
                ["bash", "-n"], input=step["run"], capture_output=True, text=True, timeout=30
            )
            assert done.returncode == 0, (step["name"], done.stderr)


# -- the step, for real ----------------------------------------------------------------------------


class Step:
    """`python -m beach_cli.ci ...` as the share step runs it: stdin /dev/null, stdout (the
    job's log) a pipe read with pexpect, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files here."""

    def __init__(self, tmp_path: Path, n: int, argv: list[str], **env: str) -> None:
        self.outputs_path = tmp_path / f"github-output-{n}"
        self.summary_path = tmp_path / f"github-step-summary-{n}"
        self.err_path = tmp_path / f"step-stderr-{n}.log"
        self.outputs_path.touch()
        self.summary_path.touch()
        files = {
            "GITHUB_OUTPUT": str(self.outputs_path),
            "GITHUB_STEP_SUMMARY": str(self.summary_path),
            "GITHUB_ACTOR": "octocat",
            "RUNNER_TEMP": str(tmp_path),
        }
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "beach_cli.ci", *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=beach_env(**{**files, **env}),
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        self.out = fdpexpect.fdspawn(
            self.proc.stdout, timeout=TIMEOUT, encoding="utf-8", codec_errors="replace"
        )
        self.transcript = io.StringIO()
        self.out.logfile_read = self.transcript
        self.started = time.monotonic()

    def notice(self) -> Command:
        """Wait for the join notice; the outputs and the summary are written before it."""
        self.out.expect(r"::notice [^\n]*\n", timeout=60)
        (cmd,) = runner_commands(self.out.match.group(0))
        return cmd

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> None:
        self.out.expect(pattern, timeout=timeout)

    def exit_code(self, timeout: float = TIMEOUT) -> int:
        self.out.expect(pexpect.EOF, timeout=timeout)
        return self.proc.wait(timeout=10)

    @property
    def log(self) -> str:
        return self.transcript.getvalue()

    @property
    def outputs(self) -> dict[str, str]:
        return runner_outputs(self.outputs_path.read_text())

    @property
    def summary(self) -> str:
        return self.summary_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def children(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def kill(self) -> None:
        """The step, then the beach host it started (which has a process group of its own)."""
        children = self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def step(tmp_path: Path) -> Iterator:
    started: list[Step] = []

    def start(*argv: str, command: list[str] | None = None, **env: str) -> Step:
        s = Step(tmp_path, len(started), [*argv, "--", *(command or SHELL)], **env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def _lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def _join(procs: Procs, command_line: str):
    argv = shlex.split(command_line)
    assert argv[:2] == ["beach", "join"], argv
    return procs.start([BEACH, *argv[1:]])


@pytest.mark.e2e
def test_the_job_is_told_once_and_the_person_inside_lets_it_go_on(
    procs: Procs, server: str, step
) -> None:
    s = step("--server", server, "--limit-access-to-actor", "false")
    notice = s.notice()
    out = s.outputs
    token = out["join_link"].split("#", 1)[1]
    assert notice.data.splitlines()[:3] == [
        f"Join: {out['join_link']}",
        f"From a terminal: {out['join_command']}",
        f"Watch (view-only): {out['view_link']}",
    ]
    assert out["session"] in notice.properties["title"]
    assert "Anyone with the link can join" in notice.data
    assert "ends if nobody joins within 10m, after 1h in any case" in notice.data
    assert out["github_user"] == ""
    summary = s.summary
    assert f"<{out['join_link']}>" in summary and f"<{out['view_link']}>" in summary
    assert f"```sh\n{out['join_command']}\n```" in summary
    assert "beach continue" in summary and "Anyone with the link" in summary

    joiner = _join(procs, out["join_command"])  # the command, from the step's output
    viewer = procs.start([BEACH, "join", out["view_link"]])  # and a link
    shell_ready(joiner)
    s.expect(r"joined \(view-only")
    joiner.send("echo in-the-job-$((6*7))\r")
    joiner.expect("in-the-job-42")
    viewer.expect("in-the-job-42")
    joiner.send("beach continue\r")
    assert s.exit_code() == 0
    joiner.expect(r"continued from the shared shell")
    assert joiner.exit_code() == 0 and viewer.exit_code() == 0

    log = s.log
    assert [c.name for c in runner_commands(log)] == ["notice"], log  # no warning, no error
    assert len(_lines_with(log, token)) == 1, log  # the token, in the notice alone
    assert len(_lines_with(log, out["view_link"].split("#", 1)[1])) == 1, log
    assert "in-the-job-42" not in log  # the shared shell is drawn nowhere
    assert "joined (read-write" in log  # beach host's notices do reach the log
    assert "continued from the shared shell (beach continue); session ended" in log
    assert s.outputs["exit_code"] == "0" and s.outputs["outcome"] == "ended"
    assert s.summary.count("### beach") == 1
    assert "this step succeeded" in s.summary
    assert not list(Path(s.outputs_path.parent).glob("beach-ci-*"))  # its directory is gone


@pytest.mark.e2e
@pytest.mark.parametrize("fail", [False, True])
def test_nobody_joining_is_a_warning_unless_it_should_fail_the_step(
    server: str, step, fail: bool
) -> None:
    s = step(
        "--server", server, "--limit-access-to-actor", "false", "--wait-for-joiner", "2s",
        "--fail-if-nobody-joins", str(fail).lower(),
    )  # fmt: skip
    s.notice()
    code = s.exit_code()
    assert time.monotonic() - s.started >= 2.0
    commands = runner_commands(s.log)
    assert [c.name for c in commands] == ["notice", "error" if fail else "warning"], s.log
    ending = commands[1]
    assert ending.data == "beach: nobody joined within 2s (--wait-for-joiner); session ended"
    assert "nobody joined" in ending.properties["title"]
    assert code == (11 if fail else 0)
    assert s.outputs["exit_code"] == "11" and s.outputs["outcome"] == "nobody-joined"
    said = "fails" if fail else "ends with a warning and the job goes on"
    assert f"If nobody joins within 2s, this step {said}" in s.summary
    assert "**Ended.**" in s.summary


@pytest.mark.e2e
def test_max_duration_ends_the_session_with_a_warning_and_the_job_goes_on(
    procs: Procs, server: str, step
) -> None:
    s = step("--server", server, "--limit-access-to-actor", "false", "--max-duration", "6s")
    s.notice()
    joiner = procs.start([BEACH, "join", s.outputs["join_link"]])
    shell_ready(joiner)
    assert s.exit_code(timeout=40) == 0
    assert time.monotonic() - s.started >= 6.0
    joiner.expect(r"the time limit \(6s, --max-duration\) ran out")
    assert joiner.exit_code() == 12
    commands = runner_commands(s.log)
    assert [c.name for c in commands] == ["notice", "warning"], s.log
    assert "the time limit (6s, --max-duration) ran out" in commands[1].data
    assert s.outputs["exit_code"] == "12" and s.outputs["outcome"] == "time-limit"


@pytest.mark.e2e
def test_the_shared_shell_can_fail_the_step_on_purpose(procs: Procs, server: str, step) -> None:
    s = step("--server", server, "--limit-access-to-actor", "false")
    s.notice()
    joiner = procs.start([BEACH, "join", s.outputs["join_link"]])
    shell_ready(joiner)
    joiner.send("exit 3\r")
    assert s.exit_code() == 3
    assert joiner.exit_code() == 3
    commands = runner_commands(s.log)
    assert [c.name for c in commands] == ["notice", "error"], s.log
    assert commands[1].data == "beach: the shared shell exited with status 3"
    assert s.outputs["outcome"] == "failed" and "failed with exit code 3" in s.summary


@pytest.mark.e2e
def test_a_cancelled_step_ends_the_session_and_its_host(server: str, step) -> None:
    s = step("--server", server, "--limit-access-to-actor", "false")
    s.notice()
    (host_pid,) = s.children()
    s.proc.send_signal(signal.SIGTERM)  # the runner cancelling the job
    assert s.exit_code() == 143
    assert not Path(f"/proc/{host_pid}").exists() or "zombie" in _state(host_pid)
    commands = runner_commands(s.log)
    assert [c.name for c in commands] == ["notice", "error"], s.log
    assert commands[1].data == "beach: terminated"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"


@pytest.mark.e2e
def test_limited_to_the_actor_only_a_key_of_that_github_account_gets_in(
    procs: Procs,
    server: str,
    step,
    tmp_path: Path,
    keys: dict[str, Key],
    keys_site: tuple[str, Path],
) -> None:
    """The default: beach host --github-user $GITHUB_ACTOR, its keys from a local stand-in for
    github.com. A joiner with the token and no such key is refused (exit 13) and the step goes
    on waiting; the actor's key gets in, from the command in the step's outputs."""
    url, site = keys_site
    (site / "octocat.keys").write_text(" ".join(keys["alice@laptop"].line.split()[:2]) + "\n")
    s = step("--server", server, BEACH_KEYS_URL=url)  # GITHUB_ACTOR=octocat
    notice = s.notice()
    assert "Only octocat can join, from a terminal, with an SSH key" in notice.data
    out = s.outputs
    assert out["github_user"] == "octocat"
    assert "Only octocat can join" in s.summary

    stranger = Agent(tmp_path / "stranger.sock")
    actor = Agent(tmp_path / "actor.sock")
    try:
        stranger.add(keys["mallory"])
        refused = procs.start(
            [BEACH, *shlex.split(out["join_command"])[1:]], SSH_AUTH_SOCK=str(stranger.sock)
        )
        refused.expect("this session admits only certain SSH keys")
        assert refused.exit_code() == 13
        s.expect(r"refused [^\n]*none of the allowed SSH keys")
        actor.add(keys["alice@laptop"])
        joiner = procs.start([BEACH, "join", out["join_link"]], SSH_AUTH_SOCK=str(actor.sock))
        shell_ready(joiner)
        s.expect(re.escape(f"key github:octocat {keys['alice@laptop'].fingerprint}"))
        joiner.send("echo the-actor-$((6*7))\r")
        joiner.expect("the-actor-42")
        joiner.send("beach continue\r")
        assert s.exit_code() == 0
        assert joiner.exit_code() == 0
    finally:
        stranger.close()
        actor.close()
    assert [c.name for c in runner_commands(s.log)] == ["notice"], s.log
    assert s.outputs["outcome"] == "ended"


@pytest.mark.e2e
def test_an_actor_whose_keys_cannot_be_had_fails_the_step_before_any_session(
    server: str, step, keys_site: tuple[str, Path]
) -> None:
    url, _ = keys_site  # no octocat.keys there: the account has no keys (or does not exist)
    s = step("--server", server, BEACH_KEYS_URL=url)
    assert s.exit_code() == 14
    commands = runner_commands(s.log)
    assert [c.name for c in commands] == ["error"], s.log
    assert "octocat" in commands[0].data
    assert s.outputs == {"exit_code": "14", "outcome": "failed"}
    assert s.summary == ""  # there never was a session


# -- hostile values --------------------------------------------------------------------------------

# Would-be commands, outputs and markup in every spelling the runner or Markdown might act on.
FORGERIES = "%0A::warning::pwned%25`<b>x</b>\n::set-output name=join_link::evil\r\n::error::pwned"


@pytest.mark.e2e
def test_a_hostile_server_url_that_works_forges_no_command_output_or_markup(
    procs: Procs, server: str, step
) -> None:
    url = f"{server}?q={FORGERIES}"
    s = step("--server", url, "--limit-access-to-actor", "false")
    notice = s.notice()
    out = s.outputs
    assert set(out) == {
        "session", "server", "join_link", "join_command", "view_link", "view_command",
        "github_user",
    }  # fmt: skip
    assert "pwned" in out["server"] and "\n" not in out["server"]
    assert out["join_link"].startswith(("http://127.0.0.1:", "https://127.0.0.1:"))
    assert "%0A::warning::pwned%25" in notice.data  # shown as it is, not decoded
    markup = outside_code(s.summary)
    assert "pwned" not in markup and "<b>" not in markup, s.summary

    joiner = _join(procs, out["join_command"])  # the quoted command still works
    shell_ready(joiner)
    joiner.send("echo hostile-$((2*3))\r")
    joiner.expect("hostile-6")
    joiner.send("beach continue\r")
    assert s.exit_code() == 0
    assert [c.name for c in runner_commands(s.log)] == ["notice"], s.log
    assert set(s.outputs) == set(out) | {"exit_code", "outcome"}


@pytest.mark.e2e
def test_a_hostile_server_url_that_fails_forges_nothing(step) -> None:
    url = f"##[set-output name=join_link;]evil,{FORGERIES}"
    s = step("--server", url, "--limit-access-to-actor", "false")
    assert s.exit_code() == 1
    commands = runner_commands(s.log)
    assert [c.name for c in commands] == ["error"], s.log
    assert "is not a server URL" in commands[0].data
    assert "##[set-output name=join_link;]evil" in commands[0].data  # said, not done
    assert s.outputs == {"exit_code": "1", "outcome": "failed"}
    assert s.summary == ""  # no session, nothing to summarize


@pytest.mark.e2e
@pytest.mark.parametrize(
    "actor",
    [
        "octocat\n::set-output name=join_link::evil",
        "octo%0A::error::cat",
        "dependabot[bot]",
        "##[set-output name=session;]x",
        "",
    ],
)
def test_an_actor_that_is_no_github_user_is_refused_before_anything_starts(
    server: str, step, actor: str
) -> None:
    s = step("--server", server, GITHUB_ACTOR=actor)  # limit-access-to-actor: true by default
    assert s.exit_code() == 2
    commands = runner_commands(s.log)
    assert [c.name for c in commands] == ["error"], s.log
    assert commands[0].data.startswith("limit-access-to-actor: ")
    if actor:
        assert repr(actor[:60]) in commands[0].data
    assert s.outputs == {} and s.summary == ""


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--wait-for-joiner", "10x"], "wait-for-joiner: '10x' is not a duration"),
        (["--max-duration", "0"], "max-duration: '0': a duration must be longer than 0 s"),
        (["--exit-when-last-leaves", "maybe"], "'maybe' is not a valid boolean"),
    ],
)
def test_a_bad_input_is_one_error_naming_it(server: str, step, argv: list[str], said: str) -> None:
    s = step("--server", server, "--limit-access-to-actor", "false", *argv)
    assert s.exit_code() == 2
    commands = runner_commands(s.log)
    assert [c.name for c in commands] == ["error"], s.log
    assert said in commands[0].data
    assert s.outputs == {}


@pytest.mark.e2e
def test_no_server_is_an_error_that_says_why_the_embedded_one_will_not_do(step) -> None:
    s = step("--limit-access-to-actor", "false")
    assert s.exit_code() == 2
    (error,) = runner_commands(s.log)
    assert error.data.startswith("server: no server given")
    assert "cannot be reached from outside" in error.data
