// The joiner's key plane in Node alone: tokens, base64, payload checks, and a full exchange
// with a host half written out from keys.py (helpers.mjs). The same code against Python's
// own KeyExchange is tests/test_web_keyplane.py.

import assert from 'node:assert/strict';
import test from 'node:test';
import {
  BeachError,
  HOLD_MAX,
  KeyExchange,
  REJECT_REASONS,
  b64decode,
  b64encode,
  formatToken,
  parsePayload,
  parseSealed,
  parseToken,
  payload,
  pyJson,
  utf8,
} from '../src/keyplane.js';
import { TestHost } from './helpers.mjs';

const fails = (fn, kind, pattern) =>
  assert.throws(fn, (err) => {
    assert.ok(err instanceof BeachError, `not a BeachError: ${err}`);
    assert.equal(err.kind, kind, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });

// -- base64 ----------------------------------------------------------------------------------

// What python 3.11's base64.b64decode(text, validate=True) says for each (null: an error).
const B64 = {
  '': '',
  '=': null,
  '==': null,
  QQ: null,
  'QQ=': null,
  'QQ==': 'A',
  'QR==': 'A',
  'QUI=': 'AB',
  'QUJ=': 'AB',
  QUJD: 'ABC',
  A: null,
  ABCDE: null,
  ABCDEF: null,
  'QQ==QQ==': null,
  'QUJD\n': null,
  ' QUJD': null,
  'QUJD=': 'ABC',
  'QUJD==': 'ABC',
  'QUJD===': 'ABC',
  'Q===': null,
  'QQ=a': null,
  '-_8=': null,
  QUJDRA: null,
  'QUJDRA==': 'ABCD',
  'QUJDRA=': null,
  'QUJD=QUJD': null,
  'Q=Q=': null,
  'QQ===': null,
  'QUI==': null,
  '=QUJD': null,
  'QUJDQUJDQUJD=': 'ABCABCABC',
  'QUJ\u00c4': null,
};

test('base64 decodes exactly what python accepts', () => {
  for (const [text, want] of Object.entries(B64)) {
    if (want === null) fails(() => b64decode(text), 'protocol', /bad base64/);
    else assert.deepEqual(b64decode(text), utf8(want), JSON.stringify(text));
  }
});

test('base64 round trips every length and byte', () => {
  for (let n = 0; n < 70; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 97 + n) & 0xff);
    const text = b64encode(bytes);
    assert.equal(text, Buffer.from(bytes).toString('base64'));
    assert.deepEqual(b64decode(text), bytes);
  }
});

// -- tokens ------------------------------------------------------------------------------------

test('tokens parse as keys.parse_token does', () => {
  assert.deepEqual(parseToken('abc234-xyz789'), { session: 'abc234', role: 'rw', secret: 'xyz789' });
  assert.deepEqual(parseToken('  ABC234-V-XYZ789\n'), { session: 'abc234', role: 'view', secret: 'xyz789' });
  assert.equal(formatToken(parseToken('abc234-v-xyz789')), 'abc234-v-xyz789');
  for (const bad of ['', 'abc', 'a-b-c', 'abc-x-def', '-abc', 'abc-', 'ab c-def', 'abc-dé', 'a'.repeat(33) + '-b', 'abc-v-']) {
    fails(() => parseToken(bad), 'wrong-token', /is not a join token \(expected e\.g\. abc123-xyz789\)/);
  }
  fails(() => parseToken(" it's-x "), 'wrong-token', /^"it's-x" is not a join token/);
});

// -- payloads ----------------------------------------------------------------------------------

test('payloads are checked field by field', () => {
  const ok = [
    { k: 'pake', m: 'QQ==' },
    { k: 'pake', m: 'QQ==', role: 'view' },
    { k: 'confirm', mac: 'x' },
    { k: 'sealed', n: 0, c: '' },
    { k: 'reject', reason: 'denied' },
    { k: 'hold', s: 30 },
  ];
  for (const data of ok) assert.equal(parsePayload(data), data);
  const bad = [
    [null, /must be an object/],
    [[], /must be an object/],
    ['pake', /must be an object/],
    [{}, /unknown signal payload 'None'/],
    [{ k: 'nope' }, /unknown signal payload 'nope'/],
    [{ k: 'pake' }, /pake: missing field 'm'/],
    [{ k: 'pake', m: 5 }, /pake: field 'm' must be str/],
    [{ k: 'pake', m: 'x'.repeat(201) }, /pake: field 'm' too long/],
    [{ k: 'pake', m: 'x', role: 'r'.repeat(9) }, /field 'role' too long/],
    [{ k: 'pake', m: 'x', extra: 1, also: 2 }, /pake: unexpected fields \['also', 'extra'\]/],
    [{ k: 'sealed', n: 1.5, c: '' }, /field 'n' must be int/],
    [{ k: 'sealed', n: true, c: '' }, /field 'n' must be int/],
    [{ k: 'sealed', n: '1', c: '' }, /field 'n' must be int/],
    [{ k: 'hold', s: null }, /field 's' must be int/],
  ];
  for (const [data, pattern] of bad) fails(() => parsePayload(data), 'protocol', pattern);
  // 200 code points fit even where JavaScript counts 400 UTF-16 units
  assert.ok(parsePayload({ k: 'pake', m: '\u{1F600}'.repeat(200) }));
  fails(() => payload('confirm', {}), 'protocol', /missing field 'mac'/);
});

test('reject reasons and the hold limit are those of wire/keyplane.py', () => {
  assert.equal(REJECT_REASONS['wrong token'], 'the join token is wrong or no longer valid');
  assert.equal(REJECT_REASONS['no key'], 'the joiner has none of the SSH keys this session admits');
  assert.equal(Object.keys(REJECT_REASONS).length, 9);
  assert.equal(HOLD_MAX, 180);
});

test('sealed messages are checked as parse_sealed', () => {
  const ok = [
    { t: 'offer', sdp: 'v=0' },
    { t: 'answer', sdp: '' },
    { t: 'candidate', candidate: 'c', sdpMid: '0', sdpMLineIndex: 0 },
    { t: 'candidate', candidate: 'c', sdpMid: null, sdpMLineIndex: null },
    { t: 'candidate', candidate: 'c' },
    { t: 'wait' },
    { t: 'join', resume: null },
    { t: 'join', resume: 'a'.repeat(32) },
    { t: 'join' },
    { t: 'relay' },
    { t: 'prove', hints: [] },
    { t: 'prove', hints: ['A'.repeat(32)] },
    { t: 'proof', key: 'k', sig: 's' },
  ];
  for (const msg of ok) assert.deepEqual(parseSealed(utf8(JSON.stringify(msg))), msg);
  const bad = [
    ['{', /not valid JSON/],
    ['[]', /must be a JSON object/],
    ['\ufeff{"t":"wait"}', /not valid JSON/],
    ['{"t":"nope"}', /unknown sealed message/],
    ['{"t":5}', /unknown sealed message/],
    ['{"t":"offer"}', /sealed sdp missing/],
    ['{"t":"join","resume":"A"}', /malformed resume id/],
    ['{"t":"join","resume":"' + 'A'.repeat(32) + '"}', /malformed resume id/],
    ['{"t":"candidate"}', /sealed candidate missing/],
    ['{"t":"candidate","candidate":"c","sdpMid":1}', /malformed sealed candidate/],
    ['{"t":"candidate","candidate":"c","sdpMLineIndex":"0"}', /malformed sealed candidate/],
    ['{"t":"candidate","candidate":"c","sdpMLineIndex":true}', /malformed sealed candidate/],
    ['{"t":"prove"}', /malformed key hints/],
    ['{"t":"prove","hints":{}}', /malformed key hints/],
    ['{"t":"prove","hints":' + JSON.stringify(Array(513).fill('h')) + '}', /malformed key hints/],
    ['{"t":"prove","hints":[1]}', /malformed key hint/],
    ['{"t":"prove","hints":["' + 'A'.repeat(33) + '"]}', /malformed key hint/],
    ['{"t":"proof","key":"k"}', /malformed key proof \(sig\)/],
    ['{"t":"proof","key":"","sig":"s"}', /malformed key proof \(key\)/],
    ['{"t":"proof","key":"k","sig":"' + 's'.repeat(4097) + '"}', /malformed key proof \(sig\)/],
  ];
  for (const [text, pattern] of bad) fails(() => parseSealed(utf8(text)), 'protocol', pattern);
  fails(() => parseSealed(Uint8Array.from([0x7b, 0xff, 0x7d])), 'protocol', /not valid JSON/);
});

test('JSON is written as python json.dumps writes it', () => {
  const value = { t: 'offer', sdp: 'a"b\\c\n\t\u0001\u007f\u00e9\u{1F600}', n: [1, null, true, false], o: {} };
  assert.equal(
    pyJson(value, true),
    '{"t":"offer","sdp":"a\\"b\\\\c\\n\\t\\u0001\\u007f\\u00e9\\ud83d\\ude00","n":[1,null,true,false],"o":{}}',
  );
  assert.equal(pyJson({ code: 0, signal: null }), '{"code": 0, "signal": null}');
});

// -- the exchange ---------------------------------------------------------------------------------

const SESSION = 'abc234';
const PEER = 'p1';

/** A joiner and a test host through SPAKE2 and both confirmations. */
function pair({ role = 'rw', secret = 'xyz789', hostRole = role, hostSecret = secret } = {}) {
  const joiner = new KeyExchange(SESSION, PEER, role, secret);
  const host = new TestHost(SESSION, PEER, hostRole, hostSecret);
  const pake = joiner.start();
  assert.deepEqual(Object.keys(pake), ['k', 'm', 'role']);
  assert.equal(pake.role, role);
  const hostPake = host.start();
  host.finish(pake);
  joiner.finish(hostPake);
  return { joiner, host };
}

function confirmed(opts) {
  const { joiner, host } = pair(opts);
  joiner.verify(host.confirmation());
  assert.equal(joiner.confirmation().mac, host.expectedJoinerMac());
  return { joiner, host };
}

test('a full exchange: confirmations, sealed messages and frames both ways', () => {
  const { joiner, host } = confirmed();
  assert.ok(joiner.confirmed);
  const join = { t: 'join', resume: null };
  assert.deepEqual(host.open(joiner.seal(join)), join);
  const offer = { t: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' };
  assert.deepEqual(joiner.open(host.seal(offer)), offer);
  const frame = Uint8Array.from({ length: 45_000 }, (_, i) => i & 0xff);
  assert.deepEqual(host.openFrame(joiner.sealFrame(frame)), frame);
  assert.deepEqual(joiner.openFrame(host.sealFrame(frame)), frame);
  // messages and frames share one sequence on each side
  const sealed = joiner.seal({ t: 'relay' });
  assert.equal(sealed.n, 2);
  assert.deepEqual(joiner.open(host.seal({ t: 'wait' })), { t: 'wait' });
});

test('a wrong secret, or the view secret claimed as read-write, fails verify', () => {
  for (const opts of [{ hostSecret: 'xyz788' }, { role: 'rw', hostRole: 'view' }]) {
    const { joiner, host } = pair(opts);
    fails(() => joiner.verify(host.confirmation()), 'wrong-token', /^the join token is wrong or no longer valid$/);
    assert.notEqual(joiner.confirmation().mac, host.expectedJoinerMac());
    assert.ok(!joiner.confirmed);
    fails(() => joiner.seal({ t: 'wait' }), 'security', /before the key is confirmed/);
  }
});

test('nothing is sealed or opened before confirmation', () => {
  const { joiner, host } = pair();
  fails(() => joiner.seal({ t: 'relay' }), 'security', /^nothing may be sealed before the key is confirmed$/);
  fails(() => joiner.sealFrame(new Uint8Array(3)), 'security', /before the key is confirmed/);
  fails(() => joiner.open(host.seal({ t: 'wait' })), 'security', /^sealed message before key confirmation$/);
});

test('tampered, replayed and reordered sealed messages are refused', () => {
  const { joiner, host } = confirmed();
  const first = host.seal({ t: 'wait' });
  const second = host.seal({ t: 'relay' });
  const third = host.seal({ t: 'wait' });
  // a flipped ciphertext bit
  const raw = b64decode(first.c);
  raw[3] ^= 1;
  fails(() => joiner.open({ ...first, c: b64encode(raw) }), 'security', /failed authentication \(tampered in transit\?\)/);
  // the right ciphertext under another sequence number
  fails(() => joiner.open({ ...first, n: 7 }), 'security', /failed authentication/);
  // a failed open moves nothing: the genuine one still opens
  assert.deepEqual(joiner.open(second), { t: 'relay' });
  fails(() => joiner.open(second), 'security', /^a sealed message was replayed$/);
  fails(() => joiner.open(first), 'security', /replayed/); // older than one already opened
  assert.deepEqual(joiner.open(third), { t: 'wait' });
  fails(() => joiner.open({ k: 'sealed', n: 2 ** 64, c: third.c }), 'security', /replayed/);
  // our own message reflected back: sealed with the other direction's key and AAD
  const fresh = confirmed().joiner;
  fails(() => fresh.open(fresh.seal({ t: 'wait' })), 'security', /failed authentication/);
  // a frame is not a message: the AAD names the kind
  const frameText = host.sealFrame(utf8('{"t":"wait"}'), 10);
  const frameRaw = b64decode(frameText);
  fails(() => joiner.open({ k: 'sealed', n: 10, c: b64encode(frameRaw.subarray(8)) }), 'security', /failed authentication/);
  assert.deepEqual(joiner.openFrame(frameText), utf8('{"t":"wait"}'));
  fails(() => joiner.openFrame(frameText), 'security', /replayed/);
});

test('relayed frames: tampering, replay and short texts are refused', () => {
  const { joiner, host } = confirmed();
  const a = host.sealFrame(Uint8Array.of(2, 65));
  const b = host.sealFrame(Uint8Array.of(2, 66));
  const raw = b64decode(b);
  raw[raw.length - 1] ^= 0x80;
  fails(() => joiner.openFrame(b64encode(raw)), 'security', /failed authentication/);
  assert.deepEqual(joiner.openFrame(b), Uint8Array.of(2, 66));
  fails(() => joiner.openFrame(a), 'security', /replayed/);
  fails(() => joiner.openFrame(b64encode(new Uint8Array(23))), 'protocol', /^relayed frame too short$/);
  fails(() => joiner.openFrame('not base64!'), 'protocol', /bad base64/);
});

test('out-of-order and malformed key-plane payloads are protocol errors', () => {
  const joiner = new KeyExchange(SESSION, PEER, 'rw', 'xyz789');
  fails(() => joiner.finish({ k: 'pake', m: 'QQ==' }), 'protocol', /^expected a key exchange message$/);
  joiner.start();
  fails(() => joiner.finish({ k: 'confirm', mac: 'x' }), 'protocol', /expected a key exchange message/);
  fails(() => joiner.finish({ k: 'pake', m: '!!' }), 'protocol', /bad base64/);
  fails(() => joiner.finish({ k: 'pake', m: 'QUJD' }), 'security', /^the peer's key exchange message is invalid$/);
  const { joiner: j2, host } = pair();
  fails(() => j2.verify({ k: 'pake', m: 'x' }), 'protocol', /^expected a key confirmation$/);
  fails(() => j2.verify({ k: 'confirm', mac: '*' }), 'protocol', /bad base64/);
  j2.verify(host.confirmation());
  fails(() => j2.open({ k: 'confirm', mac: 'x' }), 'protocol', /^expected a sealed message$/);
  fails(() => j2.open(host.seal('{"t":"offer"}')), 'protocol', /sealed sdp missing/);
});

test("the host's SPAKE2 message is checked (reflection, wrong side)", () => {
  const joiner = new KeyExchange(SESSION, PEER, 'rw', 'xyz789');
  const mine = joiner.start();
  fails(() => joiner.finish(mine), 'security', /key exchange message is invalid/);
  const j2 = new KeyExchange(SESSION, PEER, 'rw', 'xyz789');
  const own = b64decode(j2.start().m);
  own[0] = 0x42; // our point, labelled as B's
  fails(() => j2.finish({ k: 'pake', m: b64encode(own) }), 'security', /invalid/);
});
