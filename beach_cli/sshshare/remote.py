"""What `beach ssh` asks the remote machine to run: a small POSIX sh script that starts
`beach host --headless` there, sends its join information back on stdout between two marker
lines, and ends that host as soon as our side of the ssh connection is gone.

The ssh connection's stdin is the lifeline: we never write to it, and its end (we closed it,
or ssh died, or the connection dropped) is the remote's sign to end the host. sshd gives the
command no terminal, so nothing else would tell it: without a pty there is no SIGHUP.
"""

from __future__ import annotations

import re
import shlex

BEGIN = "beach-ssh: join information follows"
END = "beach-ssh: end of join information"
NO_BEACH = 127  # the script's exit when the remote has no such beach (as a shell's "not found")

# Run by `sh -c SCRIPT beach-ssh BEACH TERM HOST-ARGS...`. The login shell on the remote reads
# the command line first: the script holds no single quote, no backslash and no newline, so it
# passes through single quotes unchanged in sh, bash, zsh, ksh, fish and csh alike.
_LINES = (
    'b="$1"',
    't="$2"',
    "shift 2",
    'command -v "$b" >/dev/null 2>&1 || exit 127',
    # The info file and the host's stdout (a FIFO) in a directory of our own, removed at the end.
    'd=$(mktemp -d "${TMPDIR:-/tmp}/beach-ssh.XXXXXX") || exit 1',
    'mkfifo "$d/out" || { rm -rf "$d"; exit 1; }',
    '[ -z "$t" ] || export TERM="$t"',
    # ssh's stdin moves to fd 3, for the watcher alone; everything else reads /dev/null. The
    # FIFO's ends are opened here, before anything starts, so that no open waits for the other
    # side: fd 4 holds it both ways while 5 (the reader's) and 6 (the host's) open. Then the
    # host's is its only writer, and the reader sees its end however early the host ends.
    'exec 3<&0 </dev/null 4<>"$d/out" 5<"$d/out" 6>"$d/out" 4>&-',
    '"$b" host --headless --info-file "$d/info.json" "$@" >&6 3<&- 5<&- 6>&- &',
    "h=$!",
    "exec 6>&-",
    # The watcher: when ssh's stdin ends, TERM to this shell, whose trap ends the host. (A
    # background job's stdin is /dev/null in sh, hence fd 3; `$$` is this shell's pid.)
    'trap "kill $h 2>/dev/null" TERM',
    "(cat <&3; kill -TERM $$) >/dev/null 2>&1 5<&- &",
    "w=$!",
    "exec 3<&-",
    # The host prints its banner after writing the info file: on its first line, send a copy
    # (whole, or nothing if the host has already ended and removed it), then a newline: END is
    # on a line of its own even after a file that does not end in one.
    f'{{ IFS= read -r l && cp "$d/info.json" "$d/sent" && echo "{BEGIN}" && cat "$d/sent" '
    f'&& echo && echo "{END}"; cat >/dev/null; }} <&5 &',
    "r=$!",
    "exec 5<&-",
    # `wait` returns early when the trap runs: then once more, for the host's own end.
    "wait $h",
    "s=$?",
    "if kill -0 $h 2>/dev/null; then wait $h; s=$?; fi",
    "wait $r",
    # (stderr closed first: sh would report the watcher's end, and hide the host's last word)
    "exec 2>/dev/null",
    "kill $w",
    'rm -rf "$d"',
    "exit $s",
)
SCRIPT = "".join(line + (" " if line.endswith("&") else "; ") for line in _LINES).strip()
assert "'" not in SCRIPT and "\\" not in SCRIPT and "\n" not in SCRIPT

_TERM = re.compile(r"[A-Za-z0-9._+-]{1,64}")


def remote_command(beach: str, host_args: list[str], command: list[str], term: str) -> str:
    """The command line for ssh to hand the remote's login shell: each word quoted for a
    POSIX shell, the script as it is."""
    term = term if _TERM.fullmatch(term) else ""
    words = [beach, term, *host_args, *(["--", *command] if command else [])]
    return " ".join(["sh", "-c", f"'{SCRIPT}'", "beach-ssh", *(shlex.quote(w) for w in words)])
