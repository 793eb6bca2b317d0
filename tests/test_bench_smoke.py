"""The benchmark suite still runs end to end: `python -m bench --quick` prints every row of
every table and writes its report only where it is told to. No speed is asserted here: the
targets are judged by the report (docs/performance.md), never by a timed test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.__main__ import SECTIONS  # noqa: E402
from bench.results import ERROR  # noqa: E402
from bench.ssh import NOT_AVAILABLE, find_sshd  # noqa: E402

pytestmark = pytest.mark.e2e


def test_quick_run_prints_every_row(tmp_path: Path) -> None:
    report = REPO / "docs" / "performance.md"
    before = report.read_bytes() if report.exists() else None
    output, dump = tmp_path / "performance.md", tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output), "--json", str(dump)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    result = json.loads(dump.read_text())
    markdown = output.read_text()
    assert list(result["sections"]) == list(SECTIONS)
    for key, module in SECTIONS.items():
        spec = module.SPEC
        section = result["sections"][key]
        assert section["error"] is None, section["error"]
        assert [row[0] for row in section["rows"]] == list(spec.labels)
        assert spec.title in done.stdout and spec.title in markdown
        for label in spec.labels:
            assert label.strip() in done.stdout, f"{key}: row {label!r} not printed"
            assert label.strip() in markdown, f"{key}: row {label!r} not in the report"
        for row in section["rows"]:
            assert len(row) == len(spec.columns)
            assert ERROR not in row, f"{key}: {row}"
    targets = {t["name"] for t in result["targets"]}
    assert targets == {t for m in SECTIONS.values() for t in m.SPEC.targets}

    # ssh figures are there exactly when sshd is (under CI the suite insists on sshd).
    latency = result["sections"]["latency"]
    ssh_column = latency["columns"].index("ssh")
    ssh_cells = [row[ssh_column] for row in latency["rows"]]
    if find_sshd() is None:
        assert all(cell == NOT_AVAILABLE for cell in ssh_cells)
    else:
        assert NOT_AVAILABLE not in ssh_cells

    # The checked-in report is only ever rewritten by a full run.
    assert (report.read_bytes() if report.exists() else None) == before
