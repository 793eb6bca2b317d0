// web/src/clamp.js: counts in control sequences reach xterm.js as min(value, MAX), however the
// host's frames cut them; everything else passes untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Clamp, MAX } from '../src/clamp.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const clamp = (text, cuts = []) => {
  const bytes = typeof text === 'string' ? enc.encode(text) : text;
  const c = new Clamp();
  const out = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(c.feed(bytes.subarray(at, cut)));
    at = cut;
  }
  return dec.decode(Buffer.concat(out));
};

test('plain text and ordinary sequences pass unchanged', () => {
  for (const text of ['hello', '\x1b[31mred\x1b[0m', '\x1b[38;2;255;100;0mx', '\x1b[?1049h',
    '\x1b]0;title 9999999\x07', 'é漢字😀', '\x1b[12;80H', '\x1b[0m', '\x1b[m', '\x1b7\x1b8']) {
    assert.equal(clamp(text), text);
  }
});

test('a huge count is clamped, a long run of zeros shortened', () => {
  assert.equal(clamp('\x1b[' + '7'.repeat(5000) + 'C'), `\x1b[${MAX}C`);
  assert.equal(clamp('\x1b[' + '0'.repeat(6000) + '5C'), '\x1b[5C');
  assert.equal(clamp('\x1b[00;0000H'), '\x1b[0;0H');
  assert.equal(clamp('\x1b[65535;65536H'), `\x1b[65535;${MAX}H`);
  assert.equal(clamp('\x1b[?99999999h'), `\x1b[?${MAX}h`);
});

test('counts that cost work are held to the screen (80x24 here)', () => {
  assert.equal(clamp('x\x1b[999999999b'), 'x\x1b[1999b'); // REP: every cell, then to the same column
  assert.equal(clamp('\x1b[999999999I\x1b[99999Z'), '\x1b[80I\x1b[80Z'); // tab stops
  assert.equal(clamp('\x1b[10000000L\x1b[5M\x1b[99999S\x1b[99999T'), '\x1b[24L\x1b[5M\x1b[24S\x1b[24T');
  assert.equal(clamp('\x1b[99999@\x1b[99999P\x1b[99999X'), '\x1b[80@\x1b[80P\x1b[80X');
  assert.equal(clamp('\x1b[;99999L'), `\x1b[;${MAX}L`); // a count only when it is the sole one
  assert.equal(clamp('\x1b[?99999S'), `\x1b[?${MAX}S`); // a private sequence is not
  const wide = new Clamp();
  wide.size(200, 60);
  assert.equal(dec.decode(wide.feed(enc.encode('\x1b[99999999b'))), '\x1b[12199b');
});

test('the C1 CSI (U+009B, C2 9B in UTF-8) is clamped too', () => {
  assert.equal(clamp('\u009b999999999b'), '\u009b1999b');
  assert.equal(clamp('é\u00a0x'), 'é\u00a0x'); // other C2 characters untouched
});

test('a sequence cut anywhere by frames is clamped the same', () => {
  const text = 'A\x1b[' + '9'.repeat(300) + ';' + '0'.repeat(50) + '12HB\u009b99999bC';
  const whole = clamp(text);
  const bytes = enc.encode(text);
  for (let cut = 0; cut <= bytes.length; cut++) assert.equal(clamp(bytes, [cut]), whole, `cut ${cut}`);
  assert.equal(clamp(bytes, Array.from({ length: bytes.length }, (_, i) => i)), whole); // byte by byte
});

test('an aborted sequence ends the clamping', () => {
  assert.equal(clamp('\x1b[99999\x18 12345'), `\x1b[${MAX}\x18 12345`);
  assert.equal(clamp('\x1b[99999\x1b[1m 12345'), `\x1b[${MAX}\x1b[1m 12345`);
});
