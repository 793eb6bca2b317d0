// SPAKE2 exactly as the python `spake2` package (0.9) runs it on Ed25519, so the page and a
// Python host derive the same key. No npm package speaks this variant (they follow the later
// IRTF draft), hence our own, on @noble/curves and @noble/hashes.
//
// The construction (see spake2/spake2.py, spake2/ed25519_basic.py):
//   message = side byte || x*G + pw*M (side A; side B blinds with N)
//   K       = x * (Y* - pw*N)           (side A; side B unblinds with M)
//   key     = SHA256(SHA256(pw) || SHA256(idA) || SHA256(idB) || X* || Y* || K)
// with X*, Y* the 32-byte points of A's and B's messages (no side byte).

import { ed25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';

const Point = ed25519.Point;
// The generator as a point of its own: noble's BASE builds a ~2,000-point table on first use
// (~35-80 ms here), which a page that runs one exchange never earns back; the plain
// constant-time multiply costs a few ms each time instead.
const G = Point.fromBytes(Point.BASE.toBytes());
const L = Point.Fn.ORDER; // the prime subgroup's order: scalars live mod L
const Q = Point.Fp.ORDER; // the field prime 2^255 - 19
const EMPTY = new Uint8Array(0);
const SIDE_A = 0x41; // 'A'
const SIDE_B = 0x42; // 'B'
const ascii = (s) => new TextEncoder().encode(s);

/** Any failure python-spake2 raises (SPAKEError, or ValueError for a bad element). */
export class SpakeError extends Error {
  constructor(message) {
    super(message);
    this.name = 'SpakeError';
  }
}

function bigEndian(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function littleEndian32(n) {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, n >>= 8n) out[i] = Number(n & 0xffn);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** groups.password_to_scalar: HKDF-SHA256 to 48 bytes (16 spare against bias), mod L. */
export function passwordToScalar(password) {
  return bigEndian(hkdf(sha256, password, EMPTY, ascii('SPAKE2 pw'), 48)) % L;
}

/** ed25519_basic.arbitrary_element: a point nobody knows the discrete log of. Hash the seed
 * to a y, take the first y, y+1, ... that is on the curve (with the even x), clear the
 * cofactor, and skip the identity. */
export function arbitraryElement(seed) {
  const y = bigEndian(hkdf(sha256, seed, EMPTY, ascii('SPAKE2 arbitrary element'), 48)) % Q;
  for (let plus = 0n; ; plus++) {
    let point;
    try {
      // y < Q < 2^255, so the sign bit is clear: the even x, as python's xrecover picks.
      point = Point.fromBytes(littleEndian32((y + plus) % Q));
    } catch {
      continue; // y^2-1 / (d y^2+1) is not a square: no point here (about half of all y)
    }
    const cleared = point.clearCofactor(); // x8: into the prime-order subgroup
    if (!cleared.is0()) return cleared;
  }
}

// M and N are fixed; computing them costs a few square roots, so once, on first use.
let blinds = null;
function params() {
  blinds ??= { M: arbitraryElement(ascii('M')), N: arbitraryElement(ascii('N')) };
  return blinds;
}

/** ed25519_basic.random_scalar: 64 random bytes, big-endian, mod L (bias ~2^-260). */
export function randomScalar(entropy = defaultEntropy) {
  for (;;) {
    const x = bigEndian(entropy(64)) % L;
    // python would use 0 as is (probability 2^-252); noble's constant-time multiply refuses it.
    if (x !== 0n) return x;
  }
}

function defaultEntropy(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

// pw*P in constant time; pw == 0 (2^-252) is the identity, as in python.
const times = (point, scalar) => (scalar === 0n ? Point.ZERO : point.multiply(scalar));

/** spake2.finalize_SPAKE2: the shared key from the transcript. */
export function finalizeKey(idA, idB, xMsg, yMsg, kBytes, password) {
  return sha256(concat(sha256(password), sha256(idA), sha256(idB), xMsg, yMsg, kBytes));
}

class Spake2 {
  /**
   * @param {Uint8Array} password
   * @param {Uint8Array} idA
   * @param {Uint8Array} idB
   * @param {{entropy?: (n: number) => Uint8Array, scalar?: bigint}} options  for test vectors:
   *   `entropy` stands in for os.urandom, `scalar` for the random scalar itself
   */
  constructor(side, password, idA = EMPTY, idB = EMPTY, options = {}) {
    this.side = side;
    this.password = password;
    this.idA = idA;
    this.idB = idB;
    this.pwScalar = passwordToScalar(password);
    this._options = options;
    this._started = false;
    this._finished = false;
    this._outbound = null;
  }

  /** Our message: the side byte, then the 32-byte blinded point (33 bytes). */
  start() {
    if (this._started) throw new SpakeError('start() can only be called once');
    this._started = true;
    const { M, N } = params();
    const { scalar, entropy } = this._options;
    this.xyScalar = scalar ?? randomScalar(entropy);
    const blind = this.side === SIDE_A ? M : N;
    const element = G.multiply(this.xyScalar).add(times(blind, this.pwScalar));
    this._outbound = element.toBytes();
    return concat([this.side], this._outbound);
  }

  /** The peer's message in, the 32-byte shared key out; throws SpakeError on every check
   * python makes (and on a message that is not exactly 33 bytes: python would slice one). */
  finish(message) {
    if (this._finished) throw new SpakeError('finish() can only be called once');
    this._finished = true;
    if (!this._started) throw new SpakeError('finish() before start()');
    if (!(message instanceof Uint8Array) || message.length !== 33) {
      throw new SpakeError('a SPAKE2 message is 33 bytes');
    }
    const other = message[0];
    if (other !== SIDE_A && other !== SIDE_B) {
      throw new SpakeError("I don't know what side they're on");
    }
    if (other === this.side) {
      throw new SpakeError(
        this.side === SIDE_A
          ? "I'm A, but I got a message from A (not B)."
          : "I'm B, but I got a message from B (not A).",
      );
    }
    const inbound = message.subarray(1);
    let element;
    try {
      element = Point.fromBytes(inbound); // canonical encodings only (RFC 8032)
    } catch {
      throw new SpakeError('decoding point that is not on curve');
    }
    if (element.is0()) throw new SpakeError('element was Zero');
    if (!element.isTorsionFree()) throw new SpakeError('element is not in the right group');
    if (sameBytes(element.toBytes(), this._outbound)) {
      throw new SpakeError('someone tried to reflect our message back to us');
    }
    const { M, N } = params();
    const unblind = this.side === SIDE_A ? N : M;
    // K = x * (Y* - pw*unblind). The difference may be the identity (a peer that knows
    // pw*N); python then hashes the identity's encoding, and so do we.
    const K = element.subtract(times(unblind, this.pwScalar)).multiply(this.xyScalar);
    const [xMsg, yMsg] =
      this.side === SIDE_A ? [this._outbound, inbound] : [inbound, this._outbound];
    return finalizeKey(this.idA, this.idB, xMsg, yMsg, K.toBytes(), this.password);
  }
}

/** The joiner's side of the exchange (python's SPAKE2_A). */
export class Spake2A extends Spake2 {
  constructor(password, idA, idB, options) {
    super(SIDE_A, password, idA, idB, options);
  }
}

/** The host's side (python's SPAKE2_B): for tests that run both sides in JavaScript. */
export class Spake2B extends Spake2 {
  constructor(password, idA, idB, options) {
    super(SIDE_B, password, idA, idB, options);
  }
}
