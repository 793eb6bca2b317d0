"""A join link as a QR code drawn with text (`beach host --qr`), for joining from a phone.
segno makes the code; two of its rows go in one line of half blocks, light modules drawn in
the foreground colour, so the code is as wide as it is tall on a terminal's 1:2 cells."""

from __future__ import annotations

BORDER = 2  # modules of quiet zone around the code (scanners read 2 on a terminal well)
# (top light, bottom light) -> the glyph that draws them
_GLYPHS = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
# White on black: the light modules (and the quiet zone) are the glyphs, the dark ones the
# background, whatever colours the terminal has.
_COLOURS, _RESET = "\x1b[97;40m", "\x1b[0m"


def qr_lines(text: str, colour: bool = True) -> list[str]:
    """The QR code of `text`, one string per line of the terminal."""
    import segno  # only for --qr

    matrix = segno.make(text, error="m", micro=False).matrix
    size = len(matrix)
    full = size + 2 * BORDER

    def light(row: int, col: int) -> bool:
        r, c = row - BORDER, col - BORDER
        return not (0 <= r < size and 0 <= c < size and matrix[r][c])

    lines = []
    for row in range(0, full, 2):
        cells = "".join(
            _GLYPHS[light(row, col), row + 1 >= full or light(row + 1, col)] for col in range(full)
        )
        lines.append(f"{_COLOURS}{cells}{_RESET}" if colour else cells)
    return lines
