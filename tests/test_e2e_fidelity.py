"""Every joiner's screen equals the host's, whenever they join and whatever runs.

The oracle: the host records the session (`--record`, asciicast v2) and the test renders that
recording with a terminal emulator; it renders everything a joiner wrote to its own terminal
the same way; the two screens must match cell by cell (characters, colours, attributes) with
the cursor in the same place."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from asciinema.asciicast import open_from_url
from conftest import Procs, shell_ready, start_host, start_join
from oracle import Window, check

pytestmark = pytest.mark.e2e


def joiner(procs: Procs, info: dict, cols: int = 80, rows: int = 24, **kw) -> Window:
    return Window(start_join(procs, info, cols=cols, rows=rows, **kw), cols, rows)


def recorded_host(
    procs: Procs, tmp_path: Path, server: str, cols: int = 80, rows: int = 24, **kw: object
):
    cast = tmp_path / "session.cast"
    host, info = start_host(
        procs, tmp_path, server, "--record", str(cast), cols=cols, rows=rows, **kw
    )
    shell_ready(host)
    return host, info, cast


FULLSCREEN = textwrap.dedent(
    """\
    import os, sys, tty
    cols, rows = os.get_terminal_size()
    tty.setraw(0)
    w = sys.stdout.write
    w("\\x1b[?1049h\\x1b[H\\x1b[2J")
    for r in range(1, rows + 1):
        w(f"\\x1b[{r};1H\\x1b[3{r % 8}m row {r:02} " + "=" * (cols - 12) + "\\x1b[0m")
    w("\\x1b[4;6H\\x1b[1;4;7m bold under reverse \\x1b[0m")
    w("\\x1b[6;3H\\x1b[38;5;208m256-colour\\x1b[0m \\x1b[48;5;22mon green\\x1b[0m")
    w("\\x1b[8;3H漢字テスト 😀 wide")
    w("\\x1b[10;20HFS-READY")
    w("\\x1b[12;33H")
    sys.stdout.flush()
    os.read(0, 1)
    w("\\x1b[?1049l")
    sys.stdout.flush()
    tty.setcbreak(0)
    print("\\r\\nFS-DONE-" + str(6 * 7))
    """
)


def test_shell_output_colours_and_wide_characters(procs: Procs, server: str, tmp_path) -> None:
    host, info, cast = recorded_host(procs, tmp_path, server)
    j = joiner(procs, info)
    shell_ready(j.proc)
    host.send(
        "printf '\\033[1;31mred\\033[0m \\033[42;30mon-green\\033[0m \\033[4munder\\033[0m\\n'; "
        "printf '漢字テスト 😀 done-%s\\n' $((1+1))\r"
    )
    j.proc.expect("done-2")
    shell_ready(j.proc)
    check(cast, j)
    host.send("seq 1 40; echo seq-$((2*3))\r")
    j.proc.expect("seq-6")
    shell_ready(j.proc)
    check(cast, j)
    host.send("exit\r")
    assert j.proc.exit_code() == 0
    check(cast, j)


def test_full_screen_program_enters_and_leaves_the_alternate_screen(
    procs: Procs, server: str, tmp_path
) -> None:
    program = tmp_path / "fs.py"
    program.write_text(FULLSCREEN)
    host, info, cast = recorded_host(procs, tmp_path, server)
    host.send("echo before-$((4*4))\r")
    host.expect("before-16")
    j = joiner(procs, info)
    shell_ready(j.proc)
    host.send(f"python3 {program}\r")
    j.proc.expect("FS-READY")
    check(cast, j)
    j.proc.send("q")
    j.proc.expect("FS-DONE-42")
    shell_ready(j.proc)
    check(cast, j)
    host.send("exit\r")
    assert host.exit_code() == 0


def test_late_join_during_a_full_screen_program(procs: Procs, server: str, tmp_path) -> None:
    program = tmp_path / "fs.py"
    program.write_text(FULLSCREEN)
    host, info, cast = recorded_host(procs, tmp_path, server)
    host.send("echo under-the-program-$((3*3))\r")
    host.expect("under-the-program-9")
    host.send(f"python3 {program}\r")
    host.expect("FS-READY")
    late = joiner(procs, info)
    late.proc.expect("FS-READY")
    check(cast, late)
    host.send("q")
    late.proc.expect("FS-DONE-42")
    shell_ready(late.proc)
    check(cast, late)  # the main screen from before the late join is back, too
    host.send("exit\r")
    assert host.exit_code() == 0


def test_late_join_after_ten_thousand_lines(procs: Procs, server: str, tmp_path) -> None:
    host, info, cast = recorded_host(procs, tmp_path, server)
    host.send("seq 1 10000; echo end-$((5*5))\r")
    host.expect("end-25")
    shell_ready(host)
    late = joiner(procs, info)
    late.proc.expect("end-25")
    shell_ready(late.proc)
    check(cast, late)
    host.send("exit\r")
    assert host.exit_code() == 0


def test_resizes_of_host_and_joiners(procs: Procs, server: str, tmp_path) -> None:
    host, info, cast = recorded_host(procs, tmp_path, server, cols=100, rows=30)
    j = joiner(procs, info, cols=90, rows=28)
    shell_ready(j.proc)
    host.send("stty size; seq 1 40; echo a-$((1+1))\r")
    j.proc.expect("a-2")
    shell_ready(j.proc)
    check(cast, j)  # the PTY is the joiner's size, the smaller
    j.resize(70, 20)
    j.proc.send("stty size; seq 1 30; echo b-$((1+2))\r")
    j.proc.expect("b-3")
    shell_ready(j.proc)
    check(cast, j)
    # Now the joiner is larger than the host: the PTY follows the host (100x30), and the
    # joiner's taller window scrolls only the PTY's 30 rows.
    j.resize(120, 40)
    j.proc.send("stty size; seq 1 60; printf '%0250d\\n' 7; echo c-$((1+3))\r")
    j.proc.expect("c-4")
    shell_ready(j.proc)
    check(cast, j)
    host.child.setwinsize(25, 90)
    host.send("stty size; seq 1 50; echo d-$((1+4))\r")
    j.proc.expect("d-5")
    shell_ready(j.proc)
    check(cast, j)
    host.send("exit\r")
    assert host.exit_code() == 0


def test_slow_joiner_catches_up_without_slowing_the_host(
    procs: Procs, server: str, tmp_path
) -> None:
    big = tmp_path / "big.txt"
    with big.open("w") as f:
        for i in range(200_000):
            f.write(f"\x1b[3{i % 8}m{i:08d}\x1b[0m -rw-r--r-- 1 root root 4096 file-{i}.txt\n")
    fast = {"maxread": 65536, "searchwindowsize": 4096}  # pexpect must not be the bottleneck
    host, info, cast = recorded_host(procs, tmp_path, server, **fast)
    j = joiner(procs, info, **fast)
    shell_ready(j.proc)
    # The test stops reading the joiner's terminal: it is as slow as a terminal can be.
    host.send(f"cat {big}; echo done-$((7*6))\r")
    host.expect("done-42", timeout=60)  # the host is never held back by the stalled joiner
    shell_ready(host)
    j.proc.expect("done-42", timeout=60)  # reading again, the joiner catches up...
    shell_ready(j.proc)
    check(cast, j, tail=64 * 1024)  # ...to exactly the host's screen
    host.send("exit\r")
    assert host.exit_code() == 0


def test_input_reaches_the_program_byte_for_byte(procs: Procs, server: str, tmp_path) -> None:
    recorder = tmp_path / "rec.py"
    recorder.write_text(
        "import os, sys, tty\n"
        "tty.setraw(0)\n"
        "print('recorder-ready', flush=True)\n"
        "seen = b''\n"
        "while not seen.endswith(b'END'):\n"
        "    seen += os.read(0, 4096)\n"
        "sys.stdout.write('\\r\\nGOT:' + seen.hex() + ':TOG\\r\\n')\n"
    )
    host, info = start_host(procs, tmp_path, server, command=["python3", str(recorder)])
    host.expect("recorder-ready")
    j = start_join(procs, info)
    j.expect("recorder-ready")
    keys = (
        "\x03\x1a\x04"  # Ctrl-C, Ctrl-Z, Ctrl-D: bytes, not signals, to a raw-mode program
        "\x1b[A\x1b[B\x1b[C\x1b[D"  # arrows
        "\x1bOP\x1b[15~\x1b[24~"  # F1, F5, F12
        "\x1b[200~pasted\ttext\x1b[201~"  # bracketed paste
        "漢字テスト 😀 é"  # UTF-8, wide and combining-free
        "\x1d\x1d"  # Ctrl-] twice: one literal Ctrl-] (the detach prefix, escaped)
        "END"
    )
    j.send(keys)
    j.expect(r"GOT:([0-9a-f]+):TOG")
    got = bytes.fromhex(j.child.match.group(1))
    assert got == keys.replace("\x1d\x1d", "\x1d").encode()
    assert j.exit_code() == 0
    assert host.exit_code() == 0


def test_detach_and_reattach_shows_the_current_screen(procs: Procs, server: str, tmp_path):
    host, info, cast = recorded_host(procs, tmp_path, server)
    j = joiner(procs, info)
    shell_ready(j.proc)
    j.proc.send("\x1dd")
    assert j.proc.exit_code() == 0
    host.send("printf '\\033[35mwhile-away-%s\\033[0m\\n' $((8*8))\r")
    host.expect("while-away-64")
    shell_ready(host)
    again = joiner(procs, info)
    again.proc.expect("while-away-64")
    shell_ready(again.proc)
    check(cast, again)
    host.send("exit\r")
    assert host.exit_code() == 0


def test_recording_reads_back_with_asciinema(procs: Procs, server: str, tmp_path) -> None:
    host, _, cast = recorded_host(procs, tmp_path, server, cols=90, rows=26)
    host.send("echo first-$((1+1))\r")
    host.expect("first-2")
    host.child.setwinsize(22, 70)
    host.send("echo second-$((2+2))\r")
    host.expect("second-4")
    host.send("exit 3\r")
    assert host.exit_code() == 3
    with open_from_url(str(cast)) as recording:
        header = recording.v2_header
        events = list(recording.events())
    assert (header["version"], header["width"], header["height"]) == (2, 90, 26)
    times = [e[0] for e in events]
    assert times == sorted(times)
    output = "".join(e[2] for e in events if e[1] == "o")
    assert output.index("first-2") < output.index("second-4")
    assert ["r", "70x22"] in [e[1:] for e in events]
    json.loads(cast.read_text().splitlines()[0])  # the header is one JSON line
