// Predictive echo's guesses (src/predict.js) against a fake screen, and the page's controller
// (src/echo.js: modes, the want frame, hostile ECHOs) against a fake terminal.

import assert from 'node:assert/strict';
import test from 'node:test';
import { ECHO_OTHERS, ECHO_SECRET, Frame, decodeEcho, encodeEchoWanted } from '../src/frames.js';
import { MAX_GUESSES, Predictor, narrow } from '../src/predict.js';
import { PredictiveEcho, paletteColour, parseMode } from '../src/echo.js';
import { BeachError } from '../src/keyplane.js';

// The host's screen as predict.js reads it: rows of text, a cursor, wide cells marked.
class FakeScreen {
  constructor(rows = ['$ '], cols = 20, cursor = { x: 2, y: 0 }) {
    this.rows = rows.map((r) => r.padEnd(cols, ' ').split(''));
    this.cols = cols;
    this.cursor = cursor;
    this.plain = true;
    this.wide = new Set();
  }

  text(y, x) {
    return this.rows[y]?.[x] ?? ' ';
  }

  width(y, x) {
    if (this.wide.has(`${y},${x}`)) return 2;
    if (this.wide.has(`${y},${x - 1}`)) return 0;
    return 1;
  }

  lineEnd(y) {
    return (this.rows[y] ?? []).join('').trimEnd().length;
  }

  /** The host echoes `text` at its cursor, as a shell would. */
  echo(text) {
    for (const ch of text) {
      this.rows[this.cursor.y][this.cursor.x] = ch;
      this.cursor = { x: this.cursor.x + 1, y: this.cursor.y };
    }
  }

  row(y) {
    return this.rows[y].join('').trimEnd();
  }
}

// What a person sees: the screen with the visible guesses over it.
function seen(p, s, y = 0) {
  const row = [...s.rows[y]];
  for (const g of p.visible(s)) if (g.y === y) row[g.x] = g.ch;
  return row.join('').trimEnd();
}

// Keys typed one by one; returns the input offset after them.
function type(p, s, text, from = 0) {
  let end = from;
  for (const ch of text) {
    end += new TextEncoder().encode(ch).length;
    p.key(s, ch, end, true, 0);
  }
  return end;
}

test('the first key of an epoch waits for the host; once confirmed, the rest show at once', () => {
  const s = new FakeScreen();
  const p = new Predictor();
  type(p, s, 'e');
  assert.equal(seen(p, s), '$'); // tentative: nothing shows
  s.echo('e');
  p.judge(s, 1);
  assert.equal(p.stats.confirmed, 1);
  const end = type(p, s, 'cho', 1);
  assert.equal(seen(p, s), '$ echo');
  assert.deepEqual(p.visibleCursor(), { x: 6, y: 0 });
  s.echo('cho');
  p.judge(s, end);
  assert.equal(p.size, 0);
  assert.equal(p.visibleCursor(), null);
  assert.equal(p.stats.confirmed, 4);
  assert.equal(p.stats.wrong, 0);
});

test('insertion shifts the rest of the row; backspace pulls it back; arrows move the cursor', () => {
  const s = new FakeScreen(['$ ac'], 20, { x: 3, y: 0 }); // the cursor on the c
  const p = new Predictor();
  p.confirmed = p.epoch; // an epoch already confirmed: guesses show
  p.key(s, 'b', 1, true);
  assert.equal(seen(p, s), '$ abc');
  assert.deepEqual(p.visibleCursor(), { x: 4, y: 0 });
  p.key(s, '\x7f', 2, true);
  assert.equal(seen(p, s), '$ ac');
  assert.deepEqual(p.visibleCursor(), { x: 3, y: 0 });
  p.key(s, '\x1b[D', 5, true);
  assert.deepEqual(p.visibleCursor(), { x: 2, y: 0 });
  p.key(s, 'X', 6, true);
  assert.equal(seen(p, s), '$ Xac');
  p.key(s, '\x1b[C', 9, true);
  p.key(s, '\x1b[C', 12, true);
  assert.deepEqual(p.visibleCursor(), { x: 5, y: 0 });
  p.key(s, '\x1b[C', 15, true); // past the row's end: the program decides
  assert.equal(p.visibleCursor(), null);
});

test('Enter, control keys, escapes, up/down and pastes start a tentative epoch', () => {
  for (const key of ['\r', '\t', '\x03', '\x1b[A', '\x1b[B', '\x1bOP', 'a paste', '\x1b[200~x\x1b[201~', 'ü', '漢']) {
    const s = new FakeScreen();
    const p = new Predictor();
    p.confirmed = p.epoch;
    type(p, s, 'ab');
    assert.equal(seen(p, s), '$ ab', key);
    const epoch = p.epoch;
    p.key(s, key, 10, true);
    if (key === 'ü') {
      assert.equal(p.epoch, epoch, 'a Latin-1 letter is one cell: guessed');
      continue;
    }
    assert.equal(p.epoch, epoch + 1, key);
    p.key(s, 'z', 11, true);
    assert.ok(!p.visible(s).some((g) => g.ch === 'z'), `${JSON.stringify(key)}: a guess after it shows`);
  }
});

test('after Enter nothing is guessed until the screen has answered the keys before', () => {
  const s = new FakeScreen();
  const p = new Predictor();
  let end = type(p, s, 'ls');
  s.echo('ls');
  p.judge(s, end);
  p.key(s, '\r', ++end, true);
  end = type(p, s, 'pw', end); // typed before the host's newline and prompt came back
  assert.equal(p.size, 0, 'the screen cursor is stale: no guess');
  s.rows[1] = '$ pw'.padEnd(20, ' ').split('');
  s.cursor = { x: 4, y: 1 };
  p.judge(s, end); // the ECHO that covers them: the prompt, and pw after it
  end = type(p, s, 'd', end);
  assert.equal(p.size, 1, 'guessed at the fresh prompt (in a tentative epoch)');
  assert.equal(p.cells.get('1,4').ch, 'd');
  assert.equal(p.visible(s).length, 0);
});

test('after a dropped epoch the keys it guessed at must reach the screen before more guesses', () => {
  const s = new FakeScreen();
  const p = new Predictor();
  let end = type(p, s, 'ab'); // tentative; the host shows something else
  s.echo('x');
  p.judge(s, 1);
  assert.equal(p.size, 0);
  end = type(p, s, 'c', end);
  assert.equal(p.size, 0, "b is still to come: the screen's cursor is stale");
  s.echo('y');
  p.judge(s, 2);
  end = type(p, s, 'd', end);
  assert.equal(p.size, 0, 'c is too');
  p.judge(s, end); // the screen has answered every key
  type(p, s, 'e', end);
  assert.equal(p.size, 1);
});

test('a wrong guess in a shown epoch drops every guess; the screen is what remains', () => {
  const s = new FakeScreen();
  const p = new Predictor();
  type(p, s, '1');
  s.echo('1');
  p.judge(s, 1);
  type(p, s, 'ab', 1);
  assert.equal(seen(p, s), '$ 1ab');
  p.visible(s).forEach((g) => { g.shown = true; });
  s.echo('AB'); // an uppercasing program
  assert.equal(seen(p, s), '$ 1AB', 'the host has spoken for the cells: no guess over them');
  p.judge(s, 2);
  assert.equal(p.size, 0);
  assert.equal(p.stats.wrong, 1);
  assert.equal(p.stats.resets, 1);
});

test('a wrong guess in a tentative epoch drops it and later epochs, unseen', () => {
  const s = new FakeScreen();
  const p = new Predictor();
  type(p, s, 'x'); // epoch 1, tentative
  p.key(s, '\r', 2, true);
  s.cursor = { x: 0, y: 1 }; // where the host's newline will put it
  type(p, s, 'y', 2); // epoch 2
  p.judge(s, 1); // the host did not echo x (a password prompt, say)
  assert.equal(p.size, 0);
  assert.equal(p.stats.wrong, 0);
  assert.equal(p.stats.resets, 0);
});

test('the echo of an older key does not hide a newer guess on the same cell', () => {
  const s = new FakeScreen(['$ b'], 20, { x: 2, y: 0 });
  const p = new Predictor();
  p.confirmed = p.epoch;
  p.key(s, 'a', 1, true); // "$ ab": b moves right
  p.key(s, '\x7f', 2, true); // and back: "$ b"
  s.rows[0][2] = 'a'; // the host's echo of "a" came (the row is "$ ab" on its screen)
  s.rows[0][3] = 'b';
  assert.equal(seen(p, s), '$ b', 'the older echo shows under the newer guesses');
});

test('no guess where it cannot be exact: wide characters, the last column, the alternate screen', () => {
  const s = new FakeScreen(['$ 漢'], 10, { x: 2, y: 0 });
  s.wide.add('0,2');
  const p = new Predictor();
  p.confirmed = p.epoch;
  type(p, s, 'a');
  assert.equal(p.size, 0, 'a wide character to move');
  const full = new FakeScreen(['$ 12345'], 10, { x: 7, y: 0 });
  const f = new Predictor();
  type(f, full, 'ab');
  assert.equal(f.size, 1, 'the last column is never guessed at');
  const alt = new FakeScreen();
  alt.plain = false;
  const q = new Predictor();
  type(q, alt, 'a');
  assert.equal(q.size, 0);
});

test('keys that may not be guessed (a password prompt, a small window) drop every guess', () => {
  const s = new FakeScreen();
  const p = new Predictor();
  p.confirmed = p.epoch;
  type(p, s, 'ab');
  p.key(s, 'c', 3, false);
  assert.equal(p.size, 0);
  assert.equal(p.visibleCursor(), null);
});

test('guesses are bounded, and expire when no ECHO ever judges them', () => {
  const s = new FakeScreen(['$ '], 1000, { x: 2, y: 0 });
  const p = new Predictor();
  type(p, s, 'x'.repeat(MAX_GUESSES + 10));
  assert.ok(p.size <= MAX_GUESSES, p.size);
  const q = new Predictor();
  q.key(s, 'a', 1, true, 100);
  assert.equal(q.expire(500, 1000), false);
  assert.equal(q.expire(1200, 1000), true);
  assert.equal(q.size, 0);
  assert.equal(q.stats.expired, 1);
});

test('narrow: what predict.js guesses at', () => {
  for (const ch of ['a', ' ', '~', 'é', 'ß']) assert.ok(narrow(ch), ch);
  for (const ch of ['\x7f', '\x1b', '\u00ad', '\u0301', '漢', '😀', 'ab']) assert.ok(!narrow(ch), ch);
});

// -- frames ---------------------------------------------------------------------------------------

test('ECHO frames as wire/frames.py has them', () => {
  assert.deepEqual([...encodeEchoWanted(true)], [Frame.ECHO, 1]);
  assert.deepEqual([...encodeEchoWanted(false)], [Frame.ECHO, 0]);
  const body = new Uint8Array(9);
  new DataView(body.buffer).setBigUint64(0, 1234n);
  body[8] = 0xff; // unknown flags are kept
  assert.deepEqual(decodeEcho(body), { offset: 1234, flags: 0xff });
  new DataView(body.buffer).setBigUint64(0, 1n << 60n);
  assert.equal(decodeEcho(body).offset, 1n << 60n); // past 2^53: a BigInt
  const protocol = (b) => assert.throws(() => decodeEcho(b), (e) => e instanceof BeachError && e.kind === 'protocol');
  protocol(new Uint8Array(8));
  protocol(new Uint8Array(10));
  protocol(Uint8Array.of(1));
  new DataView(body.buffer).setBigUint64(0, 1n << 63n);
  protocol(body);
});

// -- the controller, on a fake terminal ----------------------------------------------------------

class FakeCell {
  constructor(ch) {
    this.ch = ch;
  }
  getChars() { return this.ch === ' ' ? '' : this.ch; }
  getWidth() { return 1; }
  isFgDefault() { return true; }
  isBgDefault() { return true; }
  isInverse() { return 0; }
  isBold() { return 0; }
  isItalic() { return 0; }
  isUnderline() { return 0; }
}

class FakeTerminal {
  constructor(rows = ['$ ']) {
    this.cols = 40;
    this.rows = 5;
    this.lines = rows.map((r) => r.padEnd(this.cols, ' ').split(''));
    while (this.lines.length < this.rows) this.lines.push(' '.repeat(this.cols).split(''));
    this.markers = [];
    this.decorations = [];
    this.options = { fontFamily: 'monospace', fontSize: 15 };
    const term = this;
    this.parsed = [];
    this.buffer = {
      onBufferChange: () => {},
      normal: null,
      active: {
        type: 'normal',
        baseY: 0,
        viewportY: 0,
        cursorX: 2,
        cursorY: 0,
        get length() { return term.lines.length; },
        getLine: (y) => (term.lines[y] ? {
          getCell: (x) => new FakeCell(term.lines[y][x]),
          translateToString: () => term.lines[y].join('').trimEnd(),
        } : undefined),
      },
    };
    this.buffer.normal = this.buffer.active;
  }
  onWriteParsed(fn) { this.parsed.push(fn); }
  registerMarker(offset) {
    const m = { line: this.buffer.active.cursorY + offset, isDisposed: false, dispose() { this.isDisposed = true; } };
    this.markers.push(m);
    return m;
  }
  registerDecoration(opts) {
    const d = { opts, isDisposed: false, dispose() { this.isDisposed = true; }, onRender() {} };
    this.decorations.push(d);
    return d;
  }
  live() {
    return this.decorations.filter((d) => !d.isDisposed).map((d) => [d.opts.marker.line, d.opts.x]);
  }
  hostEchoes(text) {
    const b = this.buffer.active;
    for (const ch of text) this.lines[b.cursorY][b.cursorX++] = ch;
    for (const fn of this.parsed) fn();
  }
}

function controller(mode = 'always', rows = undefined) {
  const term = new FakeTerminal(rows);
  const sent = [];
  let clock = 0;
  let timers = [];
  const later = (fn, ms) => timers.push([clock + ms, fn]);
  const echo = new PredictiveEcho({ terminal: term, mode, send: (f) => { sent.push([...f]); return true; }, now: () => clock, later });
  const tick = (ms) => {
    clock += ms;
    const due = timers.filter(([t]) => t <= clock);
    timers = timers.filter(([t]) => t > clock);
    for (const [, fn] of due) fn();
  };
  return { term, sent, echo, tick };
}

test('parseMode: auto unless the link says always or never', () => {
  assert.equal(parseMode('always'), 'always');
  assert.equal(parseMode('never'), 'never');
  for (const v of [null, '', 'ALWAYS', 'yes']) assert.equal(parseMode(v), 'auto');
  assert.equal(paletteColour(1), '#cc0000');
  assert.equal(paletteColour(16), '#000000');
  assert.equal(paletteColour(231), '#ffffff');
  assert.equal(paletteColour(232), '#080808');
});

test('always: asks for ECHOs at HELLO, guesses, judges, and the overlay follows', () => {
  const { term, sent, echo } = controller('always');
  echo.start(['deflate', 'echo'], 'rw', true);
  assert.deepEqual(sent, [[Frame.ECHO, 1]]);
  echo.key('e', 1);
  assert.deepEqual(term.live(), [], 'a tentative epoch shows nothing');
  term.hostEchoes('e');
  echo.echo(1, 0, 1);
  assert.equal(echo.state.confirmed, 1);
  echo.key('c', 2);
  echo.key('h', 3);
  assert.deepEqual(echo.state.guesses, [{ x: 3, y: 0, ch: 'c' }, { x: 4, y: 0, ch: 'h' }]);
  assert.deepEqual(echo.state.cursor, { x: 5, y: 0 });
  assert.equal(echo.state.shown, 2);
  term.hostEchoes('c'); // the host's output answered one cell: its overlay goes at once
  assert.deepEqual(echo.state.guesses, [{ x: 4, y: 0, ch: 'h' }]);
  term.hostEchoes('h');
  echo.echo(3, 0, 3);
  assert.deepEqual(echo.state.guesses, []);
  assert.deepEqual(term.live(), []);
});

test('the secret flag stops guessing; the others flag drops every guess', () => {
  const { term, echo } = controller('always');
  echo.start(['echo'], 'rw', true);
  echo.key('a', 1);
  term.hostEchoes('a');
  echo.echo(1, 0, 1);
  echo.key('b', 2);
  assert.equal(echo.state.guesses.length, 1);
  echo.echo(1, ECHO_OTHERS, 2);
  assert.equal(echo.state.guesses.length, 0);
  echo.echo(1, ECHO_SECRET, 2);
  for (const [i, ch] of [...'hunter2'].entries()) {
    echo.key(ch, 3 + i);
    assert.equal(echo.state.guesses.length, 0, 'a secret never shows');
  }
  assert.ok(echo.state.keys.slice(-7).every((k) => k.ch === null), 'nor is it kept');
  assert.deepEqual(term.live(), []);
});

test('hostile ECHOs: beyond what we sent, going back, a BigInt: ignored, never thrown', () => {
  const { term, echo } = controller('always');
  echo.start(['echo'], 'rw', true);
  echo.key('a', 1);
  term.hostEchoes('a');
  echo.echo(1, 0, 1);
  echo.key('b', 2);
  const before = echo.state.guesses.length;
  echo.echo(1000, 0, 2); // we sent 2 bytes
  echo.echo(0, 0, 2); // back before the last one judged
  echo.echo(1n << 60n, 0, 2);
  echo.echo(Number.MAX_SAFE_INTEGER, 0xfc, 2);
  assert.equal(echo.state.ignored, 4);
  assert.equal(echo.state.guesses.length, before);
});

test('auto: ECHOs are asked for only above SHOW_ON of round trip, and stopped at SHOW_OFF', () => {
  const { sent, echo } = controller('auto');
  echo.start(['echo'], 'rw', true);
  echo.roundTrip(5);
  echo.key('a', 1);
  assert.deepEqual(sent, [], 'a fast link: the host is asked for nothing');
  assert.equal(echo.predictor.size, 0);
  echo.roundTrip(50); // between the thresholds: no change
  assert.deepEqual(sent, []);
  echo.roundTrip(100);
  assert.deepEqual(sent, [[Frame.ECHO, 1]]);
  assert.equal(echo.state.showing, true);
  assert.equal(echo.underline, false);
  echo.roundTrip(200);
  assert.equal(echo.underline, true);
  echo.roundTrip(120); // above UNDERLINE_OFF: still underlined
  assert.equal(echo.underline, true);
  echo.roundTrip(50);
  assert.equal(echo.state.showing, true);
  echo.roundTrip(30);
  assert.deepEqual(sent, [[Frame.ECHO, 1], [Frame.ECHO, 0]]);
  assert.equal(echo.state.wants, 2);
});

test('keys typed while not guessing leave the cursor unknown until the host answers them', () => {
  const { term, echo } = controller('auto');
  echo.start(['echo'], 'rw', true);
  echo.roundTrip(5);
  echo.key('a', 1); // not guessed at: a fast link
  echo.roundTrip(100); // guesses may show from now on
  echo.key('b', 2);
  assert.equal(echo.predictor.size, 0, "a may not be on the screen yet: its cursor is stale");
  term.hostEchoes('ab');
  echo.echo(2, 0, 2);
  echo.key('c', 3);
  assert.equal(echo.predictor.size, 1);
});

test('never, a view-only link, a host without "echo", a small window: no guesses, no frames', () => {
  for (const [mode, features, role, fits] of [
    ['never', ['echo'], 'rw', true],
    ['always', ['echo'], 'view', true],
    ['always', ['deflate'], 'rw', true],
    ['always', ['echo'], 'rw', false],
  ]) {
    const { term, sent, echo } = controller(mode);
    echo.start(features, role, fits);
    echo.roundTrip(150);
    echo.key('a', 1);
    term.hostEchoes('a');
    echo.echo(1, 0, 1);
    echo.key('b', 2);
    assert.deepEqual(echo.state.guesses, [], `${mode} ${features} ${role} ${fits}`);
    if (fits) assert.deepEqual(sent, [], `${mode} ${features} ${role}`);
  }
});

test('guesses no ECHO judges expire', () => {
  const { echo, tick } = controller('always');
  echo.start(['echo'], 'rw', true);
  echo.key('a', 1);
  assert.equal(echo.predictor.size, 1);
  tick(400);
  assert.equal(echo.predictor.size, 1);
  for (let i = 0; i < 10; i++) tick(500);
  assert.equal(echo.predictor.size, 0);
  assert.equal(echo.state.expired, 1);
});

// -- the session's frame handler ------------------------------------------------------------------

test('ECHO frames in the session: absurd offsets are ignored, a malformed body is a protocol error', async () => {
  const { Session } = await import('../src/session.js');
  const term = new FakeTerminal();
  term.write = (data, callback) => callback && callback(); // parsed at once
  term.resize = () => {};
  term.onData = () => {};
  term.onBinary = () => {};
  const sent = [];
  const session = new Session({
    terminal: term,
    propose: () => ({ cols: 100, rows: 30 }),
    token: { role: 'rw', session: 's' },
    url: 'ws://nowhere',
    ui: { status: () => {}, state: () => {}, path: () => {} },
    predict: 'always',
  });
  session.link = { send: (f) => { sent.push([...f]); return true; }, close: () => {} };
  session.helloWaiter = () => {};
  const hello = new TextEncoder().encode(JSON.stringify({ v: 1, role: 'rw', cols: 40, rows: 5, features: ['echo'] }));
  session._frame(Frame.HELLO, hello);
  assert.deepEqual(sent, [[Frame.ECHO, 1]], 'asked for ECHOs at once (always)');
  const echo = (offset, flags = 0) => {
    const body = new Uint8Array(9);
    new DataView(body.buffer).setBigUint64(0, BigInt(offset));
    body[8] = flags;
    return body;
  };
  for (const offset of [5, 1n << 60n, (1n << 63n) - 1n]) session._frame(Frame.ECHO, echo(offset));
  assert.equal(session.echo.state.ignored, 3);
  assert.equal(session.finished, false);
  const ended = session.ended.then(() => null, (err) => err);
  session._frame(Frame.ECHO, Uint8Array.of(1)); // the joiner's one-byte form, from the host
  const err = await ended;
  assert.ok(err instanceof BeachError && err.kind === 'protocol' && /malformed/.test(err.message), err);
});

test('the overlay draws a guess in the colours of the cell it stands for, underlined when slow', () => {
  const { term, echo } = controller('auto');
  const elements = [];
  term.registerDecoration = (opts) => {
    const handlers = [];
    const d = { opts, isDisposed: false, dispose() { this.isDisposed = true; }, onRender: (fn) => handlers.push(fn) };
    const el = { classList: new Set(), style: {}, dataset: {}, textContent: '' };
    el.classList.add = el.classList.add.bind(el.classList);
    d.render = () => handlers.forEach((fn) => fn(el));
    term.decorations.push(d);
    elements.push([d, el]);
    return d;
  };
  // The cursor cell: palette red on true-colour blue, inverse.
  term.buffer.active.getLine = (y) => term.lines[y] && {
    getCell: (x) => Object.assign(new FakeCell(term.lines[y][x]), {
      isFgDefault: () => false, isBgDefault: () => false, isFgPalette: () => true, isBgPalette: () => false,
      getFgColor: () => 1, getBgColor: () => 0x0000ff, isInverse: () => 1, isBold: () => 1,
    }),
    translateToString: () => term.lines[y].join('').trimEnd(),
  };
  echo.start(['echo'], 'rw', true);
  echo.roundTrip(200); // slow: shown and underlined
  echo.key('a', 1);
  term.hostEchoes('a');
  echo.echo(1, 0, 1);
  echo.key('b', 2);
  const glyph = elements.find(([d]) => !d.isDisposed && d.opts.x === 3);
  assert.ok(glyph, 'a decoration over the cell after a');
  glyph[0].render();
  const el = glyph[1];
  assert.equal(el.textContent, 'b');
  assert.ok(el.classList.has('beach-guess') && el.classList.has('beach-underline'), [...el.classList]);
  assert.equal(el.style.color, '#0000ff'); // inverse: the background's colour...
  assert.equal(el.style.background, '#cc0000'); // ...and the foreground's
  assert.equal(el.style.fontWeight, 'bold');
  assert.equal(el.style.fontFamily, 'monospace');
  const cursor = elements.find(([d]) => !d.isDisposed && d.opts.x === 4);
  cursor[0].render();
  assert.ok(cursor[1].classList.has('beach-guess-cursor'));
  assert.ok(echo.state.keys.at(-1).shown !== null, "the key's glyph was drawn: its time is kept");
});

// -- the round trip (links.js) --------------------------------------------------------------------

test("the link's round trip: the least of its recent PING/PONGs, a stranger's PONG ignored", async () => {
  const { RelayLink } = await import('../src/links.js');
  const { encodePong } = await import('../src/frames.js');
  const sent = [];
  const sig = { recv: () => new Promise(() => {}), send: (type, msg) => sent.push(msg.data), close: () => {} };
  const kx = { sealFrame: (f) => f, openFrame: (d) => d };
  const link = new RelayLink(sig, kx, () => {});
  const rtts = [];
  link.onRtt = (ms) => rtts.push(ms);
  try {
    assert.equal(sent.length, 1, 'a PING as the link starts');
    assert.equal(sent[0][0], Frame.PING);
    link._received(encodePong(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8))); // not ours
    assert.deepEqual(rtts, []);
    link._received(encodePong(sent[0].subarray(1)));
    assert.equal(rtts.length, 1);
    assert.ok(rtts[0] >= 0 && rtts[0] < 1000, rtts);
    link._received(encodePong(sent[0].subarray(1))); // the same PONG again: counted once
    assert.equal(rtts.length, 1);
    link._ping();
    await new Promise((resolve) => setTimeout(resolve, 30));
    link._received(encodePong(sent[1].subarray(1))); // a slower one: the least stands
    assert.equal(rtts.length, 2);
    assert.equal(rtts[1], rtts[0]);
    assert.equal(link.rtt, rtts[0]);
  } finally {
    link.close();
  }
});
