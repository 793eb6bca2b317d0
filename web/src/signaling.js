// The page's WebSocket to the rendezvous server: JSON messages checked as strictly as the CLI
// checks them (beach_cli/wire/signaling.py), received one at a time under a deadline.

import { BeachError } from "./keyplane.js";

export const VERSION = 1;
const MAX_SERVER_MESSAGE = 64 * 1024 + 1024;
const MAX_QUEUED = 256; // messages waiting for the page to read them; more is a flood

// What each server message must carry: [name, type, required, max length (0: any)].
const SERVER = {
  welcome: [["server", "string", true, 64], ["ice_servers", "array", true, 0]],
  joined: [["session", "id", true, 0], ["peer", "id", true, 0], ["ice_servers", "array", false, 0]],
  host_left: [["reason", "string", false, 200]],
  signal: [["from", "id", true, 0], ["data", "object", true, 0]],
  relay: [["from", "id", true, 0], ["data", "string", true, 64 * 1024 - 1024]],
  error: [["code", "string", true, 32], ["message", "string", true, 500]],
};
const ID = /^[a-z0-9]{1,32}$/;

function kindOf(value) {
  if (Array.isArray(value)) return "array";
  if (value === null) return "null";
  return typeof value;
}

export function parseServerMessage(text) {
  if (typeof text !== "string" || text.length > MAX_SERVER_MESSAGE) {
    throw new BeachError("protocol", "the server sent a message too large or not text");
  }
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    throw new BeachError("protocol", "the server sent a message that is not JSON");
  }
  if (kindOf(msg) !== "object" || msg.v !== VERSION || !Object.hasOwn(SERVER, msg.type)) {
    throw new BeachError("protocol", "the server sent a message a joiner never gets");
  }
  for (const [name, type, required, max] of SERVER[msg.type]) {
    const value = msg[name];
    if (value === undefined || value === null) {
      if (required) throw new BeachError("protocol", `the server's ${msg.type} lacks ${name}`);
      continue;
    }
    const ok =
      type === "id" ? typeof value === "string" && ID.test(value) : kindOf(value) === type;
    if (!ok || (max && value.length > max)) {
      throw new BeachError("protocol", `the server's ${msg.type} has a malformed ${name}`);
    }
  }
  return msg;
}

export class Signaling {
  constructor(url) {
    this.url = url;
    this.ws = null;
    this.queue = [];
    this.waiters = [];
    this.closed = null; // why, once the socket is gone
    this.iceServers = [];
  }

  // Open the socket and take the server's welcome, within `seconds`.
  async connect(seconds) {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onmessage = (event) => this._push(event.data);
    ws.onclose = () => this._gone("the server closed the connection");
    ws.onerror = () => this._gone(`cannot reach the server at ${this.url}`);
    const welcome = await this.recv(seconds, "the server did not answer in time");
    if (welcome.type !== "welcome") {
      throw new BeachError("protocol", `the server greeted us with ${welcome.type}`);
    }
    this.iceServers = welcome.ice_servers;
  }

  send(type, fields) {
    if (this.closed !== null) throw new BeachError("server", this.closed);
    this.ws.send(JSON.stringify({ type, v: VERSION, ...fields }));
  }

  // The next message; raises once the socket is gone or `seconds` pass (null: no deadline).
  recv(seconds, late = "the server did not answer in time") {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closed !== null) return Promise.reject(new BeachError("server", this.closed));
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      if (seconds !== null) {
        waiter.timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new BeachError("timeout", late));
        }, seconds * 1000);
      }
      this.waiters.push(waiter);
    });
  }

  // Stop every pending recv (they fail as cancelled); what arrives later queues as usual.
  cancelWaiters() {
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new BeachError("cancelled", "cancelled"));
    }
  }

  unshift(msg) {
    this.queue.unshift(msg);
  }

  _push(data) {
    let msg;
    try {
      msg = parseServerMessage(data);
    } catch (exc) {
      this._gone(exc.message);
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve(msg);
    } else if (this.queue.length < MAX_QUEUED) {
      this.queue.push(msg);
    } else {
      this._gone("the server sent more than the page can hold");
    }
  }

  _gone(why) {
    if (this.closed !== null) return;
    this.closed = why;
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new BeachError("server", why));
    }
    try {
      this.ws.close();
    } catch {
      // already closing
    }
  }

  close() {
    this._gone("closed");
  }
}
