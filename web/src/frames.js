// Data-channel frames between host and joiner, as beach_cli/wire/frames.py: one type byte,
// then the body. They travel over the WebRTC data channel, or sealed through the server relay
// (KeyExchange.sealFrame). Also the inflater for the "deflate" feature (wire/compression.py).

import { Inflate } from 'fflate';
import { isInt, isResumeId, jsonObject, protocolError, pyJson, utf8 } from './keyplane.js';

export const FRAME_VERSION = 1;
// aiortc refuses data-channel messages above 262,144 bytes.
export const MAX_FRAME_BYTES = 262_144;
export const MAX_CHUNK_BYTES = 64 * 1024;
export const PING_BYTES = 8; // link/base.py: the host answers only pings of this size

export const Frame = Object.freeze({
  HELLO: 1, // JSON {v, role, cols, rows, features, applied?, resume?}, both ways
  OUTPUT: 2, // terminal bytes, host -> joiner (deflate units if negotiated)
  INPUT: 3, // u64 offset of the first byte in the joiner's input stream, then keystrokes
  RESIZE: 4, // u16 cols, u16 rows: the joiner's window (-> host) or the PTY size (-> joiner)
  EXIT: 5, // JSON {code, signal}
  PING: 6, // 8 opaque bytes, echoed in PONG
  PONG: 7,
  NOTICE: 8, // UTF-8 text shown outside the shared screen
  SNAPSHOT: 9, // like OUTPUT, but starts a fresh screen; empty from the joiner: "send one"
  ACK: 10, // u64: the joiner's input up to this offset has reached the PTY
  // Predictive echo ("echo" feature). Host -> joiner: u64 input offset, u8 flags (ECHO_*): the
  // input before the offset was answered, and the output made of it came before this frame.
  // Joiner -> host: one byte, 1 to be sent ECHOs from now on (it shows guesses), 0 to stop.
  ECHO: 11,
});
export const ECHO_FEATURE = 'echo';
export const ECHO_SECRET = 1; // the PTY reads a password (canonical mode, echo off)
export const ECHO_OTHERS = 2; // someone else's keystrokes reached the PTY since the last ECHO
const KINDS = new Set(Object.values(Frame));

export function encodeFrame(kind, body = new Uint8Array(0)) {
  if (body.length + 1 > MAX_FRAME_BYTES) throw protocolError('frame too large');
  const frame = new Uint8Array(body.length + 1);
  frame[0] = kind;
  frame.set(body, 1);
  return frame;
}

/** A received message (Uint8Array or the data channel's ArrayBuffer) as {kind, body}; body
 * is a view into `data`, not a copy. */
export function decodeFrame(data) {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data;
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
    throw protocolError('frames are non-empty binary messages');
  }
  if (!KINDS.has(bytes[0])) throw protocolError(`unknown frame type ${bytes[0]}`);
  return { kind: bytes[0], body: bytes.subarray(1) };
}

// -- HELLO -----------------------------------------------------------------------------------

/** {version, role, cols, rows, features, applied = 0, resume = null} -> HELLO frame, in the
 * bytes python's json.dumps writes. */
export function encodeHello({ version, role, cols, rows, features, applied = 0, resume = null }) {
  const body = { v: version, role, cols, rows, features: [...features], applied, resume };
  return encodeFrame(Frame.HELLO, utf8(pyJson(body)));
}

// Python slices strings by code point.
const head = (text, n) => Array.from(text).slice(0, n).join('');

export function decodeHello(body) {
  const d = jsonObject(body, 'hello');
  const { v, role } = d;
  // A field that is present must be valid: null is not "absent" (python's d.get(k, default)).
  const feats = Object.hasOwn(d, 'features') ? d.features : [];
  if (!isInt(v) || typeof role !== 'string' || !Array.isArray(feats)) {
    throw protocolError('malformed hello');
  }
  const [cols, rows] = size(d.cols, d.rows);
  const applied = Object.hasOwn(d, 'applied') ? d.applied : 0;
  const resume = d.resume ?? null;
  // python allows up to 2^63; past 2^53 a JavaScript number cannot hold the offset exactly.
  if (!isInt(applied) || applied < 0 || applied > Number.MAX_SAFE_INTEGER) {
    throw protocolError('malformed hello');
  }
  if (!(resume === null || isResumeId(resume))) throw protocolError('malformed hello');
  // Non-string features are kept as text (they never name a feature), as python's str(f).
  const features = feats.slice(0, 16).map((f) => head(typeof f === 'string' ? f : String(f), 32));
  return { version: v, role: head(role, 16), cols, rows, features, applied, resume };
}

function size(cols, rows) {
  if (!isInt(cols) || !isInt(rows)) throw protocolError('window size must be integers');
  if (!(cols >= 1 && cols <= 10_000 && rows >= 1 && rows <= 10_000)) {
    throw protocolError('window size out of range');
  }
  return [cols, rows];
}

// -- fixed-size bodies --------------------------------------------------------------------------

export function encodeResize(cols, rows) {
  [cols, rows] = size(cols, rows);
  const body = new Uint8Array(4);
  const view = new DataView(body.buffer);
  view.setUint16(0, cols);
  view.setUint16(2, rows);
  return encodeFrame(Frame.RESIZE, body);
}

/** RESIZE body -> [cols, rows]. */
export function decodeResize(body) {
  if (body.length !== 4) throw protocolError('malformed resize');
  const view = new DataView(body.buffer, body.byteOffset, 4);
  return size(view.getUint16(0), view.getUint16(2));
}

function u64(offset) {
  const big = BigInt(offset); // a non-integer number throws RangeError here
  if (big < 0n || big >= 1n << 64n) throw new RangeError(`offset ${offset} is not a u64`);
  return big;
}

// A u64 read back: a number while that is exact, else a BigInt.
function readU64(body) {
  const big = new DataView(body.buffer, body.byteOffset, 8).getBigUint64(0);
  return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

/** INPUT: `offset` (number or BigInt) of the first byte of `data` in the joiner's input. */
export function encodeInput(offset, data) {
  const body = new Uint8Array(8 + data.length);
  new DataView(body.buffer).setBigUint64(0, u64(offset));
  body.set(data, 8);
  return encodeFrame(Frame.INPUT, body);
}

/** INPUT body -> {offset, data}. */
export function decodeInput(body) {
  if (body.length < 8) throw protocolError('malformed input frame');
  return { offset: readU64(body), data: body.subarray(8) };
}

export function encodeAck(offset) {
  const body = new Uint8Array(8);
  new DataView(body.buffer).setBigUint64(0, u64(offset));
  return encodeFrame(Frame.ACK, body);
}

/** ACK body -> the offset (number, or BigInt past 2^53). */
export function decodeAck(body) {
  if (body.length !== 8) throw protocolError('malformed ack frame');
  return readU64(body);
}

/** The joiner's "send me ECHOs" (true) or "stop" (false). */
export const encodeEchoWanted = (on) => encodeFrame(Frame.ECHO, Uint8Array.of(on ? 1 : 0));

/** ECHO body -> {offset, flags}: offset a number, or a BigInt past 2^53 (more than was ever
 * typed); unknown flags are kept (a later host may say more), as python's decode_echo. */
export function decodeEcho(body) {
  if (body.length !== 9) throw protocolError('malformed echo frame');
  const big = new DataView(body.buffer, body.byteOffset, 8).getBigUint64(0);
  if (big >= 1n << 63n) throw protocolError('malformed echo frame');
  return { offset: big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big, flags: body[8] };
}

// -- EXIT, NOTICE, SNAPSHOT request, PING ------------------------------------------------------

export function encodeExit(code, signal = null) {
  return encodeFrame(Frame.EXIT, utf8(pyJson({ code, signal })));
}

/** EXIT body -> {code, signal}: code is shell-style (128 + signal when killed). */
export function decodeExit(body) {
  const d = jsonObject(body, 'exit frame');
  const code = d.code;
  const signal = d.signal ?? null;
  if (!isInt(code) || !(signal === null || isInt(signal))) {
    throw protocolError('malformed exit frame');
  }
  return { code, signal };
}

export const encodeNotice = (text) => encodeFrame(Frame.NOTICE, utf8(text));
// Bad UTF-8 becomes U+FFFD, as python's decode(errors="replace").
const lenientUtf8 = new TextDecoder('utf-8');
export const decodeNotice = (body) => lenientUtf8.decode(body);

/** The joiner's "send me a fresh screen": an empty SNAPSHOT. */
export const encodeSnapshotRequest = () => encodeFrame(Frame.SNAPSHOT);

/** A liveness probe of PING_BYTES opaque bytes (random unless given). */
export function encodePing(body = globalThis.crypto.getRandomValues(new Uint8Array(PING_BYTES))) {
  return encodeFrame(Frame.PING, body);
}
/** The answer to a PING: its body echoed. */
export const encodePong = (pingBody) => encodeFrame(Frame.PONG, pingBody);

// -- deflate (wire/compression.py) ---------------------------------------------------------------

export const DEFLATE_FEATURE = 'deflate';
// join/session.py: no frame may inflate past this (a bomb, not output).
export const FRAME_INFLATE_MAX = 8 * 1024 * 1024;
// Input is fed this much at a time, so a bomb is caught within ~1032x of it (deflate's
// largest ratio) past the limit instead of after inflating a whole frame.
const SLICE = 8 * 1024;

/** Output that cannot be shown (corrupt stream, bomb): answer with a SNAPSHOT request. */
export class BadOutput extends Error {
  constructor(message) {
    super(message);
    this.name = 'BadOutput';
  }
}

/** One long-lived raw inflater for OUTPUT bodies: the host's units are raw deflate ended by a
 * full flush, so a unit decodes completely once its last byte is in (nothing is held back),
 * whatever pieces the frames cut it into. A SNAPSHOT starts a new Inflater. */
export class Inflater {
  constructor() {
    this._pieces = [];
    this._z = new Inflate((chunk) => {
      if (chunk.length) this._pieces.push(chunk);
    });
    this._broken = null;
  }

  /** One frame's body in; its output out, as pieces in order. Throws BadOutput (and stays
   * broken until replaced) on a corrupt stream, a final block, or more than
   * FRAME_INFLATE_MAX bytes from this one frame. */
  push(body) {
    if (this._broken) throw new BadOutput(this._broken);
    const out = [];
    let total = 0;
    for (let at = 0; at < body.length; at += SLICE) {
      this._pieces = [];
      try {
        this._z.push(body.subarray(at, at + SLICE));
      } catch (err) {
        this._fail(`bad deflate stream: ${err.message}`);
      }
      for (const piece of this._pieces) {
        total += piece.length;
        out.push(piece);
      }
      if (total > FRAME_INFLATE_MAX) this._fail(`a frame inflates past ${FRAME_INFLATE_MAX} bytes`);
      // fflate 0.8 (locked) silently drops everything after a final block; python's inflater
      // says eof. beach never ends the stream, so a final block is a broken one.
      const state = this._z.s;
      if (state.f && !state.l) this._fail('the deflate stream ended');
    }
    return out;
  }

  _fail(message) {
    this._broken = message;
    this._pieces = [];
    throw new BadOutput(message);
  }
}
