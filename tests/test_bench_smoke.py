"""The benchmark suite still runs end to end: `python -m bench --quick` prints every row of
every table and writes its report only where it is told to. No speed is asserted here: the
targets are judged by the report (docs/performance.md), never by a timed test."""

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

from bench.__main__ import SECTIONS  # noqa: E402
from bench.reallink import SPEC as LINKS  # noqa: E402
from bench.results import ERROR  # noqa: E402
from bench.ssh import NOT_AVAILABLE, find_sshd  # noqa: E402

pytestmark = pytest.mark.e2e
LINK_PROGRAMS = ("ip", "tc", "ethtool", "mosh")


def bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m bench ARGS`, bounded. Past `timeout` it gets SIGTERM, on which it removes its
    namespaces and stops its sshd (a SIGKILL, as subprocess.run's timeout sends, left them)."""
    argv = [sys.executable, "-m", "bench", *args]
    with subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"bench ran over {timeout} s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


# The whole quick run takes ~200 s on this machine (its predict section alone ~75 s): the
# test's own bound is past bench's, so bench is stopped (and cleans up) before pytest is.
@pytest.mark.timeout(480)
def test_quick_run_prints_every_row(tmp_path: Path) -> None:
    report = REPO / "docs" / "performance.md"
    before = report.read_bytes() if report.exists() else None
    output, dump = tmp_path / "performance.md", tmp_path / "bench.json"
    done = bench("--quick", "--output", str(output), "--json", str(dump), timeout=400)
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


@pytest.mark.netns
@pytest.mark.timeout(240)  # past bench()'s own bound and its 60 s to clean up
def test_quick_links_section_measures_broadband(tmp_path: Path) -> None:
    """The real-link section on its own: under CI it must run (root, ip, tc, ethtool, mosh and
    sshd all there), and --quick gives every broadband figure, none timed out."""
    for program in LINK_PROGRAMS:
        need(program)
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the links section needs root (network namespaces) in CI")
        pytest.skip("network namespaces need root")
    before = set(namespaces())
    dump = tmp_path / "links.json"
    done = bench("--quick", "--only", "links", "--json", str(dump), timeout=150)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    section = json.loads(dump.read_text())["sections"]["links"]
    assert section["error"] is None, section["error"]
    assert [row[0] for row in section["rows"]] == list(LINKS.labels)
    broadband = [row for row in section["rows"] if row[0].startswith("broadband:")]
    methods = range(1, 5)  # beach, ssh -tt, ssh -C, mosh
    for row in broadband:
        assert not {"timeout", "failed", ERROR} & set(row), row
        assert not any("not available" in c for c in row), row
    for label in ("echo p50 (ms)", "cat ls --color to screen (s)", "cat build log to screen (s)"):
        row = next(r for r in broadband if r[0] == f"broadband: {label}")
        assert all(row[i] != "-" for i in methods), row
    # Nothing of the shaped links is left behind (another run's namespaces may come and go).
    assert not {n for n in namespaces() if n.startswith("bl")} - before


def namespaces() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
