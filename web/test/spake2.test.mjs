// SPAKE2 against python-spake2 0.9's own published Ed25519 vectors (spake2/test/test_compat.py)
// and against every check its finish() makes.

import assert from 'node:assert/strict';
import test from 'node:test';
import { ED25519_TORSION_SUBGROUP, ed25519 } from '@noble/curves/ed25519.js';
import {
  SpakeError,
  Spake2A,
  Spake2B,
  arbitraryElement,
  finalizeKey,
  passwordToScalar,
} from '../src/spake2.js';
import { fromHex, hex, prg } from './helpers.mjs';

const utf8 = (s) => new TextEncoder().encode(s);
const Point = ed25519.Point;
const pw = utf8('password');

test('the test PRG matches python-spake2 (TestPRG)', () => {
  assert.equal(hex(prg('A')(16)), 'c1d59d78903e9d7874d9064e12d36c58');
  assert.equal(hex(prg('B')(16)), '2af6d4b843a9e6cd1d185eb5de870f77');
});

test('asymmetric exchange vector (SPAKE2.test_asymmetric)', () => {
  const a = new Spake2A(pw, undefined, undefined, { entropy: prg('A') });
  const b = new Spake2B(pw, undefined, undefined, { entropy: prg('B') });
  const m1A = a.start();
  const m1B = b.start();
  assert.equal(hex(m1A), '416fc960df73c9cf8ed7198b0c9534e2e96a5984bfc5edc023fd24dacf371f2af9');
  assert.equal(hex(m1B), '42354e97b88406922b1df4bea1d7870f17aed3dba7c720b313edae315b00959309');
  const pwScalar = 3515301705789368674385125653994241092664323519848410154015274772661223168839n;
  assert.equal(a.pwScalar, pwScalar);
  assert.equal(b.pwScalar, pwScalar);
  assert.equal(a.xyScalar, 2611694063369306139794446498317402240796898290761098242657700742213257926693n);
  assert.equal(b.xyScalar, 7002393159576182977806091886122272758628412261510164356026361256515836884383n);
  const kA = a.finish(m1B);
  const kB = b.finish(m1A);
  assert.equal(hex(kA), 'a480bca13fa04464bb644f10e340125e96c9494f7399fef7c2bda67eb0fdf06d');
  assert.deepEqual(kA, kB);
});

test('an injected scalar gives the same message as the injected RNG', () => {
  const scalar = 2611694063369306139794446498317402240796898290761098242657700742213257926693n;
  const a = new Spake2A(pw, undefined, undefined, { scalar });
  assert.equal(hex(a.start()), '416fc960df73c9cf8ed7198b0c9534e2e96a5984bfc5edc023fd24dacf371f2af9');
});

test('password to scalar vectors (P2S_TEST_VECTORS, Ed25519)', () => {
  const le = (n) => hex(Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn)));
  assert.equal(le(passwordToScalar(fromHex('7077'))), 'cf090b60384cb818b12c8d972dfbaf910c0c7295c5cfe560e508f5f062f3960f');
  assert.equal(le(passwordToScalar(fromHex('0001feff'))), 'e86622bb57ea0f6f9f963354f2973a43a9e981901a478e6478682374441b0c04');
});

test('arbitrary element vectors (AE_TEST_VECTORS, Ed25519)', () => {
  assert.equal(hex(arbitraryElement(fromHex('41')).toBytes()), '4637592ae2914247de5804be805867266ccac99c635df8077dcdc1d72becf354');
  assert.equal(hex(arbitraryElement(fromHex('42')).toBytes()), '88228ee4046ba5d5fa2f23a0480a99efb1a9554ce50153d69330928215d50775');
});

test('finalize vector (Finalize.test_asymmetric)', () => {
  const key = finalizeKey(utf8('idA'), utf8('idB'), utf8('X_msg'), utf8('Y_msg'), utf8('K_bytes'), utf8('pw'));
  assert.equal(hex(key), 'aa02a627537543399bb1b4b430646480b6d36ab5c44842e738c8f78694d8afac');
});

test('random exchanges agree with the same password and identities, not otherwise', () => {
  const idA = utf8('beach/1|joiner|s|p|rw');
  const idB = utf8('beach/1|host|s');
  for (let i = 0; i < 3; i++) {
    const a = new Spake2A(pw, idA, idB);
    const b = new Spake2B(pw, idA, idB);
    const [ma, mb] = [a.start(), b.start()];
    assert.equal(ma.length, 33);
    assert.deepEqual(a.finish(mb), b.finish(ma));
  }
  const a = new Spake2A(pw, idA, idB);
  const b = new Spake2B(utf8('passwore'), idA, idB);
  const [ma, mb] = [a.start(), b.start()];
  assert.notDeepEqual(a.finish(mb), b.finish(ma));
  const c = new Spake2A(pw, idA, idB);
  const d = new Spake2B(pw, idA, utf8('beach/1|host|t'));
  const [mc, md] = [c.start(), d.start()];
  assert.notDeepEqual(c.finish(md), d.finish(mc));
});

// A fresh side A, started, and a valid message from B to tamper with.
function started() {
  const a = new Spake2A(pw);
  const mine = a.start();
  const theirs = new Spake2B(pw).start();
  return { a, mine, theirs };
}

const withPoint = (side, point) => Uint8Array.from([side, ...point.toBytes()]);
const refuses = (fn, pattern) => assert.throws(fn, (err) => err instanceof SpakeError && pattern.test(err.message));

test('finish refuses a message from the same side or an unknown side', () => {
  const { a, theirs } = started();
  refuses(() => a.finish(Uint8Array.from([0x41, ...theirs.subarray(1)])), /I'm A, but I got a message from A/);
  const b = new Spake2B(pw);
  b.start();
  refuses(() => b.finish(Uint8Array.from([0x42, ...theirs.subarray(1)])), /I'm B, but I got a message from B/);
  for (const side of [0x53, 0x00, 0x61]) {
    const c = started();
    refuses(() => c.a.finish(Uint8Array.from([side, ...theirs.subarray(1)])), /don't know what side/);
  }
});

test('finish refuses a message of the wrong length', () => {
  for (const n of [0, 1, 32, 34, 65]) {
    const { a, theirs } = started();
    const msg = new Uint8Array(n);
    msg.set(theirs.subarray(0, n));
    refuses(() => a.finish(msg), /33 bytes/);
  }
});

test('finish refuses the identity, small-order and torsioned points', () => {
  for (const t of ED25519_TORSION_SUBGROUP) {
    const torsion = Point.fromHex(t);
    const { a } = started();
    refuses(() => a.finish(withPoint(0x42, torsion)), torsion.is0() ? /Zero/ : /right group/);
    if (torsion.is0()) continue;
    // a valid-looking point plus a small-order component is not in the prime-order group
    const { a: a2 } = started();
    refuses(() => a2.finish(withPoint(0x42, Point.BASE.multiply(12345n).add(torsion))), /right group/);
  }
});

test('finish refuses bytes that are not a point, or not canonically encoded', () => {
  // y = 2: (y^2-1)/(d y^2+1) is not a square
  const notOnCurve = new Uint8Array(33);
  notOnCurve[0] = 0x42;
  notOnCurve[1] = 2;
  refuses(() => started().a.finish(notOnCurve), /not on curve/);
  // y = p + 1 encodes the same y as 1 (the identity's), non-canonically
  const p1 = fromHex('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f');
  refuses(() => started().a.finish(Uint8Array.from([0x42, ...p1])), /not on curve/);
});

test('finish refuses our own message reflected back', () => {
  const { a, mine } = started();
  refuses(() => a.finish(Uint8Array.from([0x42, ...mine.subarray(1)])), /reflect/);
});

test('start and finish run once each, in order', () => {
  const a = new Spake2A(pw);
  refuses(() => a.finish(new Spake2B(pw).start()), /before start/);
  const b = new Spake2A(pw);
  const msg = new Spake2B(pw).start();
  b.start();
  refuses(() => b.start(), /only be called once/);
  b.finish(msg);
  refuses(() => b.finish(msg), /only be called once/);
});
