// Predictive echo on the page: when to guess and show, the "want" frame to the host, the ECHO
// judged against xterm.js's buffer, and the overlay that shows the guesses.
//
// The host's output is written to xterm.js as it comes, so its buffer *is* the host's screen
// (no model to keep, unlike the CLI's pyte): guesses (predict.js) are never written into it.
// They are drawn over it as xterm.js decorations (a marker on the row, a one-cell element in
// the top layer) holding the guessed glyph in the terminal's font and the cell's colours, and
// disposed of as soon as the guess is confirmed, refuted, or the host's output has answered
// the cell. The predicted cursor is drawn the same way, as a block.
//
// - Mode (`#TOKEN&predict=auto|always|never`, auto by default): in auto, guesses show above
//   SHOW_ON of round trip (the least of the link's recent PING/PONGs, as beach_cli/link/
//   pace.py) and stop at SHOW_OFF; above UNDERLINE_ON they are underlined until UNDERLINE_OFF
//   (mosh's thresholds, as beach_cli/join/echo.py).
// - The host sends ECHOs only while the page says it shows guesses (a one-byte ECHO frame, on
//   and off, exactly as the CLI does), so a page on a fast link costs the host nothing.
// - An ECHO is judged inside term.write("", callback): xterm.js parses asynchronously, and the
//   callback runs once everything written before it (all the output that covers the ECHO's
//   input: the host sends the ECHO behind it) is in the buffer.
// - No guesses on the alternate screen, at a password prompt (the ECHO says so), for a
//   view-only link, or when the window is smaller than the PTY; someone else's keystrokes
//   drop every guess.

import { ECHO_OTHERS, ECHO_SECRET, encodeEchoWanted } from "./frames.js";
import { Predictor } from "./predict.js";

export const MODES = ["auto", "always", "never"];
export const SHOW_ON = 60; // ms of round trip
export const SHOW_OFF = 40;
export const UNDERLINE_ON = 160;
export const UNDERLINE_OFF = 100;
const EXPIRE_RTTS = 4; // a guess no ECHO judged within this many round trips goes...
const EXPIRE_MIN = 1000; // ...but never sooner than this (ms)
const KEYS_KEPT = 32; // the newest keystrokes' timings, for tests

// xterm.js's default colours (its ThemeService and DEFAULT_ANSI_COLORS), for cells whose
// colour is the default or a palette entry the page's theme does not set.
const ANSI = [
  "#2e3436", "#cc0000", "#4e9a06", "#c4a000", "#3465a4", "#75507b", "#06989a", "#d3d7cf",
  "#555753", "#ef2929", "#8ae234", "#fce94f", "#729fcf", "#ad7fa8", "#34e2e2", "#eeeeec",
];
const THEME_NAMES = [
  "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white", "brightBlack",
  "brightRed", "brightGreen", "brightYellow", "brightBlue", "brightMagenta", "brightCyan",
  "brightWhite",
];
const hex = (r, g, b) => "#" + [r, g, b].map((v) => v.toString(16).padStart(2, "0")).join("");

export function paletteColour(n, theme = {}) {
  if (n < 16) return theme[THEME_NAMES[n]] || ANSI[n];
  if (n < 232) {
    const v = [0x00, 0x5f, 0x87, 0xaf, 0xd7, 0xff];
    const i = n - 16;
    return hex(v[Math.floor(i / 36) % 6], v[Math.floor(i / 6) % 6], v[i % 6]);
  }
  const c = 8 + (n - 232) * 10;
  return hex(c, c, c);
}

/** The mode a link's `predict=` asks for (auto for anything else). */
export function parseMode(value) {
  return MODES.includes(value) ? value : "auto";
}

// xterm.js's buffer as predict.js reads it. Rows are numbered so that a line keeps its number
// while the buffer scrolls, also once the scrollback is full and old lines are trimmed (a
// buffer index would then slide under the guesses): an anchor marker, which xterm.js moves
// with its line, counts the lines trimmed. If the anchor itself is trimmed away, the count is
// lost and every guess goes (`lost`).
class BufferScreen {
  // `live()`: whether any guess depends on the rows' numbers now.
  constructor(term, live) {
    this.term = term;
    this.live = live;
    this.trimmed = 0;
    this.anchor = null;
    this.anchorLine = 0;
    this.lost = false;
  }

  get buf() {
    return this.term.buffer.active;
  }

  get plain() {
    return this.buf.type === "normal";
  }

  get cols() {
    return this.term.cols;
  }

  // The number of lines trimmed off the top since we started counting.
  shift() {
    const buf = this.term.buffer.normal;
    if (!this.plain) return this.trimmed; // (markers are made on the active buffer)
    if (this.anchor === null || this.anchor.isDisposed) {
      if (this.anchor !== null && this.live()) this.lost = true;
      this.anchor = this.term.registerMarker(0) ?? null;
      this.anchorLine = this.anchor ? this.anchor.line : 0;
      return this.trimmed;
    }
    const moved = this.anchorLine - this.anchor.line;
    if (moved > 0) {
      this.trimmed += moved;
      this.anchorLine = this.anchor.line;
    }
    // Keep the anchor well away from the top (a fresh one at the cursor), so one burst of
    // output rarely trims past it between two looks.
    if (this.anchor.line < buf.length / 2 && buf.baseY + buf.cursorY - this.anchor.line > 100) {
      this.anchor.dispose();
      this.anchor = this.term.registerMarker(0) ?? null;
      this.anchorLine = this.anchor ? this.anchor.line : 0;
    }
    return this.trimmed;
  }

  /** A buffer line -> predict.js's row, and back. */
  row(line) {
    return line + this.shift();
  }

  line(row) {
    return row - this.shift();
  }

  get cursor() {
    const buf = this.buf;
    return { x: buf.cursorX, y: this.row(buf.baseY + buf.cursorY) };
  }

  _cell(y, x) {
    const line = this.buf.getLine(this.line(y));
    return line ? line.getCell(x) : undefined;
  }

  text(y, x) {
    const cell = this._cell(y, x);
    return (cell && cell.getChars()) || " ";
  }

  width(y, x) {
    const cell = this._cell(y, x);
    return cell ? cell.getWidth() : 1;
  }

  lineEnd(y) {
    const line = this.buf.getLine(this.line(y));
    return line ? line.translateToString(true).length : 0;
  }

}

export class PredictiveEcho {
  // `send(frame)` sends a frame to the host; `now()` is the page's clock in ms.
  // `later(fn, ms)` is setTimeout (a test's own clock may stand in).
  constructor({ terminal, mode = "auto", send = () => {}, now = () => performance.now(), later = (fn, ms) => setTimeout(fn, ms) }) {
    this.term = terminal;
    this.mode = parseMode(mode);
    this.send = send;
    this.now = now;
    this.later = later;
    this.predictor = new Predictor();
    this.screen = new BufferScreen(terminal, () => this.predictor.size > 0 || this.predictor.cursor !== null);
    this.enabled = false; // the host speaks "echo", we may type, and the mode is not never
    this.fits = true;
    this.secret = false;
    this.stale = false; // output is being skipped (a fresh screen is on its way)
    this.rtt = null; // ms
    this.showing = this.mode === "always";
    this.underline = false;
    this.told = null; // what the host was told last (null: nothing yet, on this connection)
    this.echoed = 0; // the newest ECHO offset judged
    this.drawn = new Map(); // what the overlay shows: key -> {decoration, marker, spec}
    this.expiry = null;
    // What tests (and a curious person, in the console) can read: window.beach.predict.
    this.state = {
      mode: this.mode, enabled: false, showing: this.showing, underline: false, rtt: null,
      want: null, wants: 0, shown: 0, confirmed: 0, wrong: 0, resets: 0, expired: 0,
      ignored: 0, typed: 0, answered: 0, guesses: [], cursor: null, keys: [],
    };
    this._keyNo = 0; // keystrokes seen (numbers `state.keys`)
    this._shownKey = 0; // the newest predictor key counted as shown
    if (this.mode !== "never") {
      terminal.onWriteParsed(() => this.render()); // the host's output may answer a guess
      terminal.buffer.onBufferChange(() => this.reset());
    }
  }

  get wanted() {
    return this.enabled && (this.mode === "always" || this.showing);
  }

  // -- the session's news -------------------------------------------------------------------------

  /** A HELLO from the host: its features; our role; whether our window holds the PTY. */
  start(features, role, fits, sent = 0) {
    this.enabled = this.mode !== "never" && role === "rw" && features.includes("echo");
    this.fits = fits;
    this.secret = false;
    this.stale = false;
    this.told = null; // a fresh host (or connection): tell it again
    this.echoed = 0;
    this.reset();
    // What came before is on the screen the host redraws.
    this.predictor.answered = this.predictor.lastEnd = sent;
    this.predictor.unknownFrom = 0;
    this._tell();
  }

  /** The connection is gone: nothing the host says can judge the guesses made so far. */
  lost() {
    this.reset();
  }

  /** Output is skipped until a fresh screen comes (or it has come: `skipping` false). */
  skipping(on) {
    this.stale = on;
    this.reset();
  }

  window(fits) {
    if (fits !== this.fits) this.reset();
    this.fits = fits;
  }

  reset() {
    this.predictor.reset();
    this.render();
  }

  /** A round-trip sample (ms): decides, with hysteresis, whether guesses show. */
  roundTrip(ms) {
    this.rtt = ms;
    this.state.rtt = ms;
    if (this.mode === "auto") {
      if (ms > SHOW_ON) this.showing = true;
      else if (ms <= SHOW_OFF) this.showing = false;
    }
    if (ms > UNDERLINE_ON) this.underline = true;
    else if (ms < UNDERLINE_OFF) this.underline = false;
    this._tell();
    this.render();
  }

  _tell() {
    const want = this.wanted;
    this.state.enabled = this.enabled;
    this.state.showing = this.showing;
    this.state.underline = this.underline;
    if (want !== this.told && (want || this.told !== null)) {
      if (this.send(encodeEchoWanted(want)) !== false) {
        this.told = want;
        this.state.want = want;
        this.state.wants += 1;
      }
    }
    if (!want) this.predictor.reset();
  }

  // -- keystrokes and the host's answer ------------------------------------------------------------

  /** A keystroke (onData's text, or null for what cannot be guessed), sent as input that ends
   * at offset `end`. */
  key(text, end) {
    if (this.mode === "never") return;
    const at = this.now();
    // A key's character is kept only if it was guessed at (never one typed at a password
    // prompt, say): `ch` null otherwise.
    const rec = { n: ++this._keyNo, ch: null, at, shown: null };
    this.state.keys.push(rec);
    if (this.state.keys.length > KEYS_KEPT) this.state.keys.shift();
    const guessed = this.predictor.stats.keys;
    // Not guessing (not wanted, a password prompt...) still tells the predictor of the key:
    // the screen's cursor is not known again until the host has answered it.
    const may = this.wanted && this.fits && !this.secret && !this.stale && this.screen.plain;
    this.predictor.key(this.screen, text, end, may, at);
    if (this.predictor.stats.keys > guessed) rec.ch = text;
    this.render();
    this._expireLater();
  }

  /** An ECHO: the input before `offset` was answered; `sent`: the input we have sent so far.
   * Call it once the output before the ECHO is in the buffer (term.write's callback). */
  echo(offset, flags, sent) {
    this.secret = (flags & ECHO_SECRET) !== 0;
    if (!this.wanted || this.stale) return;
    const mine = typeof offset === "number" && offset <= sent && offset >= this.echoed;
    if (this.secret || flags & ECHO_OTHERS || !this.screen.plain) {
      if (mine) {
        this.echoed = offset;
        this.predictor.heard(offset);
      }
      this.predictor.reset();
    } else if (!mine) {
      this.state.ignored += 1; // beyond what we typed, or going back: not an answer of ours
    } else {
      this.echoed = offset;
      this.predictor.judge(this.screen, offset);
    }
    this.render();
  }

  _expireLater() {
    if (this.expiry !== null || this.predictor.size === 0) return;
    const wait = Math.max(EXPIRE_MIN, EXPIRE_RTTS * (this.rtt ?? 0));
    this.expiry = this.later(() => {
      this.expiry = null;
      if (this.predictor.expire(this.now(), wait)) this.render();
      this._expireLater();
    }, wait / 2);
  }

  // -- the overlay ----------------------------------------------------------------------------------

  render() {
    if (this.mode === "never") return;
    const p = this.predictor;
    if (p.size === 0 && p.cursor === null && this.drawn.size === 0) {
      this._publish(null);
      return;
    }
    const screen = this.screen;
    const want = new Map();
    let guesses = this.showing && this.enabled && screen.plain ? p.visible(screen) : [];
    if (screen.lost) {
      screen.lost = false; // the rows' numbers are lost: so is every guess
      p.reset();
      guesses = [];
    }
    let cursor = null;
    for (const g of guesses) {
      want.set(`g${g.y},${g.x}`, { kind: "glyph", y: g.y, x: g.x, ch: g.ch, from: g.from, typed: g.typed, at: g.at });
      if (!g.shown) {
        g.shown = true;
        this._countShown(g.key);
      }
    }
    const c = guesses.length || this.showing ? p.visibleCursor() : null;
    if (c !== null && screen.plain && c.x < screen.cols) {
      const real = screen.cursor;
      if (c.x !== real.x || c.y !== real.y) {
        cursor = c;
        const under = guesses.find((g) => g.y === c.y && g.x === c.x);
        want.set(`c${c.y},${c.x}`, { kind: "cursor", y: c.y, x: c.x, ch: under ? under.ch : screen.text(c.y, c.x) });
        this._countShown(p.cursorKey);
      }
    }
    for (const [key, item] of this.drawn) {
      const spec = want.get(key);
      if (spec === undefined || spec.ch !== item.spec.ch || item.underline !== this.underline) {
        item.decoration.dispose();
        item.marker.dispose();
        this.drawn.delete(key);
      } else {
        want.delete(key);
      }
    }
    for (const [key, spec] of want) this._draw(key, spec);
    this._publish(cursor);
  }

  _countShown(key) {
    if (key > this._shownKey) {
      // keys are numbered in order; each counts once
      this._shownKey = key;
      this.predictor.stats.shown += 1;
    }
  }

  _draw(key, spec) {
    const buf = this.term.buffer.active;
    const line = this.screen.line(spec.y);
    const marker = this.term.registerMarker(line - (buf.baseY + buf.cursorY));
    if (!marker) return;
    const decoration = this.term.registerDecoration({ marker, x: spec.x, width: 1, layer: "top" });
    if (!decoration) {
      marker.dispose();
      return;
    }
    const item = { decoration, marker, spec, underline: this.underline };
    this.drawn.set(key, item);
    decoration.onRender((el) => this._fill(el, item));
  }

  // The element xterm.js positioned over the cell: the glyph, as the cell would draw it.
  _fill(el, item) {
    const { spec } = item;
    if (!item.filled) {
      item.filled = true;
      el.classList.add(spec.kind === "cursor" ? "beach-guess-cursor" : "beach-guess");
      el.textContent = spec.ch;
      el.dataset.ch = spec.ch;
      const opts = this.term.options;
      const theme = opts.theme || {};
      const colours = this._colours(spec.kind === "cursor" ? { y: spec.y, x: spec.x } : spec.from, theme);
      const style = el.style;
      style.fontFamily = opts.fontFamily;
      style.fontSize = `${opts.fontSize}px`;
      if (spec.kind === "cursor") {
        style.color = theme.cursorAccent || theme.background || "#000000";
        style.background = theme.cursor || theme.foreground || "#ffffff";
      } else {
        style.color = colours.fg;
        style.background = colours.bg;
        style.fontWeight = colours.bold ? "bold" : "normal";
        style.fontStyle = colours.italic ? "italic" : "normal";
        if (item.underline || colours.underline) el.classList.add("beach-underline");
      }
    }
    if (spec.kind === "glyph" && spec.typed && !item.timed) {
      // The page's own clock: when the person's keystroke first showed on the screen.
      item.timed = true;
      for (const k of this.state.keys) if (k.at === spec.at && k.shown === null) k.shown = this.now();
    }
  }

  _colours(from, theme) {
    const out = { fg: theme.foreground || "#ffffff", bg: theme.background || "#000000" };
    const cell = from ? this.screen._cell(from.y, from.x) : undefined;
    if (!cell) return out;
    const pick = (fg) => {
      if (fg ? cell.isFgDefault() : cell.isBgDefault()) return fg ? out.fg : out.bg;
      const v = fg ? cell.getFgColor() : cell.getBgColor();
      if (fg ? cell.isFgPalette() : cell.isBgPalette()) return paletteColour(v, theme);
      return hex((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
    };
    let fg = pick(true);
    let bg = pick(false);
    if (cell.isInverse()) [fg, bg] = [bg, fg];
    return { fg, bg, bold: !!cell.isBold(), italic: !!cell.isItalic(), underline: !!cell.isUnderline() };
  }

  _publish(cursor) {
    const s = this.predictor.stats;
    const st = this.state;
    const top = this.term.buffer.active.viewportY;
    st.shown = s.shown;
    st.confirmed = s.confirmed;
    st.wrong = s.wrong;
    st.resets = s.resets;
    st.expired = s.expired;
    st.typed = this.predictor.lastEnd; // the input offset after the newest key...
    st.answered = this.predictor.answered; // ...and what ECHOs say the screen has answered
    if (this.drawn.size === 0 && !st.guesses.length && st.cursor === null) return;
    st.guesses = [];
    for (const item of this.drawn.values()) {
      if (item.spec.kind === "glyph") {
        st.guesses.push({ x: item.spec.x, y: this.screen.line(item.spec.y) - top, ch: item.spec.ch });
      }
    }
    st.cursor = cursor ? { x: cursor.x, y: this.screen.line(cursor.y) - top } : null;
  }
}
