// Predictive echo's guesses (the page's half of beach issue 16): what the host's screen will
// show once it has a keystroke, made at once, and judged against the host's screen when its
// ECHO says the keystroke was answered. The ideas are beach_cli/join/predict.py's (mosh's):
//
// - A printable single-width character is an insertion at the predicted cursor (the rest of
//   the row's text moves right), backspace a deletion before it, left and right move it.
//   Each guessed cell remembers the input offset that makes it due, and its epoch.
// - Enter, any other control key or escape sequence, up and down, a paste, and anything this
//   cannot guess exactly start a new epoch, which is *tentative*: its guesses are not shown
//   until one of them is confirmed. So a password typed after Enter never shows.
// - When an ECHO covers a cell, the screen holds the host's answer: a match confirms the
//   cell's epoch; a mismatch in a shown epoch drops every guess (the host's screen is what
//   remains), in a tentative one it drops that epoch's guesses (and later ones) unseen.
//
// Nothing here touches a terminal: `screen` is the host's screen as xterm.js's buffer holds it
// (echo.js adapts it; the unit tests use a fake):
//   screen.cols, screen.cursor -> {x, y}, screen.text(y, x) -> one character (" " if empty),
//   screen.width(y, x) -> 1, 2 (wide) or 0 (the right half of a wide one),
//   screen.lineEnd(y) -> one past the row's last non-blank cell,
//   screen.plain -> the main screen is active (no guesses on the alternate one).
// Rows are numbers that stay with their line while the buffer scrolls (echo.js's business).

export const MAX_GUESSES = 256; // live guessed cells; more (a runaway) and every guess goes
const LEFT = new Set(["\x1b[D", "\x1bOD"]);
const RIGHT = new Set(["\x1b[C", "\x1bOC"]);
const BACKSPACE = new Set([0x7f, 0x08]);

// Code points this guesses at: printable ASCII and Latin-1/Latin Extended-A and B, which
// every monospace font draws one cell wide (no combining marks, no soft hyphen). Anything
// else may be wide, zero-width or combining: the program decides where it goes.
export function narrow(ch) {
  const code = ch.codePointAt(0);
  if (ch.length !== 1) return false;
  return (code >= 0x20 && code < 0x7f) || (code >= 0xa0 && code <= 0x24f && code !== 0xad);
}

const at = (y, x) => `${y},${x}`;

export class Stats {
  constructor() {
    this.keys = 0; // keystrokes that could be guessed at
    this.shown = 0; // keystrokes whose guess was drawn before the host's echo (echo.js counts)
    this.confirmed = 0; // cells the host's screen matched
    this.wrong = 0; // shown cells it did not
    this.resets = 0;
    this.expired = 0; // guesses no ECHO ever judged
  }
}

export class Predictor {
  constructor() {
    this.cells = new Map(); // "y,x" -> guess
    this.cursor = null; // the predicted cursor {x, y}; null: the screen's
    this.cursorDue = 0;
    this.cursorEpoch = 0;
    this.cursorKey = 0;
    this.keys = 0; // keystrokes guessed at so far (numbers them)
    this.epoch = 0;
    this.confirmed = -1; // the newest epoch with a confirmed guess
    this.answered = 0; // the input offset the screen is known to have answered (ECHOs)
    this.lastEnd = 0; // the newest keystroke's end offset
    this.unknownFrom = 0; // the screen's cursor is stale until it has answered this offset
    this.stats = new Stats();
  }

  get size() {
    return this.cells.size;
  }

  // -- keystrokes -------------------------------------------------------------------------------

  /** What comes next cannot be placed from what we know: a new, unconfirmed epoch. */
  tentative() {
    this.epoch += 1;
    this.cursor = null;
    this.unknownFrom = this.lastEnd; // the keys so far may move it anywhere
  }

  /** Forget every guess (the host's screen is what shows). */
  reset() {
    this.cells.clear();
    this.tentative();
  }

  /** One onData chunk (`text`), sent to the host as input that ends at offset `end`.
   * `may`: guesses are allowed now (no password prompt, the window fits...). `now` (ms) is
   * kept with each guess, for expiry. */
  key(screen, text, end, may, now = 0) {
    this.lastEnd = Math.max(this.lastEnd, end);
    if (!may) {
      this.reset();
      return;
    }
    if (typeof text !== "string" || !text) {
      this.tentative(); // bytes that are no text (onBinary): the program decides
      return;
    }
    if (LEFT.has(text) || RIGHT.has(text)) {
      this._arrow(screen, RIGHT.has(text), end);
      return;
    }
    const chars = Array.from(text);
    if (chars.length !== 1) {
      // An escape sequence (up, down, function keys, Alt-x, a bracketed paste) or a paste:
      // the program decides what it does.
      this.tentative();
      return;
    }
    if (this.cursor === null && this.unknownFrom > this.answered) {
      // Where the cursor is now is not known: the screen has yet to answer the keys that lost
      // the predicted cursor (Enter, say), so its cursor is stale. No guess until it has
      // (and by then the ECHO says whether a password is being read).
      this.tentative();
      return;
    }
    const code = text.codePointAt(0);
    if (BACKSPACE.has(code)) this._backspace(screen, end, now);
    else if (narrow(text)) this._insert(screen, text, end, now);
    else this.tentative(); // Enter, Tab, Ctrl-anything, a character that may be wide
  }

  _where(screen) {
    return this.cursor ?? screen.cursor;
  }

  _shown(screen, y, x) {
    const guess = this.cells.get(at(y, x));
    if (guess !== undefined) return { ch: guess.ch, from: guess.from };
    return { ch: screen.text(y, x), from: { y, x } };
  }

  /** One past the last non-blank cell of row `y`, guesses included. */
  _end(screen, y) {
    let end = screen.lineEnd(y);
    for (const g of this.cells.values()) {
      if (g.y === y && g.x >= end && g.ch !== " ") end = g.x + 1;
    }
    return end;
  }

  /** The row's end if a guess on it can be exact, else null. */
  _plainRow(screen, y, x) {
    if (!screen.plain || x < 0 || x >= screen.cols) return null;
    const end = this._end(screen, y);
    if (end >= screen.cols - 1) return null; // the last column: the program wraps or not
    for (let c = x; c < Math.max(end, x + 1); c++) {
      if (screen.width(y, c) !== 1) return null; // a wide character to move or land on
    }
    return end;
  }

  _set(screen, y, x, ch, from, due, typed, now) {
    const old = this.cells.get(at(y, x));
    // What the host may show here before it answers this guess's keystroke: the character
    // there when the cell was first guessed at, and each older guess's (the host echoes the
    // keys in order). Anything else, and the host has spoken for the cell.
    const expected = old !== undefined ? new Set([...old.expected, old.ch]) : new Set([screen.text(y, x)]);
    this.cells.set(at(y, x), {
      y, x, ch, from, due, epoch: this.epoch, expected, typed, key: this.keys, at: now, shown: false,
    });
  }

  _move(x, y, due) {
    this.cursor = { x, y };
    this.cursorDue = due;
    this.cursorEpoch = this.epoch;
    this.cursorKey = this.keys;
  }

  _bounded() {
    if (this.cells.size > MAX_GUESSES) this.reset();
  }

  _insert(screen, ch, due, now) {
    const { x, y } = this._where(screen);
    const end = this._plainRow(screen, y, x);
    if (end === null || x >= screen.cols - 2) {
      this.tentative();
      return;
    }
    this.stats.keys += 1;
    this.keys += 1;
    const line = [];
    for (let c = x; c < Math.max(end, x); c++) line.push(this._shown(screen, y, c));
    this._set(screen, y, x, ch, { y, x }, due, true, now); // drawn as the cell it lands on
    line.forEach((cell, i) => this._set(screen, y, x + 1 + i, cell.ch, cell.from, due, false, now));
    this._move(x + 1, y, due);
    this._bounded();
  }

  _backspace(screen, due, now) {
    const { x, y } = this._where(screen);
    const end = this._plainRow(screen, y, x);
    if (end === null || x === 0) {
      this.tentative();
      return;
    }
    this.stats.keys += 1;
    this.keys += 1;
    const line = [];
    for (let c = x; c < Math.max(end, x); c++) line.push(this._shown(screen, y, c));
    line.forEach((cell, i) => this._set(screen, y, x - 1 + i, cell.ch, cell.from, due, false, now));
    const last = Math.max(end, x) - 1;
    this._set(screen, y, last, " ", { y, x: last }, due, false, now);
    this._move(x - 1, y, due);
    this._bounded();
  }

  _arrow(screen, right, due) {
    const { x, y } = this._where(screen);
    const end = this._plainRow(screen, y, x);
    if (end === null || (right && x >= end) || (!right && x === 0)) {
      this.tentative();
      return;
    }
    this.stats.keys += 1;
    this.keys += 1;
    this._move(x + (right ? 1 : -1), y, due);
  }

  // -- the host's answer -------------------------------------------------------------------------

  /** The screen has the host's answer to the input before `offset`. */
  judge(screen, offset) {
    this.heard(offset);
    const due = [...this.cells.values()].filter((g) => g.due <= offset).sort((a, b) => a.due - b.due);
    for (const guess of due) {
      if (this.cells.get(at(guess.y, guess.x)) !== guess) continue; // dropped with its epoch
      if (screen.text(guess.y, guess.x) === guess.ch) {
        this.stats.confirmed += 1;
        this.confirmed = Math.max(this.confirmed, guess.epoch);
        this.cells.delete(at(guess.y, guess.x));
      } else if (!this._wrong(guess)) {
        return;
      }
    }
    if (this.cursor !== null && this.cursorDue <= offset) {
      const real = screen.cursor;
      if (real.x === this.cursor.x && real.y === this.cursor.y) {
        this.confirmed = Math.max(this.confirmed, this.cursorEpoch);
        this.cursor = null;
      } else if (this.cursorEpoch <= this.confirmed) {
        this.stats.wrong += 1;
        this.stats.resets += 1;
        this.reset();
      } else {
        this._dropEpoch(this.cursorEpoch);
      }
    }
  }

  /** The screen has answered the input before `offset` (an ECHO, judged or not). */
  heard(offset) {
    if (offset > this.answered) this.answered = offset;
  }

  /** A guess the screen contradicts; false once every guess is gone. */
  _wrong(guess) {
    if (guess.epoch <= this.confirmed) {
      if (guess.shown) this.stats.wrong += 1;
      this.stats.resets += 1;
      this.reset();
      return false;
    }
    this._dropEpoch(guess.epoch);
    return true;
  }

  /** A tentative epoch was wrong: its guesses and every later one go, unseen. */
  _dropEpoch(epoch) {
    for (const [key, g] of this.cells) if (g.epoch >= epoch) this.cells.delete(key);
    if (this.cursor !== null && this.cursorEpoch >= epoch) this.cursor = null;
    this.epoch = Math.max(this.epoch, epoch) + 1;
    this.unknownFrom = this.lastEnd; // the dropped keys are still to come on the screen
  }

  /** Guesses older than `maxAge` ms at `now` were never judged (an ECHO lost, a host that
   * stopped answering): every guess goes. True if that happened. */
  expire(now, maxAge) {
    for (const g of this.cells.values()) {
      if (now - g.at > maxAge) {
        this.stats.expired += 1;
        this.reset();
        return true;
      }
    }
    return false;
  }

  /** The oldest live guess's time, or null. */
  oldest() {
    let first = null;
    for (const g of this.cells.values()) if (first === null || g.at < first) first = g.at;
    return first;
  }

  // -- what to draw ------------------------------------------------------------------------------

  /** Guesses to draw over the host's screen: of a confirmed epoch, where the host has not
   * written since, and where it does not already show them. */
  visible(screen) {
    const out = [];
    for (const g of this.cells.values()) {
      if (g.epoch > this.confirmed) continue;
      const now = screen.text(g.y, g.x);
      if (!g.expected.has(now) || now === g.ch) continue;
      out.push(g);
    }
    return out.sort((a, b) => a.y - b.y || a.x - b.x);
  }

  visibleCursor() {
    if (this.cursor !== null && this.cursorEpoch <= this.confirmed) return this.cursor;
    return null;
  }
}
