"""`beach host --qr`: the code a person sees decodes to the link. What the host printed is read
back glyph by glyph into modules, drawn as an image, and decoded by zbarimg (Debian's zbar):
a real QR reader, not the library that made the code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import BEACH, TIMEOUT, Procs, need, shell_ready, start_host, strip_ansi

from beach_cli.qr import qr_lines

LINK = "http://192.168.1.20:7777/j/#k7m2qx-h4tz9p"
# glyph -> (top light, bottom light)
GLYPHS = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}
SCALE = 6  # pixels per module


def qr_block(text: str) -> list[str]:
    """The QR code's lines in what a terminal showed: the run of lines made of block glyphs."""
    lines = [line.strip("\r") for line in strip_ansi(text).splitlines()]
    block = [line.strip() for line in lines if line.strip() and set(line.strip()) <= set(GLYPHS)]
    assert block, f"no QR code in:\n{text}"
    return block


def decode(block: list[str], tmp_path: Path) -> str:
    """zbarimg's reading of the code drawn by `block` (light modules white, dark black)."""
    width = max(len(line) for line in block)
    rows: list[list[bool]] = []
    for line in block:
        pairs = [GLYPHS[c] for c in line.ljust(width)]
        rows.append([top for top, _ in pairs])
        rows.append([bottom for _, bottom in pairs])
    image = tmp_path / "qr.pbm"  # P1: 1 is black
    out = [f"P1\n{width * SCALE} {len(rows) * SCALE}\n"]
    for row in rows:
        line = " ".join("0" if light else "1" for light in row for _ in range(SCALE))
        out += [line + "\n"] * SCALE
    image.write_text("".join(out))
    done = subprocess.run(
        [need("zbarimg"), "--quiet", "--raw", str(image)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_code_decodes_to_the_link(tmp_path: Path) -> None:
    for colour in (True, False):
        assert decode(qr_block("\n".join(qr_lines(LINK, colour))), tmp_path) == LINK


@pytest.mark.e2e
def test_host_qr_shows_the_read_write_link_as_a_code(
    procs: Procs, server: str, tmp_path: Path
) -> None:
    host, info = start_host(procs, tmp_path, server, "--qr", cols=120, rows=50)
    shell_ready(host)
    assert decode(qr_block(host.transcript.getvalue()), tmp_path) == info["join_link"]
    host.send("exit\r")
    assert host.exit_code() == 0


@pytest.mark.e2e
def test_a_headless_host_prints_the_code_in_its_log(server: str, tmp_path: Path) -> None:
    argv = [BEACH, "host", "--headless", "--qr", "--server", server, "--", "sh", "-c", "sleep 1"]
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout  # a log gets no escape sequences
    link = next(line.split()[-1] for line in done.stdout.splitlines() if "open to join" in line)
    assert decode(qr_block(done.stdout), tmp_path) == link
