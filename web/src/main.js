// The page behind a join link: `<origin>/j/#<token>` (or, for a separately hosted copy of the
// page, `#<token>&server=<ws url>`). The fragment never reaches a server; it is read once and
// taken out of the address bar, so it stays out of history, bookmarks and screenshots.

import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { parseMode } from "./echo.js";
import { parseToken } from "./keyplane.js";
import { Session } from "./session.js";

const beach = {
  terminal: null,
  state: "connecting",
  exitCode: null,
  path: null,
  error: null,
  status: "",
  predict: null, // predictive echo's state (echo.js), once the session has started
};
window.beach = beach;

const statusLine = document.getElementById("status");

function show(text) {
  beach.status = text;
  statusLine.textContent = text; // text, never markup: the server's words may be in it
  console.info(text); // the console keeps the history, for a bug report
}

// What the fragment says: the token, and the server when the page is hosted elsewhere.
export function readLink(fragment, here) {
  const params = new URLSearchParams(fragment.replace(/^#/, "").replace(/^([^&=]+)(&|$)/, "token=$1$2"));
  const token = parseToken(params.get("token") || "");
  let server = params.get("server");
  if (server === null) {
    server = new URL("../ws", here); // next to the page, under any path prefix
    server.protocol = here.protocol === "https:" ? "wss:" : "ws:";
    server = server.href;
  } else if (!/^wss?:\/\//.test(server)) {
    throw new Error("the link's server is not a ws:// or wss:// address");
  }
  // Predictive echo: auto (by round trip), always or never (anything else: auto).
  const predict = parseMode(params.get("predict"));
  return { token, server, predict };
}

function setState(name) {
  beach.state = name;
  statusLine.dataset.state = name;
}

function end(exitCode, error, text) {
  beach.exitCode = exitCode;
  beach.error = error;
  setState("ended");
  if (error !== null) statusLine.dataset.state = "error";
  show(text);
}

async function main() {
  let link;
  try {
    link = readLink(location.hash, new URL(location.href));
  } catch (exc) {
    end(null, exc.message, `beach: ${exc.message}`);
    return;
  } finally {
    history.replaceState(null, "", location.pathname + location.search);
  }
  const terminal = new Terminal({
    allowProposedApi: true, // the unicode11 addon needs it
    cursorBlink: true,
    scrollback: 1000,
    fontFamily: "ui-monospace, Menlo, Consolas, 'DejaVu Sans Mono', monospace",
  });
  const fit = new FitAddon();
  terminal.loadAddon(fit);
  terminal.loadAddon(new Unicode11Addon());
  terminal.unicode.activeVersion = "11";
  terminal.open(document.getElementById("terminal"));
  terminal.focus();
  beach.terminal = terminal;
  document.title = `beach: ${link.token.session}`;

  const session = new Session({
    terminal,
    propose: () => fit.proposeDimensions(),
    token: link.token,
    url: link.server,
    predict: link.predict,
    ui: {
      status: show,
      state: setState,
      path: (path) => {
        beach.path = path;
      },
    },
  });
  beach.predict = session.echo.state;
  window.addEventListener("pagehide", () => session.leave());
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => session.windowChanged(), 100);
  });
  try {
    const { code, line } = await session.run();
    end(code, null, `beach: ${line}`);
  } catch (exc) {
    end(null, exc.message, `beach: ${exc.message}`);
  }
}

main();
