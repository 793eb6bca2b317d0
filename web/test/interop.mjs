// The joiner's key plane and frame codec driven over stdin/stdout, one JSON request per line
// and one JSON answer per line, so tests/test_web_keyplane.py can run them live against
// Python's KeyExchange('host', ...) and the host's deflate Encoder. Bytes travel as base64.
//
//   request:  {"op": "...", ...arguments}
//   answer:   {"ok": result} or {"error": {"kind": "wrong-token"|"security"|"protocol"|..., "message"}}
//
// Started with --serve; without it (as `node --test web/test/` runs every script here) it
// does nothing.

import { createInterface } from 'node:readline';
import { BadOutput, Inflater, decodeHello, encodeHello } from '../src/frames.js';
import {
  BeachError,
  HOLD_MAX,
  KeyExchange,
  REJECT_REASONS,
  b64decode,
  b64encode,
  parsePayload,
  parseToken,
  pyJson,
} from '../src/keyplane.js';

let kx = null;
let inflater = null;
const bytes = (text) => b64decode(text);

const OPS = {
  new: ({ session, peer, role, secret }) => {
    kx = new KeyExchange(session, peer, role, secret);
    return null;
  },
  start: () => kx.start(),
  introduced: ({ peer }) => {
    kx.introduced(peer);
    return null;
  },
  finish: ({ data }) => kx.finish(data) ?? null,
  confirmation: () => kx.confirmation(),
  verify: ({ data }) => {
    kx.verify(data);
    return kx.confirmed;
  },
  seal: ({ message }) => kx.seal(message),
  open: ({ data }) => kx.open(data),
  sealFrame: ({ frame }) => kx.sealFrame(bytes(frame)),
  openFrame: ({ text }) => b64encode(kx.openFrame(text)),
  inflater: () => {
    inflater = new Inflater();
    return null;
  },
  // one frame body in; its pieces' count and their concatenation out
  inflate: ({ body }) => {
    const pieces = inflater.push(bytes(body));
    const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of pieces) {
      out.set(p, at);
      at += p.length;
    }
    return { pieces: pieces.length, data: b64encode(out) };
  },
  b64decode: ({ text }) => b64encode(b64decode(text)),
  parseToken: ({ text }) => parseToken(text),
  parsePayload: ({ data }) => parsePayload(data),
  pyJson: ({ value, compact }) => pyJson(value, compact),
  encodeHello: ({ hello }) => b64encode(encodeHello(hello)),
  decodeHello: ({ body }) => decodeHello(bytes(body)),
  constants: () => ({ REJECT_REASONS, HOLD_MAX }),
};

function answer(request) {
  try {
    const op = OPS[request.op];
    if (!op) throw new Error(`unknown op ${request.op}`);
    return { ok: op(request) ?? null };
  } catch (err) {
    const kind = err instanceof BeachError ? err.kind : err instanceof BadOutput ? 'bad-output' : 'bug';
    return { error: { kind, message: err.message } };
  }
}

if (process.argv.includes('--serve')) {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on('line', (line) => process.stdout.write(`${JSON.stringify(answer(JSON.parse(line)))}\n`));
}
