// The page's paths to the host, as beach_cli/link/: the browser's own WebRTC data channel
// (peer to peer, or through TURN), or frames sealed through the server relay. Both answer the
// host's PINGs and send their own, and call it lost after 4 s of silence, as the CLI does.

import { Frame, PING_BYTES, decodeFrame, encodePing, encodePong } from "./frames.js";

const PING_INTERVAL = 1000;
const PEER_TIMEOUT = 4000;
// The round trip is the least of the last few PING/PONGs (a PING can queue behind output), as
// beach_cli/link/pace.py; a PONG for no PING of ours, or claiming more than RTT_MAX, is not one.
const RTT_SAMPLES = 8;
const RTT_MAX = 10000; // ms
const PINGS_KEPT = 8;

class Link {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.lostReason = null;
    this.onLost = () => {};
    this.lastHeard = Date.now();
    this.timer = null;
    this.onRtt = () => {}; // called with each new round trip (ms)
    this.rtt = null;
    this._rtts = [];
    this._pings = new Map(); // our PINGs in flight: body as hex -> when sent (performance.now)
  }

  _ping() {
    const frame = encodePing();
    const key = hexOf(frame.subarray(1));
    this._pings.set(key, performance.now());
    while (this._pings.size > PINGS_KEPT) this._pings.delete(this._pings.keys().next().value);
    this.send(frame);
  }

  _pong(body) {
    const key = hexOf(body);
    const sent = this._pings.get(key);
    if (sent === undefined) return;
    this._pings.delete(key);
    const ms = performance.now() - sent;
    if (!(ms >= 0 && ms <= RTT_MAX)) return;
    this._rtts.push(ms);
    if (this._rtts.length > RTT_SAMPLES) this._rtts.shift();
    this.rtt = Math.min(...this._rtts);
    try {
      this.onRtt(this.rtt);
    } catch (exc) {
      console.warn(`round trip: ${exc.message}`);
    }
  }

  _started() {
    this.lastHeard = Date.now();
    this._ping(); // the round trip is known from the start (predictive echo waits for it)
    this.timer = setInterval(() => {
      this._ping();
      if (Date.now() - this.lastHeard > PEER_TIMEOUT) {
        this.lose(`no sign of life for ${PEER_TIMEOUT / 1000} s`);
      }
    }, PING_INTERVAL);
  }

  _received(data) {
    this.lastHeard = Date.now();
    let kind, body;
    try {
      ({ kind, body } = decodeFrame(data));
    } catch {
      return; // as the CLI: a frame we cannot read is dropped, not fatal
    }
    if (kind === Frame.PING) {
      if (body.length === PING_BYTES) this.send(encodePong(body));
    } else if (kind === Frame.PONG) {
      this._pong(body);
    } else {
      this.onFrame(kind, body);
    }
  }

  lose(reason) {
    if (this.lostReason !== null) return;
    this.lostReason = reason;
    clearInterval(this.timer);
    this.close();
    this.onLost(reason);
  }
}

const hexOf = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

export class RtcLink extends Link {
  constructor(iceServers, onFrame) {
    super(onFrame);
    this.pc = new RTCPeerConnection({ iceServers: usableIceServers(iceServers) });
    this.channel = null;
    this.path = "peer-to-peer";
    this._opened = null;
    this.opened = new Promise((resolve, reject) => {
      this._opened = { resolve, reject };
    });
    this.opened.catch(() => {}); // a failure after the handshake moved on is no news
    this.pc.ondatachannel = (event) => {
      if (event.channel.label !== "beach" || this.channel !== null) return;
      this.channel = event.channel;
      this.channel.binaryType = "arraybuffer";
      this.channel.onmessage = (e) => this._received(new Uint8Array(e.data));
      this.channel.onclose = () => this.lose("channel closed");
      this.channel.onopen = () => {
        this._learnPath();
        this._started();
        this._opened.resolve();
      };
    };
    this.pc.onconnectionstatechange = () => {
      const state = this.pc.connectionState;
      if (state === "failed" || state === "closed") {
        this._opened.reject(new Error(`connection ${state}`));
        this.lose(`connection ${state}`);
      }
    };
  }

  // The host offers; we answer. Candidates trickle out through `onCandidate` (browsers never
  // put them in the answer), to be sealed and sent to the host.
  async answer(offerSdp, onCandidate) {
    this.pc.onicecandidate = (event) => {
      if (event.candidate && event.candidate.candidate) onCandidate(event.candidate);
    };
    await this.pc.setRemoteDescription({ type: "offer", sdp: offerSdp });
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    return this.pc.localDescription.sdp;
  }

  // Whether the host has answered any of our connectivity checks (or is connected already).
  async anyAnswered() {
    try {
      const stats = await this.pc.getStats();
      for (const report of stats.values()) {
        if (report.type !== "candidate-pair") continue;
        if (report.responsesReceived > 0 || report.state === "succeeded") return true;
      }
      return false;
    } catch {
      return true; // no stats: let the full wait decide
    }
  }

  async _learnPath() {
    try {
      const stats = await this.pc.getStats();
      for (const report of stats.values()) {
        if (report.type !== "candidate-pair" || !report.nominated) continue;
        const local = stats.get(report.localCandidateId);
        const remote = stats.get(report.remoteCandidateId);
        if ([local, remote].some((c) => c && c.candidateType === "relay")) {
          this.path = "TURN relay";
        }
      }
    } catch {
      // stats are a courtesy: peer-to-peer it is
    }
  }

  send(frame) {
    if (this.channel === null || this.channel.readyState !== "open") return false;
    try {
      this.channel.send(frame);
    } catch (exc) {
      this.lose(`send failed: ${exc.message}`);
      return false;
    }
    return true;
  }

  close() {
    clearInterval(this.timer);
    try {
      this.pc.close();
    } catch {
      // closed already
    }
  }
}

// Only what RTCPeerConnection accepts: a bad entry would make the constructor throw.
function usableIceServers(servers) {
  const out = [];
  for (const s of servers || []) {
    if (typeof s !== "object" || s === null) continue;
    let urls = s.urls;
    if (typeof urls === "string") urls = [urls];
    if (!Array.isArray(urls) || !urls.length || !urls.every((u) => typeof u === "string")) continue;
    if (!urls.every((u) => /^(stun|turns?):/.test(u))) continue;
    const entry = { urls };
    if (typeof s.username === "string") entry.username = s.username;
    if (typeof s.credential === "string") entry.credential = s.credential;
    out.push(entry);
  }
  return out;
}

// Frames through the server, sealed with the join's key (beach_cli/link/relay.py).
export class RelayLink extends Link {
  constructor(sig, kx, onFrame) {
    super(onFrame);
    this.sig = sig;
    this.kx = kx;
    this.path = "server relay";
    this.reading = this._read();
    this._started();
  }

  async _read() {
    try {
      while (this.lostReason === null) {
        const msg = await this.sig.recv(null);
        if (msg.type === "relay") {
          let frame;
          try {
            frame = this.kx.openFrame(msg.data);
          } catch (exc) {
            this.lose(`relayed frame refused: ${exc.message}`);
            return;
          }
          this._received(frame);
        } else if (msg.type === "host_left") {
          this.lose("the host left");
        }
      }
    } catch (exc) {
      this.lose(`lost the server: ${exc.message}`);
    }
  }

  send(frame) {
    if (this.lostReason !== null) return false;
    try {
      // The page's frames are small (keystrokes go out in 32 KiB pieces): one message each.
      this.sig.send("relay", { to: "host", data: this.kx.sealFrame(frame) });
    } catch (exc) {
      this.lose(`relay failed: ${exc.message}`);
      return false;
    }
    return true;
  }

  close() {
    clearInterval(this.timer);
    this.sig.close();
  }
}
