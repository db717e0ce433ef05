// One WebSocket to a relay, binary frames only. It moves opaque bytes and
// reports what happened to the socket; nothing else. Which relay to open,
// when, when to give up on it and when to try again (backoff, failover) are
// decisions of client-core's driver, carried out by core.js. Nothing here is
// stored anywhere.

const PATH = "/ws";

/** ws:// or wss:// URL of the relay's WebSocket on this page's origin. */
export function relayUrl(loc = globalThis.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${PATH}`;
}

/**
 * One WebSocket. `onOpen()` when it is open, `onFrame(bytes)` for every
 * binary message, `onClose()` once when it ends or cannot be opened — never
 * after `close()`. It does not reopen itself.
 */
export class RelayChannel {
  /**
   * @param {string} url
   * @param {{onOpen: () => void, onFrame: (frame: Uint8Array) => void, onClose: () => void}} handlers
   */
  constructor(url, { onOpen, onFrame, onClose }) {
    this.onOpen = onOpen;
    this.onFrame = onFrame;
    this.onClose = onClose;
    this.ended = false;
    this.ws = null;
    try {
      this.ws = new WebSocket(url);
    } catch {
      // A malformed URL or one the CSP forbids: the same as a refused connection.
      queueMicrotask(() => this.end());
      return;
    }
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => {
      if (!this.ended) this.onOpen();
    };
    this.ws.onmessage = (ev) => {
      // Text frames are not part of the protocol: ignored.
      if (!this.ended && ev.data instanceof ArrayBuffer) this.onFrame(new Uint8Array(ev.data));
    };
    this.ws.onclose = () => this.end();
    this.ws.onerror = () => {}; // onclose follows
  }

  end() {
    if (this.ended) return;
    this.ended = true;
    this.onClose();
  }

  /** Sends one binary frame (dropped when the socket is not open: onClose tells). */
  send(frame) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(frame);
  }

  /** Closes the socket; no `onClose` follows. */
  close() {
    this.ended = true;
    if (this.ws) {
      this.ws.onopen = this.ws.onmessage = this.ws.onclose = null;
      try {
        this.ws.close();
      } catch {
        // already closed
      }
    }
  }
}
