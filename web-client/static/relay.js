// WebSocket transport to the relay that served this page: ws(s)://<same
// host>/ws, binary frames only, reconnect with capped exponential backoff
// and jitter. It moves opaque bytes and nothing else: framing, sealing and
// every protocol decision belong to client-core (compiled to WebAssembly and
// reached through core.js). Nothing here is stored anywhere.

const PATH = "/ws";
const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;

/** ws:// or wss:// URL of the relay's WebSocket on this page's origin. */
export function relayUrl(loc = globalThis.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${PATH}`;
}

/**
 * One WebSocket to the relay. The design keeps two apart: the "mailbox"
 * connection (authenticated to the holder's mailbox) and an unauthenticated
 * "deposit" connection, so the relay cannot tie a deposit to a mailbox.
 */
export class RelayChannel {
  /**
   * @param {string} name          "mailbox" or "deposit" (for state reports only)
   * @param {(frame: Uint8Array) => void} onFrame  every binary frame received
   * @param {(state: "connecting"|"open"|"closed") => void} [onState]
   */
  constructor(name, onFrame, onState = () => {}) {
    this.name = name;
    this.onFrame = onFrame;
    this.onState = onState;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.closed = false;
    this.waiters = [];
  }

  /** Opens the socket (and keeps reopening it) until close() is called. */
  connect() {
    if (this.closed || this.ws) return;
    this.onState("connecting");
    const ws = new WebSocket(relayUrl());
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.attempt = 0;
      this.onState("open");
      for (const w of this.waiters.splice(0)) w.resolve();
    };
    ws.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) this.onFrame(new Uint8Array(ev.data));
      // Text frames are not part of the protocol: ignored.
    };
    ws.onclose = () => {
      this.ws = null;
      this.onState("closed");
      if (!this.closed) this.scheduleReconnect();
    };
    ws.onerror = () => {}; // onclose follows and handles it
    this.ws = ws;
  }

  scheduleReconnect() {
    const base = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** this.attempt);
    this.attempt += 1;
    const delay = base / 2 + Math.random() * (base / 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  /** Resolves once the socket is open (connecting it if needed). */
  ready() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    this.connect();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Sends one binary frame; waits for the socket to be open first. */
  async send(frame) {
    await this.ready();
    this.ws.send(frame);
  }

  /** Closes for good: no reconnection, pending waiters are rejected. */
  close() {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const w of this.waiters.splice(0)) w.reject(new Error("closed"));
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    this.onState("closed");
  }
}

/**
 * The transport object handed to the WebAssembly bridge (see core.js):
 * `open(name, onFrame, onState)` returns a RelayChannel; `closeAll()` ends
 * every channel it opened.
 */
export function createTransport() {
  const channels = new Set();
  return {
    open(name, onFrame, onState) {
      const ch = new RelayChannel(name, onFrame, onState);
      channels.add(ch);
      ch.connect();
      return ch;
    },
    closeAll() {
      for (const ch of channels) ch.close();
      channels.clear();
    },
  };
}
