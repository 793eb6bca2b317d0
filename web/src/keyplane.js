// The joiner's key plane, byte for byte as beach_cli/keys.py and beach_cli/wire/keyplane.py:
// join tokens, SPAKE2 (side A), the HKDF key schedule, key confirmation, and sealing with
// ChaCha20-Poly1305. Everything the page sends through the server is built here, so the
// server sees exactly what a CLI joiner sends.
//
// crypto.subtle is absent on a plain-http page (not a secure context) and has no ChaCha20
// anyway: all primitives are noble's; crypto.getRandomValues is the only platform call.

import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { Spake2A } from './spake2.js';

// -- errors ----------------------------------------------------------------------------------

/** An expected failure with a message for the person: kind is 'wrong-token' (the token is
 * wrong or stale), 'security' (tampering, replay, a bad key exchange) or 'protocol' (a
 * malformed or out-of-order message), as python's WrongToken / SecurityError / ProtocolError. */
export class BeachError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'BeachError';
    this.kind = kind;
  }
}

export const protocolError = (message) => new BeachError('protocol', message);
const securityError = (message) => new BeachError('security', message);
const wrongToken = (message) => new BeachError('wrong-token', message);

// -- python-compatible text --------------------------------------------------------------------

const encoder = new TextEncoder();
export const utf8 = (text) => encoder.encode(text);

/** json.dumps as python writes it (ensure_ascii): `compact` is separators=(",", ":"), else
 * the default ", " and ": ". Same bytes, so ciphertext lengths match a CLI joiner's. */
export function pyJson(value, compact = false) {
  const [comma, colon] = compact ? [',', ':'] : [', ', ': '];
  const dump = (v) => {
    if (v === null) return 'null';
    if (Array.isArray(v)) return `[${v.map(dump).join(comma)}]`;
    if (typeof v === 'object') {
      const items = Object.entries(v).filter(([, x]) => x !== undefined);
      return `{${items.map(([k, x]) => dump(String(k)) + colon + dump(x)).join(comma)}}`;
    }
    if (typeof v === 'number' && !Number.isFinite(v)) throw new TypeError('not JSON');
    // JSON.stringify escapes quotes, backslashes and controls as python does; python also
    // escapes DEL and every non-ASCII UTF-16 unit as \uXXXX.
    return JSON.stringify(v).replace(
      /[\u007f-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
  };
  return dump(value);
}

/** A short python-style repr of a string, for error messages that quote what was typed. */
function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const named = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
  let out = '';
  for (const c of text) {
    const code = c.codePointAt(0);
    if (c === quote) out += `\\${c}`;
    else if (named[c]) out += named[c];
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += c;
  }
  return quote + out + quote;
}

// Python counts a string's length in code points; JavaScript in UTF-16 units.
function codePoints(text) {
  let n = 0;
  for (let i = 0; i < text.length; i++, n++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) i++;
    }
  }
  return n;
}

// -- base64 (no Buffer in a browser; atob is lax about what it accepts) -------------------------

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) VALUE[ALPHABET.charCodeAt(i)] = i;

export function b64encode(bytes) {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const left = bytes.length - i;
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63];
    out += left > 1 ? ALPHABET[(n >> 6) & 63] : '=';
    out += left > 2 ? ALPHABET[n & 63] : '=';
  }
  return out;
}

/** base64.b64decode(text, validate=True) of python 3.11, which is binascii's strict mode:
 * only the alphabet, no leading or inner padding, nothing after the padding that ends a
 * quad, a complete last quad; extra '=' after a complete quad and non-zero spare bits in
 * the last character are accepted (as python does). Throws the key plane's ProtocolError. */
export function b64decode(text) {
  const bad = () => protocolError('bad base64 in signal payload');
  if (typeof text !== 'string') throw bad();
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let size = 0;
  let quad = 0; // data characters in the current quad
  let acc = 0;
  let pads = 0;
  let padding = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x3d) {
      // '='
      if (i === 0) throw bad(); // leading padding
      padding = true;
      if (quad >= 2 && quad + ++pads >= 4) {
        if (i + 1 < text.length) throw bad(); // excess data after padding
        return out.slice(0, size);
      }
      continue;
    }
    const v = code < 128 ? VALUE[code] : -1;
    if (v < 0 || padding) throw bad(); // not base64, or data inside the padding
    pads = 0;
    acc = (acc << 6) | v;
    quad++;
    if (quad >= 2) out[size++] = (acc >> (2 * (4 - quad))) & 0xff;
    if (quad === 4) {
      quad = 0;
      acc = 0;
    }
  }
  if (quad !== 0) throw bad(); // a trailing 1 (impossible) or an unpadded 2 or 3
  return out.slice(0, size);
}

// -- join tokens ---------------------------------------------------------------------------------

const PART = /^[a-z0-9]{1,32}$/;

/** keys.parse_token: `<session>-<secret>` (read-write) or `<session>-v-<secret>`
 * (view-only), forgiving about case and surrounding space. */
export function parseToken(text) {
  const shown = String(text).trim();
  const parts = shown.toLowerCase().split('-');
  let token = null;
  if (parts.length === 2) token = { session: parts[0], role: 'rw', secret: parts[1] };
  else if (parts.length === 3 && parts[1] === 'v') {
    token = { session: parts[0], role: 'view', secret: parts[2] };
  }
  if (token === null || !PART.test(token.session) || !PART.test(token.secret)) {
    throw wrongToken(`${pyRepr(shown)} is not a join token (expected e.g. abc123-xyz789)`);
  }
  return token;
}

/** A token as text again (keys.Token.__str__). */
export function formatToken({ session, role, secret }) {
  return `${session}${role === 'view' ? '-v-' : '-'}${secret}`;
}

// -- payloads (wire/keyplane.py) -----------------------------------------------------------------

export const MAX_MESSAGE_BYTES = 64 * 1024; // wire/signaling.py
export const HOLD_MAX = 180; // seconds: the longest hold a joiner waits out

// A reject names its reason by one of these codes, never free text: it travels unsealed, so
// the page shows only the meaning it knows for a code (a server could forge any text).
export const R_WRONG_TOKEN = 'wrong token';
export const R_DENIED = 'denied';
export const R_NOT_ACCEPTING = 'not accepting';
export const R_TIMEOUT = 'timeout';
export const R_SECURITY = 'security';
export const R_PROTOCOL = 'protocol';
export const R_GAVE_UP = 'gave up';
export const R_NO_KEY = 'no key';
export const R_KEY_REFUSED = 'key refused';
export const REJECT_REASONS = Object.freeze({
  [R_WRONG_TOKEN]: 'the join token is wrong or no longer valid',
  [R_DENIED]: 'the host did not let you in',
  [R_NOT_ACCEPTING]: 'the host no longer accepts joiners',
  [R_TIMEOUT]: 'the host gave up waiting for this join attempt',
  [R_SECURITY]: 'the host refused a tampered or replayed message (is the server honest?)',
  [R_PROTOCOL]: 'the host received a message out of order (is the server honest?)',
  [R_GAVE_UP]: 'the joiner gave up',
  [R_NO_KEY]: 'the joiner has none of the SSH keys this session admits',
  [R_KEY_REFUSED]: 'the host refused your SSH key: this session admits only certain keys',
});

// Each payload's fields: name -> [type, required, max length of a str (0: no limit)].
const PAYLOADS = {
  pake: { role: ['str', false, 8], m: ['str', true, 200] },
  confirm: { mac: ['str', true, 100] },
  sealed: { n: ['int', true, 0], c: ['str', true, MAX_MESSAGE_BYTES] },
  reject: { reason: ['str', true, 200] },
  hold: { s: ['int', true, 0] },
};

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
// A JSON integer (python's is_int; JSON cannot tell 1 from 1.0 here, python can).
export const isInt = (v) => Number.isInteger(v);

/** wire/fields.check_fields: every field of `spec` typed and sized, nothing unknown. */
function checkFields(what, obj, spec, envelope) {
  for (const [name, [type, required, maxlen]] of Object.entries(spec)) {
    if (!Object.hasOwn(obj, name)) {
      if (required) throw protocolError(`${what}: missing field '${name}'`);
      continue;
    }
    const value = obj[name];
    if (type === 'str' ? typeof value !== 'string' : !isInt(value)) {
      throw protocolError(`${what}: field '${name}' must be ${type}`);
    }
    if (type === 'str' && maxlen && value.length > maxlen && codePoints(value) > maxlen) {
      throw protocolError(`${what}: field '${name}' too long`);
    }
  }
  const unknown = Object.keys(obj)
    .filter((k) => !Object.hasOwn(spec, k) && !envelope.includes(k))
    .sort();
  if (unknown.length) {
    const names = unknown.slice(0, 4).map(pyRepr).join(', ');
    throw protocolError(`${what}: unexpected fields [${names}]`);
  }
  return obj;
}

/** wire/keyplane.parse_payload: a signal message's `data`, checked. */
export function parsePayload(data) {
  if (!isObject(data)) throw protocolError('signal payload must be an object');
  const kind = data.k;
  if (typeof kind !== 'string' || !Object.hasOwn(PAYLOADS, kind)) {
    // str(kind) as python writes it
    const python = { undefined: 'None', null: 'None', true: 'True', false: 'False' };
    const shown = typeof kind === 'string' ? kind : (python[String(kind)] ?? String(kind));
    throw protocolError(`unknown signal payload ${pyRepr(shown.slice(0, 16))}`);
  }
  return checkFields(kind, data, PAYLOADS[kind], ['k']);
}

/** wire/keyplane.payload: build one, checked the same way. */
export function payload(kind, fields = {}) {
  const data = { k: kind, ...fields };
  parsePayload(data);
  return data;
}

const SEALED_TYPES = new Set(['offer', 'answer', 'candidate', 'wait', 'join', 'relay', 'prove', 'proof']);
const MAX_HINTS = 512;
const MAX_HINT = 32;
const MAX_PROOF_FIELD = 4096;
export const isResumeId = (v) => typeof v === 'string' && /^[0-9a-f]{32}$/.test(v);

// Bad UTF-8 and a BOM are JSON errors for python's json.loads(bytes) too.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** wire/fields.json_object: bytes or text that must hold one JSON object. */
export function jsonObject(raw, what) {
  let obj;
  try {
    obj = JSON.parse(typeof raw === 'string' ? raw : strictUtf8.decode(raw));
  } catch {
    throw protocolError(`${what} is not valid JSON`);
  }
  if (!isObject(obj)) throw protocolError(`${what} must be a JSON object`);
  return obj;
}

/** wire/keyplane.parse_sealed: an opened sealed message, checked. */
export function parseSealed(plain) {
  const msg = jsonObject(plain, 'sealed message');
  const kind = msg.t;
  if (typeof kind !== 'string' || !SEALED_TYPES.has(kind)) {
    throw protocolError('unknown sealed message');
  }
  if ((kind === 'offer' || kind === 'answer') && typeof msg.sdp !== 'string') {
    throw protocolError('sealed sdp missing');
  }
  if (kind === 'join' && !(msg.resume === undefined || msg.resume === null || isResumeId(msg.resume))) {
    throw protocolError('malformed resume id');
  }
  if (kind === 'prove') {
    const hints = msg.hints;
    if (!(Array.isArray(hints) && hints.length <= MAX_HINTS)) throw protocolError('malformed key hints');
    if (!hints.every((h) => typeof h === 'string' && codePoints(h) <= MAX_HINT)) {
      throw protocolError('malformed key hint');
    }
  }
  if (kind === 'proof') {
    for (const name of ['key', 'sig']) {
      const value = msg[name];
      if (!(typeof value === 'string' && value.length > 0 && codePoints(value) <= MAX_PROOF_FIELD)) {
        throw protocolError(`malformed key proof (${name})`);
      }
    }
  }
  if (kind === 'candidate') {
    const mid = msg.sdpMid;
    const index = msg.sdpMLineIndex;
    if (typeof msg.candidate !== 'string') throw protocolError('sealed candidate missing');
    const midOk = mid === undefined || mid === null || typeof mid === 'string';
    const indexOk = index === undefined || index === null || isInt(index);
    if (!midOk || !indexOk) throw protocolError('malformed sealed candidate');
  }
  return msg;
}

// -- the exchange (keys.KeyExchange, side "joiner") ------------------------------------------------

const PROTO = 'beach/1';
const U64_END = 1n << 64n;
const join = (...parts) => utf8(parts.join('|'));

function nonce(seq) {
  const out = new Uint8Array(12); // seq.to_bytes(12, "big")
  new DataView(out.buffer).setBigUint64(4, seq);
  return out;
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false; // hmac.compare_digest: lengths are public
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** One join attempt of the joiner: SPAKE2 (side A), key confirmation, sealed messages.
 * The identities bind protocol version, session, peer id and role, so a transcript from one
 * attempt is useless in any other and a view-only secret never yields a read-write key. */
export class KeyExchange {
  /**
   * @param {string} session  the token's session id
   * @param {string} peer  the peer id the server assigned to this attempt, or "" until it
   *   says (see introduced)
   * @param {'rw'|'view'} role
   * @param {string} secret  the token's secret
   * @param {{entropy?: (n: number) => Uint8Array}} options  tests only: a stand-in RNG
   */
  constructor(session, peer, role, secret, options = {}) {
    this.side = 'joiner';
    this.session = session;
    this.peer = peer;
    this.role = role;
    const idB = join(PROTO, 'host', session);
    this._spake = new Spake2A(utf8(`${role}:${secret}`), this._idA(), idB, options);
    this._outbound = null;
    this._transcript = new Uint8Array(0);
    this._sendKey = null;
    this._recvKey = null;
    this._myMacKey = new Uint8Array(0);
    this._theirMacKey = new Uint8Array(0);
    this._sendSeq = 0n;
    this._recvSeq = -1n;
    this.confirmed = false;
  }

  _idA() {
    return join(PROTO, 'joiner', this.session, this.peer, this.role);
  }

  /** The peer id, from the server, after our SPAKE2 message went out: that message does not
   * depend on the identities (they enter only the final key hash), so it can go with the join,
   * a round trip sooner, and the key is bound to the peer id all the same. */
  introduced(peer) {
    if (this.peer || !peer) throw protocolError('a peer id is learnt once');
    this.peer = peer;
    this._spake.idA = this._idA();
  }

  /** Our SPAKE2 message as a signal payload {k: 'pake', m, role}. start() and finish() cost
   * ~10 ms of CPU together, ~30 ms the first time in a page (see spake2-bench.mjs). */
  start() {
    this._outbound = this._spake.start();
    return payload('pake', { m: b64encode(this._outbound), role: this.role });
  }

  /** The host's SPAKE2 message in; derives the session keys. */
  finish(data) {
    const msg = parsePayload(data);
    if (msg.k !== 'pake' || this._outbound === null) {
      throw protocolError('expected a key exchange message');
    }
    if (!this.peer) throw protocolError('no peer id to bind the key to');
    const inbound = b64decode(msg.m);
    let shared;
    try {
      shared = this._spake.finish(inbound);
    } catch {
      throw securityError("the peer's key exchange message is invalid");
    }
    // The confirmation transcript hashes both 33-byte messages, side bytes included.
    this._transcript = sha256(concat(this._outbound, inbound));
    const info = join(PROTO, 'keys', this.session, this.peer);
    const okm = hkdf(sha256, shared, undefined, info, 128);
    const [h2j, j2h] = [okm.slice(0, 32), okm.slice(32, 64)];
    this._sendKey = j2h;
    this._recvKey = h2j;
    this._theirMacKey = okm.slice(64, 96);
    this._myMacKey = okm.slice(96, 128);
  }

  _mac(key, side) {
    return hmac(sha256, key, concat(utf8(`${side}|`), this._transcript));
  }

  /** Our key confirmation: {k: 'confirm', mac}. */
  confirmation() {
    return payload('confirm', { mac: b64encode(this._mac(this._myMacKey, this.side)) });
  }

  /** Check the host's confirmation; a mismatch means a different secret. */
  verify(data) {
    const msg = parsePayload(data);
    if (msg.k !== 'confirm') throw protocolError('expected a key confirmation');
    const expected = this._mac(this._theirMacKey, 'host');
    if (!equalBytes(expected, b64decode(msg.mac))) {
      throw wrongToken('the join token is wrong or no longer valid');
    }
    this.confirmed = true;
  }

  // -- sealing: one sequence for messages and relayed frames, each kind its own AAD ------------

  _aad(sender, kind) {
    return join(PROTO, this.session, this.peer, sender, kind);
  }

  _sealBytes(plain, kind) {
    if (!this.confirmed || this._sendKey === null) {
      throw securityError('nothing may be sealed before the key is confirmed');
    }
    const seq = this._sendSeq++;
    const aead = chacha20poly1305(this._sendKey, nonce(seq), this._aad(this.side, kind));
    return [seq, aead.encrypt(plain)];
  }

  _openBytes(seq, cipher, kind) {
    if (!this.confirmed || this._recvKey === null) {
      throw securityError('sealed message before key confirmation');
    }
    if (seq <= this._recvSeq || seq >= U64_END) {
      throw securityError('a sealed message was replayed');
    }
    let plain;
    try {
      plain = chacha20poly1305(this._recvKey, nonce(seq), this._aad('host', kind)).decrypt(cipher);
    } catch {
      throw securityError('a sealed message failed authentication (tampered in transit?)');
    }
    this._recvSeq = seq;
    return plain;
  }

  /** A message object (offer, candidate, join, relay...) as {k: 'sealed', n, c}. */
  seal(message) {
    const [seq, cipher] = this._sealBytes(utf8(pyJson(message, true)), 'msg');
    return payload('sealed', { n: Number(seq), c: b64encode(cipher) });
  }

  /** A sealed payload from the host, opened and checked as wire/keyplane.parse_sealed. */
  open(data) {
    const msg = parsePayload(data);
    if (msg.k !== 'sealed') throw protocolError('expected a sealed message');
    // n is a JSON integer; past 2^53 it is already rounded, and then fails as python's would.
    return parseSealed(this._openBytes(BigInt(msg.n), b64decode(msg.c), 'msg'));
  }

  // Frames relayed through the server travel in the same sequence as a compact string:
  // base64(u64 sequence || ciphertext).

  /** One frame (Uint8Array) sealed for the relay. */
  sealFrame(frame) {
    const [seq, cipher] = this._sealBytes(frame, 'frame');
    const out = new Uint8Array(8 + cipher.length);
    new DataView(out.buffer).setBigUint64(0, seq);
    out.set(cipher, 8);
    return b64encode(out);
  }

  /** A relayed frame from the host, opened: the frame's bytes. */
  openFrame(text) {
    const raw = b64decode(text);
    if (raw.length < 8 + 16) throw protocolError('relayed frame too short');
    const seq = new DataView(raw.buffer, raw.byteOffset).getBigUint64(0);
    return this._openBytes(seq, raw.subarray(8), 'frame');
  }
}
