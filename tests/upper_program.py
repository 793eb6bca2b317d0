"""A program that echoes its input itself, in raw mode: digits as typed, letters in capitals
(so a guess of the letter typed is wrong, and must be corrected). Enter ends it."""

import os
import sys
import termios
import tty

fd = sys.stdin.fileno()
saved = termios.tcgetattr(fd)
tty.setraw(fd)
try:
    os.write(1, b"upper> ")
    while True:
        key = os.read(fd, 1)
        if key in (b"\r", b"\x04", b""):
            break
        os.write(1, key.upper())
finally:
    termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    os.write(1, b"\r\nupper done\r\n")
