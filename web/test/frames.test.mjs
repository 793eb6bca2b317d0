// Frames (wire/frames.py) and the deflate inflater (wire/compression.py, join/session.py).

import assert from 'node:assert/strict';
import test from 'node:test';
import zlib from 'node:zlib';
import {
  BadOutput,
  FRAME_INFLATE_MAX,
  Frame,
  Inflater,
  MAX_FRAME_BYTES,
  decodeAck,
  decodeExit,
  decodeFrame,
  decodeHello,
  decodeInput,
  decodeNotice,
  decodeResize,
  encodeAck,
  encodeExit,
  encodeFrame,
  encodeHello,
  encodeInput,
  encodeNotice,
  encodePing,
  encodePong,
  encodeResize,
  encodeSnapshotRequest,
} from '../src/frames.js';
import { BeachError, utf8 } from '../src/keyplane.js';

const protocol = (fn, pattern) =>
  assert.throws(fn, (err) => err instanceof BeachError && err.kind === 'protocol' && pattern.test(err.message));
const body = (frame, kind) => {
  const decoded = decodeFrame(frame);
  assert.equal(decoded.kind, kind);
  return decoded.body;
};

test('frame codes are those of wire/frames.py', () => {
  assert.deepEqual(
    { ...Frame },
    { HELLO: 1, OUTPUT: 2, INPUT: 3, RESIZE: 4, EXIT: 5, PING: 6, PONG: 7, NOTICE: 8, SNAPSHOT: 9, ACK: 10, ECHO: 11 },
  );
  assert.equal(MAX_FRAME_BYTES, 262_144);
});

test('decodeFrame takes binary messages only, of a known type', () => {
  assert.deepEqual(decodeFrame(Uint8Array.of(2, 65, 66).buffer), { kind: 2, body: Uint8Array.of(65, 66) });
  protocol(() => decodeFrame('\x02AB'), /non-empty binary/);
  protocol(() => decodeFrame(new Uint8Array(0)), /non-empty binary/);
  protocol(() => decodeFrame(Uint8Array.of(0)), /^unknown frame type 0$/);
  protocol(() => decodeFrame(Uint8Array.of(12, 1)), /unknown frame type 12/);
  assert.ok(encodeFrame(Frame.OUTPUT, new Uint8Array(MAX_FRAME_BYTES - 1)));
  protocol(() => encodeFrame(Frame.OUTPUT, new Uint8Array(MAX_FRAME_BYTES)), /frame too large/);
});

test('HELLO round trips, in the bytes python writes', () => {
  const frame = encodeHello({ version: 1, role: 'rw', cols: 80, rows: 24, features: ['deflate'] });
  assert.equal(
    new TextDecoder().decode(frame.subarray(1)),
    '{"v": 1, "role": "rw", "cols": 80, "rows": 24, "features": ["deflate"], "applied": 0, "resume": null}',
  );
  assert.deepEqual(decodeHello(body(frame, Frame.HELLO)), {
    version: 1, role: 'rw', cols: 80, rows: 24, features: ['deflate'], applied: 0, resume: null,
  });
  const resume = '0123456789abcdef'.repeat(2);
  const h = decodeHello(utf8(JSON.stringify({ v: 1, role: 'view'.repeat(9), cols: 1, rows: 10000, applied: 5, resume })));
  assert.equal(h.role, 'viewviewviewview'); // cut to 16, as python
  assert.deepEqual(h.features, []);
  assert.equal(h.applied, 5);
  assert.equal(h.resume, resume);
  const many = decodeHello(utf8(JSON.stringify({ v: 1, role: 'rw', cols: 1, rows: 1, features: [...'x'.repeat(20).split(''), 'y'.repeat(40)] })));
  assert.equal(many.features.length, 16);
});

test('hostile HELLO bodies are refused', () => {
  const good = { v: 1, role: 'rw', cols: 80, rows: 24, features: [] };
  const bad = [
    ['not json', /not valid JSON/],
    ['[1]', /must be a JSON object/],
    [{ ...good, v: '1' }, /malformed hello/],
    [{ ...good, v: 1.5 }, /malformed hello/],
    [{ ...good, role: 5 }, /malformed hello/],
    [{ ...good, features: 'deflate' }, /malformed hello/],
    [{ ...good, features: null }, /malformed hello/],
    [{ ...good, cols: 0 }, /window size out of range/],
    [{ ...good, rows: 10001 }, /window size out of range/],
    [{ ...good, cols: '80' }, /window size must be integers/],
    [{ ...good, rows: undefined }, /window size must be integers/],
    [{ ...good, applied: -1 }, /malformed hello/],
    [{ ...good, applied: null }, /malformed hello/],
    [{ ...good, applied: 2 ** 63 }, /malformed hello/],
    [{ ...good, resume: 'xyz' }, /malformed hello/],
    [{ ...good, resume: 'ABCDEF'.repeat(6).slice(0, 32) }, /malformed hello/],
  ];
  for (const [d, pattern] of bad) protocol(() => decodeHello(utf8(typeof d === 'string' ? d : JSON.stringify(d))), pattern);
  protocol(() => decodeHello(Uint8Array.of(0x7b, 0xc3, 0x28, 0x7d)), /not valid JSON/);
});

test('RESIZE, INPUT, ACK round trip; bad bodies are refused', () => {
  assert.deepEqual(decodeResize(body(encodeResize(132, 43), Frame.RESIZE)), [132, 43]);
  assert.deepEqual([...body(encodeResize(258, 1), Frame.RESIZE)], [1, 2, 0, 1]); // big-endian
  protocol(() => encodeResize(0, 24), /out of range/);
  protocol(() => decodeResize(Uint8Array.of(0, 80, 0)), /malformed resize/);
  protocol(() => decodeResize(Uint8Array.of(0, 0, 0, 24)), /out of range/);

  const keys = utf8('ls\r');
  const input = decodeInput(body(encodeInput(7, keys), Frame.INPUT));
  assert.equal(input.offset, 7);
  assert.deepEqual(input.data, keys);
  assert.deepEqual([...body(encodeInput(258n, new Uint8Array(0)), Frame.INPUT)], [0, 0, 0, 0, 0, 0, 1, 2]);
  const far = decodeInput(body(encodeInput(2n ** 64n - 1n, keys), Frame.INPUT));
  assert.equal(far.offset, 2n ** 64n - 1n); // past 2^53: a BigInt
  protocol(() => decodeInput(new Uint8Array(7)), /malformed input frame/);
  assert.throws(() => encodeInput(-1, keys), RangeError);
  assert.throws(() => encodeInput(2n ** 64n, keys), RangeError);
  assert.throws(() => encodeInput(1.5, keys), RangeError);

  assert.equal(decodeAck(body(encodeAck(Number.MAX_SAFE_INTEGER), Frame.ACK)), Number.MAX_SAFE_INTEGER);
  protocol(() => decodeAck(new Uint8Array(9)), /malformed ack frame/);
});

test('EXIT, NOTICE, SNAPSHOT request, PING/PONG', () => {
  const exit = encodeExit(130, 2);
  assert.equal(new TextDecoder().decode(exit.subarray(1)), '{"code": 130, "signal": 2}');
  assert.deepEqual(decodeExit(body(exit, Frame.EXIT)), { code: 130, signal: 2 });
  assert.deepEqual(decodeExit(utf8('{"code": 0}')), { code: 0, signal: null });
  protocol(() => decodeExit(utf8('{"code": "0"}')), /malformed exit frame/);
  protocol(() => decodeExit(utf8('{"code": 0, "signal": "HUP"}')), /malformed exit frame/);
  protocol(() => decodeExit(utf8('{"code": 0')), /exit frame is not valid JSON/);

  assert.equal(decodeNotice(body(encodeNotice('host: é'), Frame.NOTICE)), 'host: é');
  assert.equal(decodeNotice(Uint8Array.of(0x61, 0xff, 0x62)), 'a\ufffdb');
  assert.deepEqual([...encodeSnapshotRequest()], [Frame.SNAPSHOT]);
  const ping = encodePing();
  assert.equal(ping.length, 9);
  assert.deepEqual(body(encodePong(body(ping, Frame.PING)), Frame.PONG), ping.subarray(1));
});

// -- inflating ---------------------------------------------------------------------------------

// A unit as compression.standalone makes it: raw deflate, level 1, ended by a full flush.
const unit = (data) => zlib.deflateRawSync(data, { level: 1, finishFlush: zlib.constants.Z_FULL_FLUSH });
const joined = (pieces) => Buffer.concat(pieces.map((p) => Buffer.from(p)));

function screenful(n, seed) {
  const parts = [];
  for (let i = 0; i < n; i++) parts.push(`\x1b[${(i * seed) % 40};1H\x1b[3${i % 8}mline ${i * seed} ${'é─'.repeat(i % 7)}\r\n`);
  return utf8(parts.join(''));
}

test('units inflate completely at their end, however the frames cut them', () => {
  const inputs = [screenful(50, 3), screenful(2000, 7), utf8('x'), new Uint8Array(0), screenful(5, 11)];
  const units = inputs.map(unit);
  const stream = Buffer.concat(units);
  for (const cut of [1, 7, 100, 4096, 8191, 8193, 65536, stream.length]) {
    const z = new Inflater();
    const got = [];
    for (let at = 0; at < stream.length; at += cut) got.push(...z.push(stream.subarray(at, at + cut)));
    assert.deepEqual(joined(got), Buffer.concat(inputs.map(Buffer.from)), `cut ${cut}`);
  }
  // one frame per unit: each frame's output is exactly its unit's input (nothing held back)
  const z = new Inflater();
  units.forEach((u, i) => assert.deepEqual(joined(z.push(u)), Buffer.from(inputs[i])));
});

test('a corrupt stream throws BadOutput, and the inflater stays broken', () => {
  const z = new Inflater();
  assert.throws(() => z.push(Uint8Array.of(0xff, 0xff, 0xff, 0xff)), (e) => e instanceof BadOutput && /bad deflate stream/.test(e.message));
  assert.throws(() => z.push(unit(utf8('fine'))), BadOutput);
  // a fresh one (as a SNAPSHOT starts) works again
  assert.deepEqual(joined(new Inflater().push(unit(utf8('fine')))), Buffer.from('fine'));
  // block type 3 does not exist
  assert.throws(() => new Inflater().push(Uint8Array.of(0x06, 0, 0)), /invalid block type/);
  // an empty frame body is no output, and no error
  assert.deepEqual(new Inflater().push(new Uint8Array(0)), []);
});

test('a final block (the stream ended) is refused, not silently dropped', () => {
  const ended = zlib.deflateRawSync(utf8('bye'), { level: 1 }); // Z_FINISH: BFINAL set
  const z = new Inflater();
  assert.throws(() => z.push(ended), (e) => e instanceof BadOutput && /the deflate stream ended/.test(e.message));
  assert.throws(() => z.push(unit(utf8('more'))), /ended/);
});

test('a frame that inflates past FRAME_INFLATE_MAX is refused (deflate bomb)', () => {
  assert.equal(FRAME_INFLATE_MAX, 8 * 1024 * 1024);
  const bomb = unit(new Uint8Array(FRAME_INFLATE_MAX + 1));
  assert.ok(bomb.length < MAX_FRAME_BYTES);
  assert.throws(() => new Inflater().push(bomb), (e) => e instanceof BadOutput && /inflates past 8388608 bytes/.test(e.message));
  // exactly the limit is still output
  const z = new Inflater();
  assert.equal(joined(z.push(unit(new Uint8Array(FRAME_INFLATE_MAX)))).length, FRAME_INFLATE_MAX);
  // the limit is per frame: more over several frames is fine
  const six = unit(new Uint8Array(6 * 1024 * 1024));
  assert.equal(joined([...z.push(six), ...z.push(six)]).length, 12 * 1024 * 1024);
});
