"""The predict section (bench/predict.py) runs end to end: `python -m bench --quick --only
predict` prints every row, types through all four programs on the 100 ms link, and leaves no
namespace behind; and the scripted session it types means what it says. No speed is asserted:
the targets are judged by the report (docs/performance.md), never by a timed test. The one
thing asserted of beach is not a speed: on LAN, --predict auto adds no byte (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.predict import METHODS, SAME, SPEC  # noqa: E402
from bench.predict_legs import parse_summary  # noqa: E402
from bench.predict_script import BACKSPACE, ENTER, LEFT, LINES, RIGHT, keys_of, typed  # noqa: E402
from bench.results import ERROR  # noqa: E402

PROGRAMS = ("ip", "tc", "ethtool", "mosh")


def test_the_script_ends_as_the_commands_it_names() -> None:
    assert [typed(line) for line in LINES] == [
        "echo hello world",
        "printf '%s\\n' one two three",
        "ls -d /usr/bin",
        "cd /tmp && pwd",
        "echo $((6 * 7))",
    ]
    keys = [k.data for line in LINES for k in keys_of(line)]
    for special in (BACKSPACE, LEFT, RIGHT):
        assert special in keys
    assert keys.count(ENTER) == len(LINES)


def test_each_key_has_the_state_a_line_editor_shows() -> None:
    keys = keys_of("ab<c[[x]")
    assert [(k.text, k.cursor) for k in keys] == [
        ("a", 1),
        ("ab", 2),
        ("a", 1),  # backspace
        ("ac", 2),
        ("ac", 1),  # left
        ("ac", 0),
        ("xac", 1),  # inserted before the rest
        ("xac", 2),  # right
        ("xac", 2),  # Enter: not timed
    ]
    assert [k.glyph for k in keys] == [True] * 8 + [False]


def test_the_joiners_summary_line_is_read() -> None:
    log = (
        "2026-12-02 INFO beach.join: connected (rtc): hello +900 ms\n"
        "2026-12-02 INFO beach.join: predictive echo: 108 keystrokes guessed at, 70 shown "
        "before the host's echo, 140 cells confirmed, 1 shown wrong, 2 resets\n"
    )
    summary = parse_summary(log)
    assert summary is not None
    assert (summary.keys, summary.shown, summary.confirmed, summary.wrong, summary.resets) == (
        108,
        70,
        140,
        1,
        2,
    )
    assert parse_summary("nothing guessed\n") is None


@pytest.mark.e2e
@pytest.mark.netns
def test_quick_predict_section_types_through_every_program(tmp_path: Path) -> None:
    for program in PROGRAMS:
        need(program)
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the predict section needs root (network namespaces) in CI")
        pytest.skip("network namespaces need root")
    dump = tmp_path / "predict.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "predict", "--json", str(dump)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    section = json.loads(dump.read_text())["sections"]["predict"]
    assert section["error"] is None, section["error"]
    assert [row[0] for row in section["rows"]] == list(SPEC.labels)
    for label in SPEC.labels:
        assert label.strip() in done.stdout, f"row {label!r} not printed"
    rows = {row[0]: row for row in section["rows"]}
    for row in rows.values():
        assert not {"timeout", "failed", ERROR} & set(row), row
    columns = section["columns"]
    for label in ("keystroke to glyph p50 (ms)", "keystroke to glyph p99 (ms)"):
        row = rows[f"100 ms: {label}"]
        assert all(row[columns.index(m)] != "-" for m in METHODS), row
    for label in ("joiner's CPU during the ls cat (s, user + system)",):
        row = rows[f"broadband: {label}"]
        assert all(row[columns.index(m)] != "-" for m in ("beach never", "beach always")), row
    assert rows[SAME][columns.index("beach auto")].startswith("yes"), rows[SAME]
    # Nothing of its shaped links is left behind (other runs' namespaces may come and go).
    made = set(section["data"]["namespaces"])
    assert len(made) == 9  # LAN, 100 ms, broadband
    assert not made & set(namespaces())


def namespaces() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
