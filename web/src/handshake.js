// One join attempt as named steps, the same as the CLI's (beach_cli/join/handshake.py):
//
//   server -> introduce -> pake -> confirm -> offer [-> approval] -> open [-> relay]
//
// Each step waits for what only it may receive, under its own deadline. Key-plane messages out
// of their step are a security failure: only a dishonest server reorders them.

import {
  BeachError,
  HOLD_MAX,
  KeyExchange,
  R_NO_KEY,
  REJECT_REASONS,
  formatToken,
  parsePayload,
} from "./keyplane.js";
import { RelayLink, RtcLink } from "./links.js";
import { Signaling } from "./signaling.js";

const APPROVAL_WAIT = 130; // s: the host answers within 120 s or the answer is no
const P2P_WAIT = 10; // s: how long the direct path may take before the server relay...
const P2P_PROBE = 3; // s: ...unless by then the host has answered none of our ICE checks
const STEP_WAIT = 20; // s: each other step (the CLI's --timeout default)

const LATE = {
  introduce: "the server did not answer our join",
  pake: "the host did not answer (its key exchange message never came)",
  confirm: "the host's key confirmation did not arrive",
  offer: "the host's offer did not arrive after the key was confirmed",
  approval: "the host did not let you in",
};

// What a reject code means; never its text (rejects travel unsealed: anyone could forge one).
function rejected(reason) {
  // (Own properties only: "constructor" or "__proto__" are codes no host sends, not lookups.)
  const meaning = Object.hasOwn(REJECT_REASONS, reason) ? REJECT_REASONS[reason] : undefined;
  if (meaning === undefined) {
    return new BeachError("refused", "the host refused this join attempt");
  }
  const kinds = { "wrong token": "wrong-token", security: "security", protocol: "security" };
  return new BeachError(Object.hasOwn(kinds, reason) ? kinds[reason] : "refused", meaning);
}

// rendezvous.short_url: the spelling the host prints in its commands.
function shortUrl(url) {
  try {
    const u = new URL(url);
    return u.protocol === "ws:" && u.pathname === "/ws" && !u.search ? u.host : url;
  } catch {
    return String(url);
  }
}

// The server's words, printable only (a page shows them as text, never as markup).
function serverError(msg) {
  const text = String(msg.message).replace(/[^\x20-\x7e]/g, "?").slice(0, 200);
  const kinds = {
    unknown_session: "unknown-session",
    host_away: "host-away",
    rate_limited: "rate-limited",
    too_many: "refused",
    dropped: "refused",
  };
  if (!Object.hasOwn(kinds, msg.code)) {
    return new BeachError("server", `the server said: ${text}`); // as the CLI: its words, named
  }
  const suffix = msg.code === "unknown_session" ? " (check the link, or the session has ended)" : "";
  return new BeachError(kinds[msg.code], `${text}${suffix}`);
}

function reordered(what) {
  return new BeachError(
    "security",
    `the server delivered the host's key exchange out of order (${what}); ` +
      "an honest server never does: not connecting",
  );
}

export class Handshake {
  // `status(text, state)` tells the page what is happening; `onFrame` gets the link's frames.
  constructor({ url, token, resume, status, onFrame }) {
    this.url = url;
    this.token = token;
    this.resume = resume;
    this.status = status;
    this.onFrame = onFrame;
    this.sig = new Signaling(url);
    this.kx = null;
    this.link = null;
    this.deadline = null;
    this.step = "server";
    this.hostSdp = "";
    this.offered = [];
    this.early = null; // a confirmation that overtook the host's key exchange
  }

  async run() {
    const steps = {
      server: () => this._server(),
      introduce: () => this._introduce(),
      pake: () => this._pake(),
      confirm: () => this._confirm(),
      offer: () => this._offer(),
      approval: () => this._offer(),
      open: () => this._open(),
      relay: () => this._relay(),
    };
    let step = "server";
    try {
      while (step !== null) {
        this.step = step;
        this._wait(step === "approval" ? APPROVAL_WAIT : step === "open" ? null : STEP_WAIT);
        step = await steps[step]();
      }
    } catch (exc) {
      if (this.link !== null) this.link.close();
      this.sig.close();
      throw exc;
    }
    if (!(this.link instanceof RelayLink)) this.sig.close(); // the relay keeps the socket
    return this.link;
  }

  _wait(seconds) {
    this.deadline = seconds === null ? null : Date.now() + seconds * 1000;
  }

  _left() {
    if (this.deadline === null) return null;
    const left = (this.deadline - Date.now()) / 1000;
    if (left <= 0) throw new BeachError("timeout", LATE[this.step]);
    return left;
  }

  async _recv() {
    return this.sig.recv(this._left(), LATE[this.step] || "the server did not answer in time");
  }

  // The host's next key-plane message; news from the server ends the attempt.
  async _signal() {
    for (;;) {
      const data = this._payload(await this._recv());
      if (data !== null) return data;
    }
  }

  // A server message during the handshake: the host's payload, or null for one that is not
  // a signal; the host leaving, a server error or a reject end the attempt.
  _payload(msg) {
    if (msg.type === "host_left") {
      throw new BeachError("host-gone", "the host left before we could connect");
    }
    if (msg.type === "error") throw serverError(msg);
    if (msg.type !== "signal") return null;
    const data = parsePayload(msg.data);
    if (data.k === "reject") throw rejected(data.reason);
    return data;
  }

  _sealed(data) {
    if (data.k !== "sealed") throw reordered(`${data.k} after the key was confirmed`);
    return this.kx.open(data);
  }

  _send(data) {
    this.sig.send("signal", { to: "host", data });
  }

  async _server() {
    this.status("connecting to the server", "connecting");
    await this.sig.connect(STEP_WAIT);
    this.status("waiting for the host", "connecting");
    return "introduce";
  }

  // Our SPAKE2 message goes right behind the join, before the server has named us (it does
  // not depend on our peer id: KeyExchange.introduced), a round trip sooner.
  async _introduce() {
    const t = this.token;
    this.kx = new KeyExchange(t.session, "", t.role, t.secret);
    const ours = this.kx.start();
    this.sig.send("join", { session: t.session });
    this._send(ours);
    const msg = await this._recv();
    if (msg.type === "error") throw serverError(msg);
    if (msg.type !== "joined") {
      throw new BeachError("protocol", `unexpected answer from the server: ${msg.type}`);
    }
    this.offered = msg.ice_servers || this.sig.iceServers;
    this.kx.introduced(msg.peer);
    return "pake";
  }

  // Before its SPAKE2 message, and only then, the host may hold us (it slows attempts after
  // wrong tokens): the wait grows by the hold, up to HOLD_MAX.
  async _pake() {
    for (;;) {
      const data = await this._signal();
      if (data.k === "hold") {
        const held = Math.min(data.s, HOLD_MAX);
        this.status(`the host is slowing joins after wrong tokens: waiting up to ${held} s`, "connecting");
        this._wait(held + STEP_WAIT);
      } else if (data.k === "pake") {
        this.kx.finish(data);
        if (this.early !== null) this._reordered(this.early);
        return "confirm";
      } else if (data.k === "confirm" && this.early === null) {
        this.early = data; // judged once the key is there (see _reordered)
      } else {
        throw reordered(`${data.k} before the key`);
      }
    }
  }

  // The host's confirmation came before its key exchange: the server reorders. Still check it,
  // and if it holds, confirm our side too, so that the host counts no wrong guess against us;
  // then stop, as a security failure. If it does not hold, say nothing.
  _reordered(early) {
    try {
      this.kx.verify(early);
      this._send(this.kx.confirmation());
    } catch {
      // not the host's, or the server is gone: nothing to tell
    }
    throw reordered("the confirmation before the key");
  }

  async _confirm() {
    const data = await this._signal();
    if (data.k !== "confirm") throw reordered(`${data.k} instead of the confirmation`);
    try {
      this.kx.verify(data);
    } catch (exc) {
      if (exc.kind === "wrong-token") {
        try {
          this._send({ k: "reject", reason: "wrong token" });
        } catch {
          // the server is gone: the host counts the attempt anyway
        }
      }
      throw exc;
    }
    this._send(this.kx.confirmation());
    this._send(this.kx.seal({ t: "join", resume: this.resume }));
    this.status("key confirmed; connecting peer-to-peer", "connecting");
    return "offer";
  }

  // The host's sealed offer; or first its word that a person decides (approval).
  async _offer() {
    for (;;) {
      const sealed = this._sealed(await this._signal());
      if (sealed.t === "offer") {
        this.hostSdp = sealed.sdp;
        return "open";
      }
      if (sealed.t === "prove") {
        // Only holders of certain SSH keys may join, and a page has no ssh-agent: say so to
        // the host (our token was right: no wrong guess) and tell the person what works.
        try {
          this._send({ k: "reject", reason: R_NO_KEY });
        } catch {
          // the server is gone: the host's wait for a proof ends on its own
        }
        const server = shortUrl(this.url).replace(/[^\x21-\x7e]/g, "?").slice(0, 200);
        throw new BeachError(
          "key-required",
          "this session admits only people holding certain SSH keys, which a browser cannot " +
            `use: join from a terminal with  beach join --server ${server} ` +
            `${formatToken(this.token)}  (it signs with your ssh-agent, or -i KEYFILE)`,
        );
      }
      if (sealed.t === "wait" && this.step === "offer") {
        this.status("waiting for the host to let you in", "waiting");
        return "approval";
      }
    }
  }

  // Answer the offer, send our candidates as they come, and give the direct path P2P_WAIT
  // to open; if it fails or does not open in time, the relay.
  async _open() {
    const rtc = new RtcLink([...(this.offered || [])], this.onFrame);
    this.link = rtc;
    const answer = await rtc.answer(this.hostSdp, (c) => {
      try {
        this._send(
          this.kx.seal({
            t: "candidate",
            candidate: c.candidate,
            sdpMid: c.sdpMid,
            sdpMLineIndex: c.sdpMLineIndex,
          }),
        );
      } catch {
        // the attempt is over; the link is closed with it
      }
    });
    this._send(this.kx.seal({ t: "answer", sdp: answer }));
    this.status(
      `connecting peer-to-peer (through the server instead if nothing opens in ${P2P_WAIT} s)`,
      "connecting",
    );
    let timer, probe;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("late")), P2P_WAIT * 1000);
      // The page cannot judge from candidates as the CLI does (the browser hides its own
      // addresses behind mDNS names), so it asks the checks themselves: if the host answered
      // none of ours in P2P_PROBE s, this network lets nothing through (no UDP out, say).
      probe = setTimeout(async () => {
        if (!(await rtc.anyAnswered())) reject(new Error("no check answered"));
      }, P2P_PROBE * 1000);
    });
    const watch = { on: true };
    const news = this._news(watch);
    try {
      await Promise.race([rtc.opened, late, news]);
      return null;
    } catch (exc) {
      if (exc instanceof BeachError) throw exc;
      this.status("no direct path; relaying through the server", "connecting");
      return "relay";
    } finally {
      clearTimeout(timer);
      clearTimeout(probe);
      watch.on = false;
      this.sig.cancelWaiters();
      news.catch(() => {});
    }
  }

  // While the channel opens the host may say it is gone, or reject us; a second offer or a
  // late `wait` changes nothing. A message read after the watch ended goes back for the relay.
  async _news(watch) {
    while (watch.on) {
      const msg = await this.sig.recv(null);
      if (!watch.on) {
        this.sig.unshift(msg);
        return;
      }
      const data = this._payload(msg);
      if (data !== null) this._sealed(data);
    }
  }

  async _relay() {
    this.link.close();
    this.link = null;
    this._send(this.kx.seal({ t: "relay" }));
    this.link = new RelayLink(this.sig, this.kx, this.onFrame);
    return null;
  }
}
