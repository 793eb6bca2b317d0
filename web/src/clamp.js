// Counts in control sequences, clamped before xterm.js sees them. xterm.js does work in
// proportion to some counts: REP (`CSI n b`) allocates n cells at once, and tab stops (I, Z)
// and line insertion, deletion and scrolling (L, M, S, T) loop n times, so one
// `CSI 999999999 b` from the shared program froze every page for a minute, and 10^7 inserted
// lines for half of one. Each numeric parameter is read as min(value, MAX) and written back
// in at most five digits (leading zeros dropped), as the CLI joiner reads them (PARAM_MAX in
// beach_cli/join/sequences.py); a count that is the sequence's only parameter is held to what
// the screen can show: cols x rows cells for REP, cols for tab stops and character insertion,
// deletion and erasure, rows for the line operations. Beyond that a count changes nothing a
// terminal shows but its cost.
//
// A byte-level state machine that keeps its state across frames, so a sequence cut anywhere
// by the host's frames is clamped the same. A number is written once it ends (the frame may
// end first: then it waits for the next one); every other byte is copied as it comes.

export const MAX = 65535;

const ESC = 0x1b;
const GROUND = 0;
const ESCAPE = 1; // after ESC
const CSI = 2; // in a control sequence's parameters and intermediates
const C2 = 3; // after 0xC2: U+009B (C1 CSI) is C2 9B in UTF-8
// Which dimension bounds a sole count, by final byte.
const CELLS = 0x62; // b
const COLUMNS = new Set([0x49, 0x5a, 0x40, 0x50, 0x58]); // I Z @ P X
const LINES = new Set([0x4c, 0x4d, 0x53, 0x54]); // L M S T

export class Clamp {
  constructor(cols = 80, rows = 24) {
    this.cols = cols;
    this.rows = rows;
    this.state = GROUND;
    this.value = -1; // the current parameter's value; -1 before its first digit
    this.sole = true; // nothing but digits since the sequence began
    this.mod = 0; // the number's remainder by cols
  }

  size(cols, rows) {
    this.cols = cols;
    this.rows = rows;
  }

  feed(data) {
    if (this.state === GROUND && data.indexOf(ESC) < 0 && data.indexOf(0xc2) < 0) return data;
    const out = new Uint8Array(data.length + 16); // + a held C2 and a held number
    let n = 0;
    let esc = -1; // where the next ESC and the next C2 are, found once each
    let c2 = -1;
    for (let i = 0; i < data.length; i++) {
      if (this.state === GROUND) {
        // Text runs to the next ESC or C2 at native speed (most output is text).
        if (esc < i) esc = found(data.indexOf(ESC, i), data.length);
        if (c2 < i) c2 = found(data.indexOf(0xc2, i), data.length);
        const next = Math.min(esc, c2);
        out.set(data.subarray(i, next), n);
        n += next - i;
        i = next;
        if (i >= data.length) break;
      }
      const b = data[i];
      if (this.state === CSI) {
        if (b >= 0x30 && b <= 0x39) {
          this.value = Math.min(Math.max(this.value, 0) * 10 + (b - 0x30), MAX);
          this.mod = (this.mod * 10 + (b - 0x30)) % this.cols; // exact, for REP's last column
          continue; // written when the number ends
        }
        if (this.sole && this.value >= 0) this.value = this._bounded(b);
        this.sole = false;
        n = this._number(out, n);
        if (b >= 0x40 && b <= 0x7e) this.state = GROUND; // the final byte
        else if (b === ESC) this.state = ESCAPE; // aborts the sequence, starts another
        else if (b === 0x18 || b === 0x1a) this.state = GROUND; // CAN, SUB: aborted
      } else if (this.state === GROUND) {
        if (b === ESC) this.state = ESCAPE;
        else if (b === 0xc2) {
          this.state = C2;
          continue; // held: written with the byte after it
        }
      } else if (this.state === C2) {
        out[n++] = 0xc2;
        this.state = GROUND;
        if (b === 0x9b) this._enter();
        else if (b === ESC) this.state = ESCAPE;
        else if (b === 0xc2) {
          this.state = C2;
          continue;
        }
      } else if (this.state === ESCAPE) {
        if (b === 0x5b) this._enter();
        else if (b !== ESC) this.state = GROUND;
      }
      out[n++] = b;
    }
    return out.subarray(0, n);
  }

  _enter() {
    this.state = CSI;
    this.value = -1;
    this.mod = 0;
    this.sole = true;
  }

  // A sole count before final byte `b`, as large as it can usefully be. REP past every cell
  // still moves the cursor: it keeps the count's remainder by cols, so the last character
  // lands on the same column, and n' = cols x rows + (n mod cols) <= n.
  _bounded(b) {
    if (b === CELLS) {
      const cells = this.cols * this.rows;
      return this.value <= cells ? this.value : cells + this.mod;
    }
    if (COLUMNS.has(b)) return Math.min(this.value, this.cols);
    if (LINES.has(b)) return Math.min(this.value, this.rows);
    return this.value;
  }

  _number(out, n) {
    let v = this.value;
    if (v < 0) return n;
    this.value = -1;
    let width = 1;
    for (let p = 10; p <= v; p *= 10) width++;
    for (let k = n + width - 1; k >= n; k--) {
      out[k] = 0x30 + (v % 10);
      v = Math.floor(v / 10);
    }
    return n + width;
  }
}

const found = (at, end) => (at < 0 ? end : at);
