"""The shared program of the latency figures, run as a script: puts its terminal in raw mode
and writes back every byte it reads, at once, until it reads Ctrl-D."""

from __future__ import annotations

import os
import sys
import termios
import tty

READY = b"ECHO" + b"-READY"  # spelled apart so a shell echoing the command line never matches
QUIT = 0x04


def main() -> int:
    fd = 0
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    try:
        os.write(1, READY + b"\r\n")
        while True:
            data = os.read(fd, 1024)
            if not data:
                return 0
            if QUIT in data:
                os.write(1, data[: data.index(QUIT)])
                return 0
            os.write(1, data)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


if __name__ == "__main__":
    sys.exit(main())
