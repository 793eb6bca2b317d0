// Shared by the *.test.mjs files; imports nothing from them. (`node --test web/test/` runs
// every script in this folder, so this one does nothing when run.)

import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { b64decode, b64encode, parseSealed, pyJson, utf8 } from '../src/keyplane.js';
import { Spake2B } from '../src/spake2.js';

export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
export const fromHex = (text) => Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));

/** python-spake2's test PRG (spake2/test/common.py): SHA256("prng-<counter>-<seed>") blocks. */
export function prg(seed) {
  let counter = 0;
  let block = new Uint8Array(0);
  let at = 0;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      if (at === block.length) {
        block = sha256(utf8(`prng-${counter++}-${seed}`));
        at = 0;
      }
      out[i] = block[at++];
    }
    return out;
  };
}

const cat = (a, b) => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
};
const nonce = (seq) => {
  const out = new Uint8Array(12);
  new DataView(out.buffer).setBigUint64(4, BigInt(seq));
  return out;
};

/** The host's half of keys.KeyExchange, written out again from keys.py, so the joiner's
 * KeyExchange can be tested in Node alone (the live test against Python is
 * tests/test_web_keyplane.py). It checks nothing of what it receives beyond what it needs. */
export class TestHost {
  constructor(session, peer, role, secret) {
    this.session = session;
    this.peer = peer;
    const idA = utf8(['beach/1', 'joiner', session, peer, role].join('|'));
    const idB = utf8(['beach/1', 'host', session].join('|'));
    this.spake = new Spake2B(utf8(`${role}:${secret}`), idA, idB);
    this.sendSeq = 0;
  }

  start() {
    this.outbound = this.spake.start();
    return { k: 'pake', m: b64encode(this.outbound) };
  }

  finish(data) {
    const inbound = b64decode(data.m);
    const shared = this.spake.finish(inbound);
    this.transcript = sha256(cat(inbound, this.outbound));
    const info = utf8(['beach/1', 'keys', this.session, this.peer].join('|'));
    const okm = hkdf(sha256, shared, undefined, info, 128);
    [this.h2j, this.j2h, this.macH, this.macJ] = [0, 32, 64, 96].map((i) => okm.slice(i, i + 32));
  }

  confirmation() {
    return { k: 'confirm', mac: b64encode(hmac(sha256, this.macH, cat(utf8('host|'), this.transcript))) };
  }

  expectedJoinerMac() {
    return b64encode(hmac(sha256, this.macJ, cat(utf8('joiner|'), this.transcript)));
  }

  aad(sender, kind) {
    return utf8(['beach/1', this.session, this.peer, sender, kind].join('|'));
  }

  /** Seal as the host would; `seq` overrides the sequence (for replay tests). */
  seal(message, seq = this.sendSeq++) {
    const plain = utf8(typeof message === 'string' ? message : pyJson(message, true));
    const c = chacha20poly1305(this.h2j, nonce(seq), this.aad('host', 'msg')).encrypt(plain);
    return { k: 'sealed', n: seq, c: b64encode(c) };
  }

  sealFrame(frame, seq = this.sendSeq++) {
    const c = chacha20poly1305(this.h2j, nonce(seq), this.aad('host', 'frame')).encrypt(frame);
    const out = new Uint8Array(8 + c.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(seq));
    out.set(c, 8);
    return b64encode(out);
  }

  open(data) {
    const aead = chacha20poly1305(this.j2h, nonce(data.n), this.aad('joiner', 'msg'));
    return parseSealed(aead.decrypt(b64decode(data.c)));
  }

  openFrame(text) {
    const raw = b64decode(text);
    const seq = new DataView(raw.buffer).getBigUint64(0);
    return chacha20poly1305(this.j2h, nonce(seq), this.aad('joiner', 'frame')).decrypt(raw.subarray(8));
  }
}
