// The browser joiner's session (beach_cli/join/session.py in a page): greet the host, show its
// output in xterm.js, send keystrokes and the window's size, and carry on across network
// drops by joining again with the same token and the resume id the host gave us.

import {
  ECHO_FEATURE,
  FRAME_VERSION,
  Frame,
  Inflater,
  decodeAck,
  decodeEcho,
  decodeExit,
  decodeHello,
  decodeResize,
  encodeHello,
  encodeInput,
  encodeResize,
  encodeSnapshotRequest,
} from "./frames.js";
import { Clamp } from "./clamp.js";
import { PredictiveEcho } from "./echo.js";
import { Handshake } from "./handshake.js";
import { BeachError } from "./keyplane.js";

const HELLO_TIMEOUT = 10; // s
const HELLO_AGAIN = 1; // s before HELLO is said again (then 2, 4...), within HELLO_TIMEOUT
const INPUT_CHUNK = 32 * 1024;
const INPUT_LOG_LIMIT = 1024 * 1024; // unacknowledged keystrokes kept for a reconnect
const RECONNECT_FOR = 120; // s
const BACKLOG_MAX = 8 * 1024 * 1024; // output xterm.js has not drawn yet; more: a fresh screen
// Errors after which joining again cannot help.
const FINAL = new Set(["wrong-token", "security", "refused", "unknown-session", "host-away"]);

// Keystrokes numbered by offset, kept until the host acknowledges them (beach_cli/resume.py).
class InputLog {
  constructor() {
    this.base = 0;
    this.pending = new Uint8Array(0);
  }

  get end() {
    return this.base + this.pending.length;
  }

  add(data) {
    if (this.pending.length + data.length > INPUT_LOG_LIMIT) return null;
    const offset = this.end;
    const grown = new Uint8Array(this.pending.length + data.length);
    grown.set(this.pending);
    grown.set(data, this.pending.length);
    this.pending = grown;
    return offset;
  }

  ack(offset) {
    if (offset > this.base) {
      const done = Math.min(offset, this.end) - this.base;
      this.pending = this.pending.slice(done);
      this.base += done;
    }
  }
}

// An EXIT frame's optional reason (beach_cli/wire/frames.py exit_reason): text or nothing.
function exitReason(body) {
  try {
    const reason = JSON.parse(new TextDecoder().decode(body)).reason;
    return typeof reason === "string" && reason ? reason : null;
  } catch {
    return null;
  }
}

function printable(text, max) {
  return String(text).replace(/[\x00-\x1f\x7f-\x9f]/g, "?").slice(0, max);
}

export class Session {
  // `ui` is what the page shows: ui.status(text), ui.state(name), ui.path(text).
  constructor({ terminal, propose, token, url, ui, predict = "auto" }) {
    this.term = terminal;
    this.propose = propose; // the window's size in cells, as the host should know it
    this.token = token;
    this.url = url;
    this.ui = ui;
    this.link = null;
    this.inputs = new InputLog();
    this.resumeId = null;
    this.inflater = null;
    this.clamp = new Clamp();
    this.hello = null;
    this.helloWaiter = null;
    this.awaitingSnapshot = false;
    this.backlog = 0;
    this.told = false;
    this.done = null;
    this.ended = new Promise((resolve, reject) => {
      this.done = { resolve, reject };
    });
    this.finished = false;
    // Predictive echo (echo.js): its frames go on whatever link is up.
    this.echo = new PredictiveEcho({
      terminal,
      mode: predict,
      send: (frame) => (this.link !== null ? this.link.send(frame) : false),
    });
  }

  async run() {
    this.term.onData((text) => this._typed(new TextEncoder().encode(text), text));
    this.term.onBinary((text) => this._typed(Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff)));
    await this._connect(null);
    return this.ended;
  }

  // One join attempt: the handshake, then HELLO both ways; keystrokes the host lacks go again.
  // While reconnecting, `why` stays in front of every step's status: the page must keep
  // saying that the connection was lost, not only what the new attempt is doing.
  async _connect(resume, why = "") {
    const handshake = new Handshake({
      url: this.url,
      token: this.token,
      resume,
      status: (text, state) => {
        this.ui.status(why ? `${why}: ${text}` : text);
        if (state) this.ui.state(state);
      },
      onFrame: (kind, body) => this._frame(kind, body),
    });
    const link = await handshake.run();
    this.link = link;
    this.hello = null;
    this.inflater = null;
    this.awaitingSnapshot = false;
    const greeted = new Promise((resolve) => {
      this.helloWaiter = resolve;
    });
    const [cols, rows] = this._window();
    const features = ["deflate", ...(this.echo.mode !== "never" ? [ECHO_FEATURE] : [])];
    const hello = encodeHello({ version: FRAME_VERSION, role: this.token.role, cols, rows, features });
    // Said again while unanswered (after 1 s, then 2, 4...): a message sent the moment a fresh
    // data channel opens now and then never reaches the host (seen in CI; aiortc#1194 reports
    // the same), and a host takes only the first HELLO.
    let timer, again;
    let wait = HELLO_AGAIN * 1000;
    const say = () => {
      link.send(hello);
      again = setTimeout(say, wait);
      wait *= 2;
    };
    const late = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new BeachError("host-gone", "the host did not greet us")),
        HELLO_TIMEOUT * 1000,
      );
    });
    say();
    try {
      await Promise.race([greeted, late]);
    } catch (exc) {
      link.close();
      throw exc;
    } finally {
      clearTimeout(timer);
      clearTimeout(again);
    }
    this.resumeId = this.hello.resume;
    this.inputs.ack(this.hello.applied);
    this._sendInput(this.inputs.base, this.inputs.pending);
    link.onLost = (reason) => this._lost(reason);
    link.onRtt = (ms) => this.echo.roundTrip(ms);
    this.ui.path(link.path);
    this.ui.state("connected");
    const view = this.token.role === "view" ? " (view only: your keystrokes are not sent)" : "";
    this.ui.status(`connected, ${link.path}${view}`);
  }

  _window() {
    const dims = this.propose();
    const ok = (n) => Number.isInteger(n) && n >= 1 && n <= 10000;
    return dims && ok(dims.cols) && ok(dims.rows) ? [dims.cols, dims.rows] : [80, 24];
  }

  // The channel is gone without an EXIT: join again, with backoff, for up to RECONNECT_FOR.
  async _lost(reason) {
    if (this.finished) return;
    this.link = null;
    this.echo.lost();
    this.ui.state("connecting");
    const deadline = Date.now() + RECONNECT_FOR * 1000;
    let delay = 500;
    for (let attempt = 1; !this.finished; attempt++) {
      const why = `connection lost (${reason}); reconnecting (attempt ${attempt})`;
      this.ui.status(why);
      try {
        await this._connect(this.resumeId, why);
        return;
      } catch (exc) {
        if (this.finished) return;
        if (exc instanceof BeachError && FINAL.has(exc.kind)) {
          this._fail(new BeachError(exc.kind, `lost the connection to the host, and cannot rejoin: ${exc.message}`));
          return;
        }
        reason = exc.message;
      }
      if (Date.now() + delay > deadline) {
        this._fail(
          new BeachError("host-gone", `lost the connection to the host and could not reconnect in ${RECONNECT_FOR} s (${reason})`),
        );
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }

  // The page is going away (tab closed, navigated off): hang up now, so the host hears the
  // channel close instead of waiting out a silent peer.
  leave() {
    if (this.link !== null) this.link.close();
  }

  _finish(code, line) {
    if (this.finished) return;
    this.finished = true;
    if (this.link !== null) this.link.close();
    this.done.resolve({ code, line });
  }

  _fail(exc) {
    if (this.finished) return;
    this.finished = true;
    if (this.link !== null) this.link.close();
    this.done.reject(exc);
  }

  // -- frames from the host ---------------------------------------------------------------

  _frame(kind, body) {
    try {
      this._handle(kind, body);
    } catch (exc) {
      if (exc instanceof BeachError && exc.kind === "protocol") {
        this._fail(new BeachError("protocol", `the host sent a malformed frame: ${exc.message}`));
      } else {
        this._resync(); // output we cannot show: a fresh screen, as the CLI does
      }
    }
  }

  _handle(kind, body) {
    if (kind === Frame.HELLO && this.hello === null) {
      this.hello = decodeHello(body);
      if (this.hello.features.includes("deflate")) this.inflater = new Inflater();
      this.term.resize(this.hello.cols, this.hello.rows);
      this.clamp.size(this.hello.cols, this.hello.rows);
      // Guesses for a read-write joiner only, as the host admitted us (and as our link says).
      const role = this.token.role === "rw" ? this.hello.role : "view";
      this.echo.start(this.hello.features, role, this._fits(), this.inputs.end);
      this.helloWaiter();
    } else if (kind === Frame.OUTPUT || kind === Frame.SNAPSHOT) {
      if (kind === Frame.SNAPSHOT) {
        this.awaitingSnapshot = false;
        this.echo.skipping(false);
        // A fresh screen: nothing of a cut sequence carries over.
        this.clamp = new Clamp(this.term.cols, this.term.rows);
        if (this.inflater !== null) this.inflater = new Inflater();
      } else if (this.awaitingSnapshot) {
        return;
      }
      const pieces = this.inflater === null ? [body] : this.inflater.push(body);
      for (const piece of pieces) this._show(this.clamp.feed(piece));
    } else if (kind === Frame.ACK) {
      const offset = decodeAck(body); // a BigInt past 2^53: more than was ever typed
      this.inputs.ack(typeof offset === "bigint" ? Number.MAX_SAFE_INTEGER : offset);
    } else if (kind === Frame.ECHO) {
      const { offset, flags } = decodeEcho(body); // malformed: a protocol error, as any frame
      if (this.awaitingSnapshot) return; // the output it covers is being skipped
      const sent = this.inputs.end;
      // Judged once xterm.js has parsed the output written before it (the ECHO's covers).
      this.term.write("", () => {
        try {
          this.echo.echo(offset, flags, sent);
        } catch (exc) {
          console.warn(`predictive echo: ${exc.message}`);
          this.echo.reset();
        }
      });
    } else if (kind === Frame.RESIZE) {
      const [cols, rows] = decodeResize(body);
      this.term.resize(cols, rows);
      this.clamp.size(cols, rows);
      this.echo.reset();
      this.echo.window(this._fits());
    } else if (kind === Frame.EXIT) {
      const { code, signal } = decodeExit(body);
      const reason = exitReason(body); // the host ended the session itself (--max-duration...)
      const how = signal === null ? `exited with status ${code}` : `was killed by signal ${signal}`;
      this._finish(code, reason ? `session ended by the host: ${printable(reason, 200)}` : `the host's shell ${how}`);
    } else if (kind === Frame.NOTICE) {
      this.ui.status(printable(new TextDecoder().decode(body), 200));
    }
  }

  // xterm.js parses and draws later; what it has not drawn yet is our backlog. Far behind
  // (a slow machine, a flood), skip to the present rather than replay the past.
  _show(data) {
    this.backlog += data.length;
    this.term.write(data, () => {
      this.backlog -= data.length;
    });
    if (this.backlog > BACKLOG_MAX && !this.awaitingSnapshot) this._resync();
  }

  _resync() {
    this.awaitingSnapshot = true;
    this.echo.skipping(true);
    if (this.link !== null) this.link.send(encodeSnapshotRequest());
  }

  // -- keystrokes and the window ---------------------------------------------------------------

  _typed(data, text = null) {
    if (this.finished) return;
    if (this.token.role === "view") {
      if (!this.told) {
        this.told = true;
        this.ui.status("view only: your keystrokes are not sent");
      }
      return;
    }
    const offset = this.inputs.add(data);
    if (offset === null) {
      this.ui.status("the host is not taking keystrokes; some were dropped");
      this.echo.reset();
    } else if (this.link !== null) {
      this._sendInput(offset, data);
      this.echo.key(text, offset + data.length);
    }
  }

  _sendInput(offset, data) {
    for (let i = 0; i < data.length; i += INPUT_CHUNK) {
      this.link.send(encodeInput(offset + i, data.subarray(i, i + INPUT_CHUNK)));
    }
  }

  windowChanged() {
    if (this.link === null || this.hello === null) return;
    const [cols, rows] = this._window();
    this.link.send(encodeResize(cols, rows));
    this.echo.window(this._fits());
  }

  // The page's window holds the whole PTY (a smaller one cuts it off: no guesses there).
  _fits() {
    const dims = this.propose();
    if (!dims || !Number.isFinite(dims.cols) || !Number.isFinite(dims.rows)) return false;
    return dims.cols >= this.term.cols && dims.rows >= this.term.rows;
  }
}
