"""The host's NOTICE frame: a view-only joiner that types is told, once, that its keystrokes go
nowhere; the shared program never sees them."""

from __future__ import annotations

import re

import pytest
from conftest import Procs, start_host, start_join
from test_security import RECORDER

from beach_cli.host.stream import VIEW_ONLY_NOTICE

pytestmark = pytest.mark.e2e


def test_a_view_only_joiner_that_types_is_told_once(procs: Procs, server: str, tmp_path) -> None:
    log = tmp_path / "host.log"
    host, info = start_host(
        procs,
        tmp_path,
        server,
        command=["python3", "-c", RECORDER],  # prints every byte its PTY got, at END
        global_opts=("--log-file", str(log), "--log-level", "info"),
    )
    host.expect("recorder-ready")
    viewer = start_join(procs, info, key="view_join_command")
    viewer.expect("recorder-ready")
    viewer.send("KEYS-1")
    viewer.expect(re.escape(VIEW_ONLY_NOTICE))  # in its terminal's title
    viewer.send("KEYS-2")
    writer = start_join(procs, info)
    writer.expect("recorder-ready")
    writer.send("WRITER-END")
    for p in (host, writer, viewer):
        p.expect("WRITER-END")
    assert host.exit_code() == 0
    assert viewer.exit_code() == 0
    assert "KEYS" not in host.transcript.getvalue()  # the shared program never got them
    # Both keystrokes reached the host and were dropped (logged as the viewer left)...
    assert re.search(r"dropped 12 bytes of its input", log.read_text())
    # ...and the viewer was told once.
    assert viewer.transcript.getvalue().count(VIEW_ONLY_NOTICE) == 1
