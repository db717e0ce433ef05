// The ONE module that talks to client-core compiled to WebAssembly
// (web-client/static/pkg/northstar_web.js, written by wasm-bindgen from
// web-client/src/lib.rs).
//
// What the client *does* is client-core's driver, the same state machine
// the command-line client runs: the order of relay requests, batching within
// the relay's limits, proof of work, saving before sending and before
// acknowledging, reconnection with backoff and failover, the error kinds.
// This file is its shell (quinn's shape: inputs in, outputs out). Each
// public function below creates a driver or reuses the open one, issues a
// command, and lets the pump carry out the driver's outputs in order:
//   connect → one RelayChannel (relay.js) per connection id, whose opening,
//             frames and end go back to the driver;
//   send / close → on that socket;
//   persist → the sealed counselor state into IndexedDB (keystore.js),
//             awaited before anything after it is carried out;
//   work    → the proof of work, solved in slices between ticks of the
//             event loop (the page stays responsive), then handed back;
//   event   → settles the command's promise by its id, or goes to the page
//             (a counselor's message to the seeker, inbox changes).
// and wakes the driver at its next timeout. Nothing here builds a frame,
// batches, retries or decides anything about the protocol.
//
// The organisation key and the relay URLs come from the signed release
// (.well-known/northstar/release, verified by the module) on the seeker
// page, and from the binary serving the counselor inbox on 127.0.0.1. The seeker page keeps
// nothing in browser storage; the counselor page keeps its sealed device in
// IndexedDB (keystore.js), and every input its driver processes runs under
// the "northstar-counselor" Web Lock, continuing from a newer state another
// tab saved meanwhile.

import { RelayChannel } from "./relay.js";

/**
 * @typedef {{id: string, label: string, team: number}} Topic
 * @typedef {{id: string, from: "seeker"|"counselor", text: string, at?: string}} Message
 * @typedef {{topic: string, topicLabel?: string, expiresAt: string, messages: Message[]}} Conversation
 * @typedef {{name: string, teams: {id: number, label: string}[]}} Counselor
 * @typedef {{id: string, topic: string, topicLabel: string, language: string,
 *   status: "unread"|"open"|"claimed"|"resolved", claimedBy?: string,
 *   mine: boolean, preview: string, updatedAt: string}} InboxItem
 * @typedef {{id: string, kind: "seeker"|"counselor"|"note"|"event",
 *   author?: string, text: string, at: string}} CaseEntry
 * @typedef {InboxItem & {entries: CaseEntry[]}} Case
 * @typedef {(stage: "derive"|"pow"|"send"|"open", fraction: number) => void} Progress
 */

/** The secure module (or WebAssembly, or one of its exports) is not available. */
export class CoreUnavailable extends Error {
  /** @param {"no-webassembly"|"module-missing"|"export-missing"|"release-invalid"} reason */
  constructor(reason, detail = "") {
    super(`the secure module could not load (${reason}${detail ? `: ${detail}` : ""})`);
    this.name = "CoreUnavailable";
    this.reason = reason;
    this.detail = detail;
  }
}

export const ERROR_CODES = Object.freeze([
  "codename-invalid", // not a codename of any word list (see its reason)
  "codename-not-found", // well formed, but no saved conversation (expired or deleted)
  "passphrase-wrong", // counselor key store did not decrypt
  "passphrase-short", // a new counselor passphrase under 8 characters
  "no-key-store", // this browser holds no counselor key store
  "not-in-directory", // this counselor device is not in the signed directory yet
  "claimed-by-other", // a colleague holds the conversation
  "not-configured", // no signed release (seeker) or no local configuration (counselor)
  "directory-expired", // the signed directory expired and the relay serves no newer one
  "empty-message", // a message with nothing but white space: nothing was sent
  "message-too-long", // over the core's limit (`max` bytes): nothing was sent
  "network", // relay unreachable
  "busy", // rate limited or over a limit: try later
  "file-too-large", // a file over the attachment limit (`max` bytes): nothing was sent
  "file-quota", // the conversation holds as many files (or bytes) as the relay allows
  "file-unreadable", // the browser could not read the chosen file
  "image-damaged", // a photo that does not parse: not sent (its metadata could not be removed)
  "image-unsupported", // a photo format whose metadata cannot be removed (HEIC, WebP, TIFF, GIF): not sent
  "file-damaged", // a received file failed its checks: not saved
  "file-gone", // the relay no longer holds the file (expired or deleted)
  "internal",
]);

/** A failure reported by the secure module or the relay, with a stable `code`. */
export class CoreError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "CoreError";
    this.code = ERROR_CODES.includes(code) ? code : "internal";
  }
}

/** Relay refusals that mean "try again later". */
const BUSY = ["rate_limited", "server_busy", "quota_exceeded"];

/**
 * A driver error (a failed command's event, or an error the bridge threw,
 * each with the driver's `code` for its kind) in the page's error codes.
 * The driver's own code stays on the error as `driverCode`. What the driver
 * saved and sends again next time (`not-sent-yet`) is reported as its
 * cause, with `kept` set.
 */
function driverError(f) {
  if (f?.code === "not-sent-yet" && f.cause) {
    const e = driverError({ ...f.cause, message: f.message });
    e.driverCode = f.code;
    e.kept = true;
    return e;
  }
  const message = String(f?.message ?? f?.code ?? f);
  const code = {
    "no-relay": "network",
    network: "network",
    relay: BUSY.includes(f?.relayCode) ? "busy" : "internal",
    "no-directory": "not-configured",
    "codename-not-found": "codename-not-found",
    "state-does-not-open": "codename-not-found",
    "attachment-too-large": "file-too-large",
    "file-unreadable": "file-unreadable",
    "image-unreadable": "image-damaged",
    "image-unsupported": "image-unsupported",
    "attachment-damaged": "file-damaged",
    "attachment-gone": "file-gone",
  }[f?.code];
  const e = new CoreError(code ?? f?.code ?? message.split(":")[0].trim(), f?.code === "claimed-by-other" && f.by ? `${f.by} has claimed this conversation` : message);
  if (f?.code) e.driverCode = f.code;
  // What is wrong with a codename (never the words): reason, position, counts.
  if (f?.code === "codename-invalid") {
    for (const k of ["reason", "position", "expected", "got"]) if (f[k] !== undefined) e[k] = f[k];
  }
  if (typeof f?.max === "number") e.max = f.max;
  if (f?.relayCode) e.relayCode = f.relayCode;
  return e;
}

function toCoreError(e) {
  if (e instanceof CoreError || e instanceof CoreUnavailable) return e;
  if (e && typeof e === "object") return driverError(e);
  return new CoreError(String(e).split(":")[0].trim(), String(e));
}

/** True when this browser runs WebAssembly (Tor Browser "Safer" does not). */
export function webAssemblySupported() {
  try {
    if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
      return false;
    }
    // The smallest valid module: magic + version.
    return WebAssembly.validate(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  } catch {
    return false;
  }
}

const EXPORTS = ["org_fingerprint", "generate_codename", "check_codename", "check_new_passphrase", "check_message", "pow_solve_range", "verify_release", "WebDriver"];

let wasm = null;
/** The verified module, compiled once (handed to the seeker worker). */
let wasmModule = null;
let loading = null;
let config = null;
let configError = null;
/** "release": the seeker page, checked against the signed release; "local": the counselor inbox served by `northstar counselor web`. */
let source = "release";

/** Where the signed release is served, beside the page (docs/WEB_CLIENT.md, "Signed releases"). */
export const RELEASE_PATH = ".well-known/northstar/release";
const WASM_PATH = "pkg/northstar_web_bg.wasm";
/** The seeker's worker: key derivation, proof of work and the seeker's driver run there. */
const WORKER_PATH = "worker.js";

/** True inside the seeker worker (worker.js imports this module). */
const IN_WORKER = typeof WorkerGlobalScope !== "undefined" && globalThis instanceof WorkerGlobalScope;

/**
 * The counselor inbox calls this before anything else: its configuration
 * comes from the binary that serves it on 127.0.0.1 (`northstar counselor
 * web`), not from a release.
 */
export function useLocalConfig() {
  source = "local";
}

async function sha256b64url(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  let bin = "";
  for (const b of d) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function get(url) {
  const res = await fetch(url, { cache: "no-store", credentials: "omit" });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res;
}

/** A page that does not match its signed release: it refuses to run, with the reason. */
function releaseRefused(reason) {
  console.error(`Northstar: this page does not match the organisation's signed release and will not run: ${reason}`);
  return new CoreUnavailable("release-invalid", reason);
}

/**
 * Checks what this page loaded against the verified release: every
 * same-origin resource (the document, scripts, styles, images, the module)
 * must be a file of the release with the signed SHA-256, and nothing else
 * may have been loaded. This catches tampering that left the checking code
 * itself alone; code that removes the check is caught only outside the
 * page (WEBCAT's extension, `northstar web verify`). THREAT_MODEL.md says so.
 */
async function checkLoaded(release, wasmHash) {
  const base = new URL(".", location.href);
  const skip = new Set([RELEASE_PATH, ".well-known/webcat/manifest.json"]);
  const urls = [location.href, ...performance.getEntriesByType("resource").map((e) => e.name)];
  for (const s of document.querySelectorAll("script")) {
    if (!s.src) throw releaseRefused("an inline script is in the page");
    urls.push(s.src);
  }
  for (const l of document.querySelectorAll("link[href]")) urls.push(l.href);
  const seen = new Set();
  for (const raw of urls) {
    const u = new URL(raw, location.href);
    u.hash = "";
    u.search = "";
    if (seen.has(u.href)) continue;
    seen.add(u.href);
    if (u.protocol === "data:" || u.protocol === "blob:") continue;
    if (u.origin !== base.origin || !u.pathname.startsWith(base.pathname)) throw releaseRefused(`extra file: ${u.href} is not part of the signed release`);
    const rel = u.pathname.slice(base.pathname.length);
    if (skip.has(rel)) continue;
    const path = rel === "" ? release.index : `/${rel}`;
    const want = release.files[path];
    if (!want) throw releaseRefused(`extra file: ${path} is loaded by the page but is not in the signed release`);
    // The module's bytes were hashed as they were compiled; others are fetched again.
    const got = rel === WASM_PATH ? wasmHash : await sha256b64url(await (await get(u.href)).arrayBuffer());
    if (got !== want) throw releaseRefused(`modified file: ${path} does not match its SHA-256 in the signed release`);
  }
}

/**
 * The seeker's worker is started later (at the first send or come-back):
 * its script must be a file of the release with the signed SHA-256, checked
 * now like the files the page loaded. Its imports (core.js, relay.js,
 * pkg/northstar_web.js) are files the page itself loaded and checked, and
 * its module is the verified one, compiled here and handed over.
 */
async function checkWorker(release) {
  const want = release.files[`/${WORKER_PATH}`];
  if (!want) throw releaseRefused(`missing file: /${WORKER_PATH} is not in the signed release`);
  if ((await sha256b64url(await (await get(WORKER_PATH)).arrayBuffer())) !== want) {
    throw releaseRefused(`modified file: /${WORKER_PATH} does not match its SHA-256 in the signed release`);
  }
}

/**
 * Loads and initialises the WebAssembly module and the pinned configuration once.
 * The seeker page first checks the module's bytes against the signed
 * release, then has the module verify the release's signature and expiry,
 * then checks every file the page loaded; any mismatch refuses to run
 * (CoreUnavailable "release-invalid").
 * @returns {Promise<void>} rejects with CoreUnavailable
 */
export function loadCore() {
  if (!loading) {
    loading = (async () => {
      if (!webAssemblySupported()) throw new CoreUnavailable("no-webassembly");
      let mod;
      let releaseText = null;
      let wasmBytes = null;
      if (source === "release") {
        try {
          releaseText = await (await get(RELEASE_PATH)).text();
        } catch {
          releaseText = null;
        }
        if (releaseText !== null) {
          // Hashing needs a secure context (https, an onion service in Tor
          // Browser, 127.0.0.1): elsewhere nothing can be checked, so nothing runs.
          if (!globalThis.crypto?.subtle) throw releaseRefused("the page is not served over https, an onion service or 127.0.0.1, so it cannot be checked");
          // The module's hash, read before the module can check the
          // signature; the signature covers it right after.
          const line = /^wasm ([A-Za-z0-9_-]{43})$/m.exec(releaseText);
          try {
            wasmBytes = await (await get(WASM_PATH)).arrayBuffer();
          } catch (e) {
            console.error("Northstar: the secure module could not load:", String(e?.message ?? e));
            throw new CoreUnavailable("module-missing");
          }
          if (!line || (await sha256b64url(wasmBytes)) !== line[1]) {
            throw releaseRefused("modified file: /pkg/northstar_web_bg.wasm does not match its SHA-256 in the signed release");
          }
        }
      }
      try {
        mod = await import("./pkg/northstar_web.js");
        if (wasmBytes) wasmModule = await WebAssembly.compile(wasmBytes);
        await mod.default(wasmModule ? { module_or_path: wasmModule } : undefined);
      } catch (e) {
        console.error("Northstar: the secure module could not load:", String(e?.message ?? e));
        throw new CoreUnavailable("module-missing");
      }
      for (const name of EXPORTS) {
        if (!(name in mod)) throw new CoreUnavailable("export-missing", name);
      }
      wasm = mod;
      if (source === "local") {
        await localConfig();
      } else if (releaseText === null) {
        configError = new CoreError("not-configured", "no signed release is served with this page");
      } else {
        let release;
        try {
          release = mod.verify_release(releaseText, Date.now() / 1000);
        } catch (e) {
          throw releaseRefused(String(e?.message ?? e));
        }
        const wasmHash = await sha256b64url(wasmBytes);
        if (!release.wasm.includes(wasmHash) || release.files[`/${WASM_PATH}`] !== wasmHash) {
          throw releaseRefused("modified file: /pkg/northstar_web_bg.wasm does not match its SHA-256 in the signed release");
        }
        await checkLoaded(release, wasmHash);
        await checkWorker(release);
        config = { orgKey: release.orgKey, relays: release.relays, fingerprint: release.fingerprint };
      }
    })();
  }
  return loading;
}

/** The counselor inbox's configuration, from the binary serving it. */
async function localConfig() {
  let c = null;
  try {
    c = await (await get("northstar-local.json")).json();
  } catch {
    c = null;
  }
  const key = typeof c?.org_key === "string" ? c.org_key.trim() : "";
  const relays = Array.isArray(c?.relays) ? c.relays.filter((u) => typeof u === "string" && u.trim()) : [];
  if (!/^[0-9a-fA-F]{64}$/.test(key) || !relays.length) {
    configError = new CoreError("not-configured", "this inbox is not served by `northstar counselor web`");
    return;
  }
  config = { orgKey: key.toLowerCase(), relays, fingerprint: wasm.org_fingerprint(key) };
}

/**
 * The pinned configuration: the organisation key (hex) and the relay URLs,
 * from the verified signed release (seeker) or from the local binary
 * (counselor).
 * @returns {Promise<{orgKey: string, relays: string[]}>}
 */
async function pinned() {
  await loadCore();
  if (!config) throw configError ?? new CoreError("not-configured", "no organisation key");
  return config;
}

/** Runs `fn` with the loaded module, mapping every failure to CoreError. */
async function guard(fn) {
  await loadCore();
  try {
    return await fn();
  } catch (e) {
    throw toCoreError(e);
  }
}

const iso = (secs) => (secs ? new Date(secs * 1000).toISOString() : undefined);
const nowSecs = () => Math.floor(Date.now() / 1000);
/**
 * Yields to the event loop once (a message to ourselves: unlike a timer,
 * not slowed down in a background tab).
 */
const tick = () =>
  new Promise((r) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      ch.port1.close();
      r();
    };
    ch.port2.postMessage(null);
  });
/**
 * Resolves after the next paint (or 100 ms in a background tab, where no
 * frame comes): the page shows its progress screen before a long
 * synchronous step (Argon2id in the module).
 */
const painted = () =>
  IN_WORKER
    ? Promise.resolve() // no page to paint here: the page's thread stays free
    : Promise.race([new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))), new Promise((r) => setTimeout(r, 100))]);

/** Runs `fn` holding the counselor device's lock (shared by every tab of this origin). */
function withDeviceLock(fn) {
  return globalThis.navigator?.locks?.request ? navigator.locks.request("northstar-counselor", fn) : fn();
}

// ---------------------------------------------------------------- the shell

/** Nonces tried per slice of a proof of work before yielding to the page. */
const POW_SLICE = 8192;

/**
 * The shell around one WebDriver. Every input (a command, a socket's
 * opening, frame or end, a solved proof of work, the timer) runs in turn:
 * the driver takes it, then every output it produced is carried out, in
 * order, before the next input. A counselor device's inputs run under the
 * device lock, after reloading a newer state another tab saved.
 */
class Shell {
  /**
   * @param {object} driver a wasm WebDriver (owned: freed by close())
   * @param {{device?: boolean, generation?: number}} [o] a counselor device and the generation of its stored state
   */
  constructor(driver, { device = false, generation = 0 } = {}) {
    this.driver = driver;
    this.device = device;
    this.generation = generation;
    this.conns = new Map(); // connection id → RelayChannel
    this.commands = new Map(); // command id → {resolve, reject}
    this.queue = Promise.resolve();
    this.timer = null;
    this.closed = false;
    /** Live events the driver reports (not a command's outcome). */
    this.onEvent = () => {};
    /** Proof-of-work progress: `(fraction)` while solving, `(1, true)` when solved. */
    this.onWork = null;
    /** The device state was replaced by a newer one another tab saved. */
    this.onReload = () => {};
    /** The file being attached (a Blob): the driver reads it in slices. */
    this.file = null;
    /** Receives a download's bytes in order: `(command, Uint8Array)`. */
    this.onWrite = null;
  }

  /** Runs `fn(driver, now)` as the next input; resolves with what it returned. */
  input(fn) {
    const step = this.queue.then(() => (this.device ? withDeviceLock(() => this.step(fn)) : this.step(fn)));
    this.queue = step.catch(() => {});
    return step;
  }

  /** An input nobody waits for (sockets, timer, proof of work). */
  feed(fn) {
    this.input(fn).catch(() => {});
  }

  async step(fn) {
    if (this.closed) throw new CoreError("internal", "closed");
    if (this.device) await this.reloadIfNewer();
    if (this.closed) throw new CoreError("internal", "closed");
    try {
      return fn(this.driver, nowSecs());
    } finally {
      await this.drain();
    }
  }

  /** Issues a command (`issue(driver, now)` returns its id); resolves with its outcome. */
  run(issue) {
    // Set by the driver's partlyRefused event: some copies were refused by
    // the relay (a full mailbox), the others stored.
    this.partlyRefused = null;
    return new Promise((resolve, reject) => {
      this.input((d, now) => this.commands.set(issue(d, now), { resolve, reject })).catch((e) => reject(toCoreError(e)));
    });
  }

  /** Another tab saved a newer device state: continue from it. */
  async reloadIfNewer() {
    const ks = await import("./keystore.js");
    if ((await ks.loadGeneration()) <= this.generation) return;
    const stored = await ks.loadState();
    if (this.closed || !stored || stored.generation <= this.generation) return;
    this.generation = stored.generation;
    try {
      this.driver.reload(stored.state);
    } catch {
      // Not this device's state any more (enrolled anew in another tab):
      // going on would overwrite it.
      console.warn("Northstar: the device state another tab saved is not this device's; locked");
      this.close();
      throw new CoreError("internal", "the device changed in another tab");
    }
    try {
      this.onReload();
    } catch {
      // the page's handler failed: the driver goes on
    }
  }

  /** Carries out every output in order, then sets the timer. */
  async drain() {
    try {
      while (!this.closed) {
        const outs = this.driver.outputs();
        if (!outs.length) break;
        for (const o of outs) {
          if (this.closed) return;
          await this.carryOut(o);
        }
      }
    } catch {
      // A save that failed: nothing after it may go out.
      console.error("Northstar: the device state could not be saved; disconnected");
      this.close();
      return;
    }
    this.schedule();
  }

  async carryOut(o) {
    switch (o.type) {
      case "connect":
        return this.connect(o.conn, o.url);
      case "send":
        return this.conns.get(o.conn)?.send(o.frame);
      case "close": {
        const ch = this.conns.get(o.conn);
        this.conns.delete(o.conn);
        return ch?.close();
      }
      case "persist":
        return this.persist(o.sealed);
      case "work":
        this.solve(o);
        return;
      case "event":
        return this.event(o);
      case "read":
        this.readSlice(o);
        return;
      case "write":
        this.onWrite?.(o.command, o.data);
        return;
    }
  }

  /** Reads one slice of the file being attached (never the whole file) and hands it over. */
  async readSlice({ read, offset, len }) {
    let bytes = null;
    try {
      if (this.file) bytes = new Uint8Array(await this.file.slice(offset, offset + len).arrayBuffer());
    } catch {
      bytes = null;
    }
    if (this.closed) return;
    this.feed((d, now) => d.readDone(read, bytes, now));
  }

  connect(conn, url) {
    const ch = new RelayChannel(url, {
      onOpen: () => this.feed((d, now) => d.connected(conn, now)),
      onFrame: (bytes) => this.feed((d, now) => d.frame(conn, bytes, now)),
      onClose: () => {
        if (this.conns.get(conn) !== ch) return;
        this.conns.delete(conn);
        this.feed((d, now) => d.closed(conn, now));
      },
    });
    this.conns.set(conn, ch);
  }

  async persist(sealed) {
    if (!this.device) throw new Error("the driver asked to save state this page does not keep");
    const ks = await import("./keystore.js");
    await ks.saveState(sealed, this.generation + 1);
    this.generation += 1;
  }

  /** Solves a proof of work in slices, yielding between them, then hands the nonce back. */
  async solve({ work, challenge, batchHash, difficulty }) {
    const expected = 2 ** difficulty;
    let nonce;
    for (let start = 0; nonce === undefined; start += POW_SLICE) {
      if (this.closed) return;
      nonce = wasm.pow_solve_range(challenge, batchHash, difficulty, start, POW_SLICE);
      this.onWork?.(Math.min(0.95, 1 - Math.exp(-(start + POW_SLICE) / expected)), false);
      if (nonce === undefined) await tick();
    }
    if (this.closed) return;
    this.onWork?.(1, true);
    this.feed((d, now) => d.workDone(work, nonce, now));
  }

  event(ev) {
    try {
      if (ev.event === "done" || ev.event === "failed") {
        const c = this.commands.get(ev.command);
        if (!c) return;
        this.commands.delete(ev.command);
        if (ev.event === "done") c.resolve(ev.outcome);
        else c.reject(driverError(ev));
      } else {
        if (ev.event === "partlyRefused") this.partlyRefused = { refused: ev.refused, of: ev.of, code: ev.code };
        this.onEvent(ev);
      }
    } catch {
      // the page's handler failed: the driver goes on
    }
  }

  /** Wakes the driver at its next timeout. */
  schedule() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.closed) return;
    const at = this.driver.nextTimeout();
    if (at === undefined) return;
    const delay = Math.max(0, at * 1000 - Date.now()) + 10;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.feed((d, now) => d.timeout(now));
    }, delay);
  }

  /**
   * Stops at once: closes every socket, fails every pending command and
   * frees the driver (its secrets are zeroized). Never throws.
   */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = null;
    for (const ch of this.conns.values()) ch.close();
    this.conns.clear();
    const pending = [...this.commands.values()];
    this.commands.clear();
    for (const c of pending) c.reject(new CoreError("internal", "closed"));
    try {
      this.driver.close();
      this.driver.free();
    } catch {
      // already freed
    }
  }
}

// ---------------------------------------------------------------- seeker

// Directory slugs → the seeker-facing topic ids with translations (i18n.js "topic.<id>").
const TOPIC_IDS = {
  "unaccompanied-minors": "minors",
  "crossing-the-border": "border",
  "safe-third-country": "stca",
  "earlier-asylum-claims": "prior-asylum",
  "us-citizens": "us-citizens",
  "newcomer-services-canada": "newcomers",
};
const topicId = (slug) => TOPIC_IDS[slug] ?? slug;
const topicSlug = (id) => Object.keys(TOPIC_IDS).find((slug) => TOPIC_IDS[slug] === id) ?? id;

let seeker = null; // {shell, onMessage}

const messageOf = (m) => ({ id: m.id, from: m.from, text: m.text, at: iso(m.at), ...(m.attachment ? { attachment: { ...m.attachment } } : {}) });

function conversationOf(s) {
  const c = s.shell.driver.conversation();
  return {
    topic: c?.topic ? topicId(c.topic) : "",
    topicLabel: c?.topicLabel,
    expiresAt: iso(c?.expiresAt),
    messages: (c?.messages ?? []).map(messageOf),
    // What the team's encrypted receipts say, and when everything is deleted.
    status: c?.status ?? null,
    deletesAt: iso(c?.deletesAt),
    retentionDays: c?.retentionDays ?? null,
  };
}

/** A seeker's driver, its live messages going to `onSeekerMessage`'s callback. */
async function openSeeker() {
  forgetSeeker();
  const { orgKey, relays } = await pinned();
  const s = { shell: new Shell(wasm.WebDriver.seeker(relays, orgKey)), onMessage: IN_WORKER ? seekerOnMessage : null, onTransfer: null };
  s.shell.onEvent = (ev) => {
    if (ev.event === "seekerMessage" && seeker === s) s.onMessage?.(messageOf(ev.message));
    // A receipt (or a reply, which answers) changed where the question
    // stands: the page redraws the status, on the same channel.
    if ((ev.event === "seekerStatus" || ev.event === "seekerMessage") && seeker === s) s.onMessage?.({ status: conversationOf(s).status });
    if (ev.event === "progress" && seeker === s) s.onTransfer?.(ev.command, ev.done, ev.total);
  };
  seeker = s;
  return s;
}

function forgetSeeker() {
  const s = seeker;
  seeker = null;
  s?.shell.close();
}

/** @returns {Promise<string>} the organisation's short fingerprint, to compare with the published one */
export function orgFingerprint() {
  return guard(async () => wasm.org_fingerprint((await pinned()).orgKey));
}

/**
 * @param {string} language "en", "es", "fr" or "ht": the word list
 * @returns {Promise<string>} a fresh codename in that language (nine words in
 *   English, eleven in the others, the last two check words), generated on
 *   this device
 */
export function generateCodename(language) {
  return guard(() => wasm.generate_codename(language));
}

/**
 * Topics from the signed, verified team directory.
 * @returns {Promise<{topics: Topic[], topicVisibleToRelay: boolean}>}
 */
export function listTopics() {
  return guard(async () => {
    const { orgKey, relays } = await pinned();
    const shell = new Shell(wasm.WebDriver.seeker(relays, orgKey));
    try {
      await shell.run((d, now) => d.directory(now));
      return {
        topics: shell.driver.topics("en").map((t) => ({ id: topicId(t.slug), label: t.label, team: t.id, questions: shell.driver.questions(t.slug) })),
        topicVisibleToRelay: shell.driver.topicVisibleToRelay(),
      };
    } finally {
      shell.close();
    }
  });
}

/**
 * First contact: derives the seeker's keys from the codename (Argon2id),
 * then the driver registers the mailbox, fetches a prekey bundle per intake
 * device, saves the encrypted state on the relay and deposits the opening
 * message with proof of work over a second connection.
 * @param {{codename: string, topic: string, language: string, text: string, answers?: IntakeAnswer[], onProgress: Progress}} a
 *   `answers`: the intake answers (skipped questions left out), inside the opening
 * @returns {Promise<Conversation>}
 */
function startHere({ codename, topic, language, text, answers = null, onProgress = () => {} }) {
  return guard(async () => {
    const s = await openSeeker();
    let shown = 0; // the bar never goes back
    const progress = (stage, f) => onProgress(stage, (shown = Math.max(shown, f)));
    progress("derive", 0.05);
    await painted();
    s.shell.onWork = (f, solved) => (solved ? progress("send", 0.95) : progress("pow", 0.35 + 0.55 * f));
    try {
      await s.shell.run((d, now) => {
        const id = d.seekerStart(codename, topicSlug(topic), language, text, now, answers);
        progress("derive", 0.3);
        return id;
      });
      s.shell.onWork = null;
      progress("send", 1);
      const conv = conversationOf(s);
      if (s.shell.partlyRefused) conv.partlyRefused = s.shell.partlyRefused;
      return conv;
    } catch (e) {
      if (seeker === s) forgetSeeker();
      throw e;
    }
  });
}

/**
 * Comes back with a codename (any browser): derives the keys, then the
 * driver authenticates to the mailbox, restores the saved state and reads
 * what arrived since.
 * @param {string} codename
 * @param {Progress} onProgress
 * @returns {Promise<Conversation>} rejects CoreError "codename-invalid" | "codename-not-found"
 */
function comeBackHere(codename, onProgress = () => {}) {
  return guard(async () => {
    forgetSeeker();
    await pinned();
    wasm.check_codename(codename);
    const s = await openSeeker();
    onProgress("derive", 0.05);
    await painted();
    try {
      await s.shell.run((d, now) => {
        const id = d.seekerOpen(codename, now);
        onProgress("open", 0.4);
        return id;
      });
      onProgress("open", 1);
      return conversationOf(s);
    } catch (e) {
      if (seeker === s) forgetSeeker();
      throw e;
    }
  });
}

/** @param {string} text @returns {Promise<Message>} the message as sent */
function sendReplyHere(text) {
  return guard(async () => {
    const s = seeker;
    if (!s) throw new CoreError("internal", "no conversation open");
    let sent;
    await s.shell.run((d, now) => {
      const id = d.seekerWrite(text, now);
      sent = d.conversation()?.messages.at(-1);
      return id;
    });
    const m = messageOf(sent);
    if (s.shell.partlyRefused) m.partlyRefused = s.shell.partlyRefused;
    return m;
  });
}


/** A relay refusal of an upload, in the page's words. */
function fileError(e) {
  if (e?.relayCode === "quota_exceeded" || e?.relayCode === "too_many_blobs") {
    const f = new CoreError("file-quota", e.message);
    f.relayCode = e.relayCode;
    return f;
  }
  if (e?.relayCode === "attachment_too_large") return new CoreError("file-too-large", e.message);
  return e;
}

/**
 * Runs a transfer command on `shell`, reporting `onProgress("upload" |
 * "download", fraction)` from the driver's progress events.
 */
async function transfer(shell, owner, stage, issue, onProgress) {
  let command = null;
  owner.onTransfer = (c, done, total) => {
    if (c === command) onProgress(stage, total ? done / total : 1);
  };
  try {
    return await shell.run((d, now) => (command = issue(d, now)));
  } catch (e) {
    throw fileError(toCoreError(e));
  } finally {
    owner.onTransfer = null;
  }
}

/**
 * Sends a file (a File or Blob): the driver reads it a slice at a time,
 * removes a photo's metadata, encrypts and uploads it in chunks, then sends
 * its reference. @returns {Promise<Message>} the file's message as sent
 */
function attachHere(file, onProgress = () => {}) {
  return guard(async () => {
    const s = seeker;
    if (!s) throw new CoreError("internal", "no conversation open");
    s.shell.file = file;
    try {
      await transfer(s.shell, s, "upload", (d, now) => d.seekerAttach(file.name || "file", file.type || "application/octet-stream", file.size, now), onProgress);
    } finally {
      s.shell.file = null;
    }
    const m = messageOf(s.shell.driver.conversation()?.messages.at(-1));
    if (s.shell.partlyRefused) m.partlyRefused = s.shell.partlyRefused;
    return m;
  });
}

/**
 * Downloads and checks the file of message `messageId`.
 * @returns {Promise<Blob>} the file, once whole and genuine
 */
function fetchHere(messageId, onProgress = () => {}) {
  return guard(async () => {
    const s = seeker;
    if (!s) throw new CoreError("internal", "no conversation open");
    const m = s.shell.driver.conversation()?.messages.find((x) => x.id === messageId);
    const parts = [];
    s.shell.onWrite = (_, data) => parts.push(data);
    try {
      await transfer(s.shell, s, "download", (d, now) => d.fetchAttachment(undefined, messageId, now), onProgress);
    } finally {
      s.shell.onWrite = null;
    }
    return new Blob(parts, { type: m?.attachment?.type ?? "application/octet-stream" });
  });
}

/** Asks the team to delete the conversation, then deletes the mailbox and state on the relay. */
function deleteHere() {
  return guard(async () => {
    const s = seeker;
    if (!s) throw new CoreError("internal", "no conversation open");
    await s.shell.run((d, now) => d.seekerDelete(now));
    if (seeker === s) forgetSeeker();
  });
}

// ------------------------------------------------------ the seeker worker
//
// On the seeker page the seeker's driver does not run on the page's thread:
// Argon2id (codename → keys, about 1.5 s on a throttled phone) and the proof
// of work would freeze it, and Quick exit with it. A dedicated module worker
// (worker.js, a file of the signed release, which imports this same module)
// runs the whole seeker driver with its sockets: the page hands it the
// verified, compiled module and the pinned configuration, then each command
// (start, come back, write, delete) and its arguments; it answers with
// progress, the outcome (the conversation as the page shows it) or the
// error, and the counselor's live messages. The seeker's keys and state live
// only in the worker's WebAssembly memory; nothing secret crosses back but
// the conversation's text. Quick exit terminates the worker at once
// (closeSeeker): its sockets close and its memory goes with it.

const HERE = { startConversation: startHere, comeBack: comeBackHere, sendReply: sendReplyHere, deleteEverything: deleteHere, sendFile: attachHere, saveFile: fetchHere };
/** Commands whose last argument is a progress callback. */
const WITH_PROGRESS = ["comeBack", "sendFile", "saveFile"];

/** The running worker: {worker, calls: Map<id, {resolve, reject, onProgress}>, next, onMessage}. */
let seekerWorker = null;
/** The page's live-message callback, kept for a worker started after it was set. */
let seekerOnMessage = null;

/** An error as it crosses from the worker: its fields only. */
function errorFields(e) {
  const f = { name: e?.name, message: String(e?.message ?? e) };
  for (const k of ["code", "reason", "detail", "driverCode", "kept", "position", "expected", "got", "max", "relayCode"]) if (e?.[k] !== undefined) f[k] = e[k];
  return f;
}

/** The same error, rebuilt on the page. */
function errorFrom(f) {
  if (f.name === "CoreUnavailable") return new CoreUnavailable(f.reason, f.detail);
  const e = new CoreError(f.code, f.message);
  for (const k of ["driverCode", "kept", "position", "expected", "got", "max", "reason", "relayCode"]) if (f[k] !== undefined) e[k] = f[k];
  return e;
}

function startWorker() {
  if (seekerWorker) return seekerWorker;
  const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "northstar-seeker" });
  const w = { worker, calls: new Map(), next: 1 };
  const fail = (e) => {
    if (seekerWorker === w) seekerWorker = null;
    worker.terminate();
    for (const c of w.calls.values()) c.reject(e);
    w.calls.clear();
  };
  worker.onmessage = ({ data: m }) => {
    if (seekerWorker !== w) return;
    const c = w.calls.get(m.id);
    if (m.type === "message") {
      try {
        seekerOnMessage?.(m.message);
      } catch {
        // the page's handler failed: the worker goes on
      }
    } else if (m.type === "progress") {
      c?.onProgress(m.stage, m.fraction);
    } else if (m.type === "result" || m.type === "error") {
      w.calls.delete(m.id);
      if (m.type === "result") c?.resolve(m.value);
      else c?.reject(errorFrom(m.error));
    }
  };
  worker.onerror = (ev) => {
    ev.preventDefault?.();
    console.error("Northstar: the secure module's worker failed:", String(ev.message ?? ""));
    fail(new CoreUnavailable("module-missing", "worker"));
  };
  worker.onmessageerror = () => fail(new CoreError("internal", "the worker's answer could not be read"));
  worker.postMessage({ type: "init", module: wasmModule, config: { orgKey: config.orgKey, relays: config.relays, fingerprint: config.fingerprint } });
  seekerWorker = w;
  return w;
}

/**
 * Runs seeker command `fn` in the worker on the seeker page (a verified
 * release), here otherwise (inside the worker itself).
 */
async function seekerCall(fn, args, onProgress = () => {}) {
  await pinned();
  if (IN_WORKER || !wasmModule) return HERE[fn](...args, ...(WITH_PROGRESS.includes(fn) ? [onProgress] : []));
  const w = startWorker();
  const id = w.next++;
  return new Promise((resolve, reject) => {
    w.calls.set(id, { resolve, reject, onProgress });
    w.worker.postMessage({ type: "call", id, fn, args });
  });
}

/**
 * First contact: derives the seeker's keys from the codename (Argon2id),
 * then the driver registers the mailbox, fetches a prekey bundle per intake
 * device, saves the encrypted state on the relay and deposits the opening
 * message with proof of work over a second connection — in the seeker
 * worker.
 * @param {{codename: string, topic: string, language: string, text: string, onProgress: Progress}} a
 * @returns {Promise<Conversation>}
 */
export function startConversation({ onProgress = () => {}, ...a }) {
  return guard(() => (IN_WORKER || !wasmModule ? startHere({ ...a, onProgress }) : seekerCall("startConversation", [a], onProgress)));
}

/**
 * Comes back with a codename (any browser), in the seeker worker.
 * @param {string} codename
 * @param {Progress} onProgress
 * @returns {Promise<Conversation>} rejects CoreError "codename-invalid" | "codename-not-found"
 */
export function comeBack(codename, onProgress = () => {}) {
  return guard(() => seekerCall("comeBack", [codename], onProgress));
}

/** @param {string} text @returns {Promise<Message>} the message as sent */
export function sendReply(text) {
  return guard(() => seekerCall("sendReply", [text]));
}

/**
 * Sends a file (File or Blob, at most 10 MB) in the open conversation, in
 * the seeker worker: read in slices, a photo cleaned of its metadata,
 * encrypted and uploaded chunk by chunk.
 * @param {Blob} file @param {Progress} onProgress ("upload", fraction)
 * @returns {Promise<Message>} rejects CoreError "file-too-large" | "file-quota" | "image-damaged" | …
 */
export function sendFile(file, onProgress = () => {}) {
  return guard(() => seekerCall("sendFile", [file], onProgress));
}

/**
 * Downloads a file of the conversation (checked whole before it is handed over).
 * @param {string} messageId @param {Progress} onProgress ("download", fraction)
 * @returns {Promise<Blob>}
 */
export function saveFile(messageId, onProgress = () => {}) {
  return guard(() => seekerCall("saveFile", [messageId], onProgress));
}

/**
 * Whether a file is a photo whose metadata the client removes before
 * sending (JPEG and PNG; the driver decides by the content).
 * @param {{type: string, name?: string}} file
 */
export function isCleanedPhoto(file) {
  const t = String(file?.type ?? "").toLowerCase();
  return t === "image/jpeg" || t === "image/png" || /\.(jpe?g|png)$/i.test(String(file?.name ?? ""));
}

/** The largest file that can be sent, in bytes (10 MiB). */
export const MAX_FILE_BYTES = 10 * 1024 * 1024;

/** Asks the team to delete the conversation, then deletes the mailbox and state on the relay. */
export function deleteEverything() {
  return guard(() => seekerCall("deleteEverything", []));
}

/** @param {(m: Message) => void} onMessage called for each counselor message arriving live */
export async function onSeekerMessage(onMessage) {
  seekerOnMessage = onMessage;
  if (seeker) seeker.onMessage = onMessage;
}

/**
 * Forgets every secret the module holds and closes the connections: the
 * worker is terminated at once (quick exit does not wait for it). Never throws.
 */
export function closeSeeker() {
  try {
    const w = seekerWorker;
    seekerWorker = null;
    w?.worker.terminate();
    for (const c of w?.calls.values() ?? []) c.reject(new CoreError("internal", "closed"));
  } catch {
    // quick exit must go on regardless
  }
  try {
    forgetSeeker();
  } catch {
    // quick exit must go on regardless
  }
}

/**
 * The worker's side (worker.js): takes the verified module and the
 * configuration from the page, then runs each command it is sent.
 */
export function serveSeekerWorker() {
  let ready = null;
  const post = (m) => globalThis.postMessage(m);
  seekerOnMessage = (message) => post({ type: "message", message });
  globalThis.onmessage = async ({ data: m }) => {
    if (m.type === "init") {
      ready = (async () => {
        const mod = await import("./pkg/northstar_web.js");
        const exports = await mod.default({ module_or_path: m.module });
        // The size of the module's linear memory, for the memory measurement
        // of docs/BENCHMARKS.md (a number: nothing secret).
        globalThis.northstarMemoryBytes = () => exports.memory.buffer.byteLength;
        wasm = mod;
        config = m.config;
      })();
      loading = ready;
      return;
    }
    if (m.type !== "call") return;
    const progress = (stage, fraction) => post({ type: "progress", id: m.id, stage, fraction });
    try {
      if (!ready) throw new CoreError("internal", "the worker was not given the module");
      await ready;
      const value = m.fn === "startConversation" ? await startHere({ ...m.args[0], onProgress: progress }) : WITH_PROGRESS.includes(m.fn) ? await HERE[m.fn](...m.args, progress) : await HERE[m.fn](...m.args);
      post({ type: "result", id: m.id, value });
    } catch (e) {
      post({ type: "error", id: m.id, error: errorFields(toCoreError(e)) });
    }
  };
}

// ---------------------------------------------------------------- counselor

let counselor = null; // {shell, onEvent}

/** @returns {Promise<boolean>} whether this browser holds a counselor device */
export async function counselorHasKeyStore() {
  const ks = await import("./keystore.js");
  return (await ks.loadDevice()) !== null;
}

/**
 * Checks a message with the core's one rule (not empty, not over the
 * limit) before anything is made or sent, when the module is loaded; every
 * command checks it again in the core in any case.
 * @param {string} text
 * @throws {CoreError} "empty-message" | "message-too-long" (with `max`, in bytes)
 */
export function checkMessage(text) {
  if (!wasm) {
    if (!String(text).trim()) throw new CoreError("empty-message");
    return;
  }
  try {
    wasm.check_message(text);
  } catch (e) {
    throw toCoreError(e);
  }
}

/**
 * Checks a new passphrase at once with the core's rule (counted in
 * characters), when the module is loaded; `counselorEnrol` checks it in any case.
 * @param {string} passphrase
 * @throws {CoreError} "passphrase-short"
 */
export function checkNewPassphrase(passphrase) {
  if (!wasm) return;
  try {
    wasm.check_new_passphrase(passphrase);
  } catch (e) {
    throw toCoreError(e);
  }
}

/**
 * Enrols this browser as a counselor device: fresh keys in the module, a key
 * store under `passphrase`, both sealed into IndexedDB.
 * @returns {Promise<string>} the public keys (hex) to give the administrator
 */
export function counselorEnrol(passphrase) {
  return guard(async () => {
    const ks = await import("./keystore.js");
    const { keyStore, sealed, publicKeys } = wasm.WebDriver.enrol((await pinned()).orgKey, passphrase);
    await ks.saveDevice({ keyStore, state: sealed });
    return publicKeys;
  });
}

/**
 * Unlocks the device (key store in IndexedDB, opened by the module with the
 * passphrase) and syncs: verified directory, registration (proof of work
 * required from depositors), prekeys topped up, everything stored read,
 * live deliveries from then on.
 * @param {string} passphrase
 * @returns {Promise<Counselor>} rejects CoreError "passphrase-wrong" | "no-key-store" | "not-in-directory"
 */
export function counselorUnlock(passphrase) {
  return guard(async () => {
    const ks = await import("./keystore.js");
    const stored = await ks.loadDevice();
    if (stored === null) throw new CoreError("no-key-store");
    counselorLock();
    const { orgKey, relays } = await pinned();
    await painted();
    const driver = wasm.WebDriver.unlock(relays, orgKey, stored.keyStore, stored.state, passphrase);
    const publicKeys = driver.publicKeys();
    const c = { shell: new Shell(driver, { device: true, generation: stored.generation }), onEvent: null };
    c.shell.onEvent = (ev) => {
      if (ev.event === "progress" && counselor === c) c.onTransfer?.(ev.command, ev.done, ev.total);
      if (counselor !== c || !c.onEvent) return;
      if (ev.event === "team") c.onEvent({ type: ev.kind, id: ev.id, topic: ev.topic, topicLabel: ev.topicLabel });
      else if (ev.event === "connection") c.onEvent({ type: "connection", state: ev.state });
    };
    // Another tab of this device saved changes (what arrived there, its
    // actions): the inbox may differ.
    c.shell.onReload = () => {
      if (counselor === c) c.onEvent?.({ type: "update" });
    };
    counselor = c;
    try {
      await c.shell.run((d, now) => d.sync(now));
      const me = c.shell.driver.whoami();
      return { name: me.name, teams: me.teams };
    } catch (e) {
      if (counselor === c) counselorLock();
      if (e.driverCode === "not-in-directory" || e.driverCode === "no-directory") {
        const err = new CoreError("not-in-directory", "this device is not in the team directory yet");
        err.publicKeys = publicKeys;
        throw err;
      }
      throw e;
    }
  });
}

/** Drops the unlocked keys from memory and closes the connection. Never throws. */
export function counselorLock() {
  const c = counselor;
  counselor = null;
  try {
    c?.shell.close();
  } catch {
    // locking must not fail
  }
}

function unlocked() {
  if (!counselor) throw new CoreError("internal", "the inbox is locked");
  return counselor;
}

/** After an await: the same device is still unlocked. */
function still(c) {
  if (counselor !== c) throw new CoreError("internal", "the inbox was locked");
  return c.shell.driver;
}

const itemOf = (x) => ({ ...x, updatedAt: iso(x.updatedAt) });

/** @param {"all"|"unread"|"claimed"|"resolved"} filter @returns {Promise<InboxItem[]>} */
/**
 * @param {string} filter status filter: all, unread, open, claimed, mine, resolved
 * @param {{order?: string, minors?: boolean, urgent?: boolean, forSomeoneElse?: boolean}} intake
 *   the core's order ("newest", "minors-first", "urgent-first") and intake filters
 */
export function listInbox(filter = "all", { order = "newest", minors = false, urgent = false, forSomeoneElse = false } = {}) {
  return guard(async () => {
    const keep = {
      all: () => true,
      unread: (x) => x.unread,
      open: (x) => x.status === "open" || x.status === "unread",
      claimed: (x) => x.status === "claimed",
      mine: (x) => x.mine,
      resolved: (x) => x.status === "resolved",
    }[filter] ?? (() => true);
    return unlocked().shell.driver.inboxSorted(order, minors, urgent, forSomeoneElse).filter(keep).map(itemOf);
  });
}

/** @param {string} id @param {string} lang for the intake summary's wording @returns {Promise<Case>} (marks it read) */
export function openCase(id, lang = "en") {
  return guard(async () => {
    const c = unlocked();
    await c.shell.input((d) => d.markRead(id));
    const x = still(c).openCase(id);
    const intake = still(c).caseIntake(id, lang);
    return {
      ...itemOf(x),
      intake,
      entries: x.entries.map((e) => ({ ...e, at: iso(e.at) })),
      // Retention: when the case leaves this device; until when a counselor kept it.
      deletesAt: iso(x.deletesAt),
      keptUntil: iso(x.keptUntil),
    };
  });
}

/** A team action, run by the driver: bundles for colleagues without a session, the action, save, deposit. */
/** Runs a team action; resolves to `{ partlyRefused }` when some copies were refused. */
function act(issue) {
  return guard(async () => {
    const shell = unlocked().shell;
    await shell.run(issue);
    return { partlyRefused: shell.partlyRefused };
  });
}

/**
 * Sends the seeker of conversation `id` a file (File or Blob, at most 10 MB).
 * @param {string} id @param {Blob} file @param {Progress} onProgress ("upload", fraction)
 */
export function sendFileToCase(id, file, onProgress = () => {}) {
  return guard(async () => {
    const c = unlocked();
    c.shell.file = file;
    try {
      await transfer(c.shell, c, "upload", (d, now) => d.counselorAttach(id, file.name || "file", file.type || "application/octet-stream", file.size, now), onProgress);
    } finally {
      c.shell.file = null;
    }
    return { partlyRefused: c.shell.partlyRefused };
  });
}

/**
 * Downloads the file of entry `messageId` of conversation `id`.
 * @returns {Promise<Blob>} the file, once whole and genuine
 */
export function saveCaseFile(id, messageId, onProgress = () => {}) {
  return guard(async () => {
    const c = unlocked();
    const entry = c.shell.driver.openCase(id).entries.find((e) => e.id === messageId);
    const parts = [];
    c.shell.onWrite = (_, data) => parts.push(data);
    try {
      await transfer(c.shell, c, "download", (d, now) => d.fetchAttachment(id, messageId, now), onProgress);
    } finally {
      c.shell.onWrite = null;
    }
    return new Blob(parts, { type: entry?.attachment?.type ?? "application/octet-stream" });
  });
}

/** @param {string} id */
export function claimCase(id) {
  return act((d, now) => d.claim(id, now));
}

/** @param {string} id @param {string} text */
export function replyToCase(id, text) {
  return act((d, now) => d.reply(id, text, now));
}

/** @param {string} id @param {string} counselorId */
export function handOffCase(id, counselorId) {
  return act((d, now) => d.handOff(id, Number(counselorId), now));
}

/** @param {string} id @param {string} text private note, team only */
export function addNote(id, text) {
  return act((d, now) => d.note(id, text, now));
}

/** @param {string} id @param {string} partnerId @param {string} message shown to the seeker */
export function referCase(id, partnerId, message) {
  return act((d, now) => d.refer(id, Number(partnerId), message, now));
}

/** @param {string} id */
export function resolveCase(id) {
  return act((d, now) => d.resolve(id, now));
}

/** @param {string} id */
export function reopenCase(id) {
  return act((d, now) => d.reopen(id, now));
}

/**
 * Resolves case `id` and deletes it for the whole team (its files on the
 * relay first). The page asks for confirmation before calling this.
 * @param {string} id
 */
export function purgeCase(id) {
  return act((d, now) => d.purge(id, now));
}

/**
 * The team's canned answers (shared between counselor devices as end-to-end
 * encrypted team events).
 * @returns {Promise<{id: string, title: string, text: string}[]>}
 */
export function cannedAnswers() {
  return guard(async () => unlocked().shell.driver.canned());
}

/**
 * Saves a canned answer and shares it with the colleagues of conversation `id`.
 * @param {string} id @param {string} title @param {string} text
 */
export function saveCannedAnswer(id, title, text) {
  return act((d, now) => d.saveCanned(id, title, text, now));
}

/**
 * @returns {Promise<{id: string, name: string}[]>} the other devices of the
 *   directory, fetched afresh (a relay that cannot be reached, or serves an
 *   older directory, leaves the verified one held in use)
 */
export function colleagues() {
  return guard(async () => {
    const c = unlocked();
    await c.shell.run((d, now) => d.directory(now)).catch(() => {});
    return still(c).colleagues();
  });
}

/** @returns {Promise<{id: string, name: string}[]>} */
export function partners() {
  return guard(async () => unlocked().shell.driver.partners());
}

/**
 * @param {(ev: {type: "message"|"update"|"canned"|"connection", id?: string, topic?: string, topicLabel?: string, state?: "reconnecting"|"open"}) => void} onEvent
 *   called when a message or a team-state change arrives over the WebSocket,
 *   and when the connection drops ("reconnecting") and is back ("open")
 */
export async function onInboxEvent(onEvent) {
  if (counselor) counselor.onEvent = onEvent;
}

/**
 * Searches the counselor inbox (issue 20 item 5), in the module, over what
 * this device decrypted: every word must match, case and accents ignored,
 * in messages, private notes, status or topic. Nothing goes to the relay;
 * the module keeps a folded copy of the inbox in memory while unlocked.
 * @param {string} query the words typed so far ("" lists the filtered inbox)
 * @param {"all"|"open"|"unread"|"claimed"|"mine"|"resolved"} filter
 * @returns {Promise<{total: number, items: (InboxItem & {match?: {field: string, before: string, matched: string, after: string}})[]}>}
 *   at most 50 items, most recent activity first; rejects CoreError "query-too-long"
 */
export function searchInbox(query, filter = "all") {
  return guard(async () => {
    const found = unlocked().shell.driver.searchInbox(query, filter);
    return { total: found.total, items: found.items.map(itemOf) };
  });
}

// ------------------------------------------------- retention (issue 20 item 4)

/**
 * Keeps case `id` past the organisation's retention until the end of day
 * `day` ("YYYY-MM-DD", UTC), for `reason`: an explicit choice the driver
 * logs on every device of the team.
 * @param {string} id @param {string} day @param {string} reason
 */
export function keepCase(id, day, reason) {
  const until = Date.parse(`${day}T00:00:00Z`) / 1000 + 86400;
  return act((d, now) => d.keep(id, Number.isFinite(until) ? until : 0, reason, now));
}

/** @returns {Promise<{id: string, by: string, at: string, until: string, reason: string}[]>} the device's keep log */
export function keepLog() {
  return guard(async () => unlocked().shell.driver.keepLog().map((k) => ({ ...k, at: iso(k.at), until: iso(k.until) })));
}
