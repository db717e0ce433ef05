// The ONE module that talks to client-core compiled to WebAssembly
// (web-client/static/pkg/northstar_web.js, written by wasm-bindgen from
// web-client/src/lib.rs).
//
// Every cryptographic and protocol operation happens inside the WebAssembly
// module: codenames, Argon2id, keys, PQXDH, the Double Ratchet, sealing,
// padding, proof of work, the signed directory, the encrypted state blobs and
// the relay frames. This file runs the *sequence* of relay requests (the
// same as the command-line client, cli/src/{seeker,counselor}.rs) over two
// kinds of WebSocket (relay.js): "mailbox", authenticated to the holder's
// mailbox, and "deposit", unauthenticated and opened afresh for each deposit,
// so the relay cannot tie a deposit to a mailbox. Nothing here fakes a result.
//
// The organisation key is pinned in config.json (same origin, written by the
// operator). The seeker page keeps nothing in browser storage; the counselor
// page keeps its sealed device in IndexedDB (keystore.js).

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
  /** @param {"no-webassembly"|"module-missing"|"export-missing"} reason */
  constructor(reason, detail = "") {
    super(`the secure module could not load (${reason}${detail ? `: ${detail}` : ""})`);
    this.name = "CoreUnavailable";
    this.reason = reason;
  }
}

export const ERROR_CODES = Object.freeze([
  "codename-invalid", // not seven words of the list
  "codename-not-found", // well formed, but no saved conversation (expired or deleted)
  "passphrase-wrong", // counselor key store did not decrypt
  "passphrase-short", // a new counselor passphrase under 8 characters
  "no-key-store", // this browser holds no counselor key store
  "not-in-directory", // this counselor device is not in the signed directory yet
  "claimed-by-other", // a colleague holds the conversation
  "not-configured", // config.json holds no organisation key
  "network", // relay unreachable
  "busy", // rate limited or over a limit: try later
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

function toCoreError(e) {
  if (e instanceof CoreError || e instanceof CoreUnavailable) return e;
  const message = typeof e === "string" ? e : String(e?.message ?? e);
  const code = (e && typeof e === "object" && e.code) || message.split(":")[0].trim();
  return new CoreError(code, message);
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

const EXPORTS = [
  "org_fingerprint",
  "generate_codename",
  "check_codename",
  "encode_frame",
  "decode_frame",
  "deposit_batch_hash",
  "pow_solve_range",
  "SeekerHandle",
  "CounselorHandle",
  "DirectoryHandle",
];

let wasm = null;
let loading = null;
let config = null;

/**
 * Loads and initialises the WebAssembly module and the pinned configuration once.
 * @returns {Promise<void>} rejects with CoreUnavailable
 */
export function loadCore() {
  if (!loading) {
    loading = (async () => {
      if (!webAssemblySupported()) throw new CoreUnavailable("no-webassembly");
      let mod;
      try {
        mod = await import("./pkg/northstar_web.js");
        await mod.default();
      } catch (e) {
        console.error("Northstar: the secure module could not load:", String(e?.message ?? e));
        throw new CoreUnavailable("module-missing");
      }
      for (const name of EXPORTS) {
        if (!(name in mod)) throw new CoreUnavailable("export-missing", name);
      }
      wasm = mod;
    })();
  }
  return loading;
}

/** The pinned organisation key from config.json (hex), checked by the module. */
async function orgKey() {
  await loadCore();
  if (!config) {
    let c = null;
    try {
      const res = await fetch("config.json", { cache: "no-store", credentials: "omit" });
      if (res.ok) c = await res.json();
    } catch {
      c = null;
    }
    const key = typeof c?.org_key === "string" ? c.org_key.trim() : "";
    if (!/^[0-9a-fA-F]{64}$/.test(key)) throw new CoreError("not-configured", "config.json holds no organisation key");
    // A fingerprint written beside the key must be the key's own: a mismatch
    // means a mistyped configuration, and nothing should be trusted.
    const written = typeof c?.fingerprint === "string" ? c.fingerprint.trim() : "";
    if (written && written !== wasm.org_fingerprint(key)) {
      throw new CoreError("not-configured", "config.json: the fingerprint does not match the organisation key");
    }
    config = { orgKey: key.toLowerCase() };
  }
  return config.orgKey;
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Capped exponential backoff with jitter: 0.5 s doubling to 30 s. */
const backoff = (attempt) => {
  const base = Math.min(30_000, 500 * 2 ** attempt);
  return base / 2 + Math.random() * (base / 2);
};
const iso = (secs) => (secs ? new Date(secs * 1000).toISOString() : undefined);
const nowSecs = () => Math.floor(Date.now() / 1000);
const tick = () => new Promise((r) => setTimeout(r, 0));
/**
 * Resolves after the next paint (or 100 ms in a background tab, where no
 * frame comes): the page shows its progress screen before a long
 * synchronous step (Argon2id in the module).
 */
const painted = () =>
  Promise.race([new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))), new Promise((r) => setTimeout(r, 100))]);

// ---------------------------------------------------------------- relay sessions

const REPLY_TIMEOUT_MS = 30_000;

function relayError(code) {
  if (["rate_limited", "server_busy", "quota_exceeded"].includes(code)) return new CoreError("busy", `relay: ${code}`);
  return new CoreError("internal", `relay: ${code}`);
}

/**
 * One WebSocket to the relay, with request/reply matching on the frame's
 * request id; deliveries (request id 0) go to `onDeliver`, or are buffered
 * until it is set. A dropped connection fails every pending request with
 * "network" and calls `onClosed`; the socket is not reopened underneath
 * (the mailbox session would have to authenticate again): the owner opens a
 * new Session, authenticates and subscribes (see resumeSeeker,
 * resumeCounselor).
 */
class Session {
  constructor(name) {
    this.nextId = 1;
    this.pending = new Map();
    this.buffered = [];
    this.onDeliver = null;
    this.onClosed = null;
    this.closed = false;
    this.hello = new Promise((resolve, reject) => {
      this.helloResolve = resolve;
      this.helloReject = reject;
    });
    this.hello.catch(() => {});
    this.channel = new RelayChannel(
      name,
      (bytes) => this.frame(bytes),
      (state) => {
        if (state === "closed") this.dropped();
      },
    );
  }

  static async open(name) {
    const s = new Session(name);
    s.channel.connect();
    const timer = setTimeout(() => s.dropped(), REPLY_TIMEOUT_MS);
    try {
      await s.hello;
    } finally {
      clearTimeout(timer);
    }
    return s;
  }

  frame(bytes) {
    let f;
    try {
      f = wasm.decode_frame(bytes);
    } catch {
      return; // a malformed frame changes nothing
    }
    if (f.type === "hello") {
      this.powChallenge = f.powChallenge;
      this.powDifficulty = f.powDifficulty;
      this.helloResolve();
      return;
    }
    if (f.requestId === 0) {
      if (f.type === "deliver") {
        if (this.onDeliver) this.onDeliver(f);
        else this.buffered.push(f);
      } else if (f.type === "error") {
        // A failure the relay could not tie to a request fails them all (as the CLI does).
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(relayError(f.code), f.code);
        }
        this.pending.clear();
      }
      return;
    }
    const p = this.pending.get(f.requestId);
    if (!p) return;
    this.pending.delete(f.requestId);
    clearTimeout(p.timer);
    if (f.type === "error") p.reject(relayError(f.code), f.code);
    else p.resolve(f);
  }

  /** Sends live deliveries to `fn`, starting with any that arrived while nobody listened. */
  setDeliver(fn) {
    this.onDeliver = fn;
    for (const d of this.buffered.splice(0)) fn(d);
  }

  dropped() {
    if (this.closed) return;
    this.closed = true;
    this.channel.close();
    const err = new CoreError("network", "the connection to the relay was lost");
    this.helloReject(err);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    if (this.onClosed) this.onClosed();
  }

  /**
   * Sends one request and waits for its reply. `build(id)` returns (or
   * resolves to) the frame bytes. Relay errors reject with `{code}` kept as `relayCode`.
   */
  async request(build) {
    if (this.closed) throw new CoreError("network", "not connected");
    const id = this.nextId;
    this.nextId = (this.nextId % 0xffffffff) + 1;
    const bytes = await build(id);
    if (this.closed) throw new CoreError("network", "not connected");
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CoreError("network", "the relay did not answer"));
      }, REPLY_TIMEOUT_MS);
      this.pending.set(id, {
        resolve,
        reject: (e, relayCode) => {
          if (relayCode) e.relayCode = relayCode;
          reject(e);
        },
        timer,
      });
      this.channel.send(bytes).catch(() => this.dropped());
    });
  }

  /** A request from a plain frame description (see `encode_frame` in the bridge). */
  ask(frame) {
    return this.request((id) => wasm.encode_frame(id, frame));
  }

  async challenge() {
    return (await this.ask({ type: "challenge" })).challenge;
  }

  async fetchDirectory(org) {
    try {
      return (await this.ask({ type: "fetch_directory", org })).directory;
    } catch (e) {
      if (e.relayCode === "not_found") throw new CoreError("not-configured", "the relay has no directory for this organisation yet");
      throw e;
    }
  }

  async fetchPrekeys(mailbox) {
    const f = await this.ask({ type: "fetch_prekeys", mailbox });
    return { mailbox, signedBundle: f.signedBundle, oneTime: f.oneTime };
  }

  /** Subscribes; resolves with the deliveries stored so far (live ones then go to onDeliver). */
  async subscribe() {
    const { pending } = await this.ask({ type: "subscribe" });
    while (this.buffered.length < pending && !this.closed) {
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.buffered.splice(0);
  }

  ack(ids) {
    return ids.length ? this.ask({ type: "ack", ids }) : Promise.resolve();
  }

  close() {
    this.onClosed = null;
    this.dropped();
  }
}

/**
 * Deposits envelopes over a fresh, unauthenticated connection, with the
 * proof of work solved in slices (the page stays responsive and shows
 * progress). `progress(fraction)` goes from 0 to 1 across the work.
 */
async function deposit(envelopes, progress = () => {}) {
  if (!envelopes.length) return;
  const s = await Session.open("deposit");
  try {
    const BATCH = 64;
    for (let i = 0; i < envelopes.length; i += BATCH) {
      const batch = envelopes.slice(i, i + BATCH);
      const hash = wasm.deposit_batch_hash(batch);
      const expected = 2 ** s.powDifficulty;
      const SLICE = 8192;
      let nonce;
      for (let start = 0; nonce === undefined; start += SLICE) {
        nonce = wasm.pow_solve_range(s.powChallenge, hash, s.powDifficulty, start, SLICE);
        progress(Math.min(0.95, 1 - Math.exp(-(start + SLICE) / expected)));
        if (nonce === undefined) await tick();
      }
      const done = await s.ask({ type: "deposit", nonce, envelopes: batch });
      s.powChallenge = done.powChallenge;
    }
    progress(1);
  } finally {
    s.close();
  }
}

// ---------------------------------------------------------------- seeker

/** How long the relay keeps a seeker's saved conversation after each visit (30 days). */
const STATE_TTL_HOURS = 30 * 24;

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

let directory = null; // DirectoryHandle (public data)
let seeker = null; // {handle, session, expiresAt, onMessage, queue}

async function verifiedDirectory(session) {
  const org = await orgKey();
  const bytes = await session.fetchDirectory(org);
  const dir = wasm.DirectoryHandle.verify(bytes, org);
  if (directory) directory.free();
  directory = dir;
  return dir;
}

function conversationOf(s, dir) {
  const c = s.handle.conversation(dir);
  const topic = dir.topics("en").find((t) => t.id === c?.team);
  return {
    topic: topic ? topicId(topic.slug) : "",
    topicLabel: topic?.label,
    expiresAt: iso(s.expiresAt),
    messages: (c?.messages ?? []).map(messageOf),
  };
}

const messageOf = (m) => ({ id: m.id, from: m.from, text: m.text, at: iso(m.at) });

async function saveSeeker(s) {
  const blob = s.handle.save();
  const f = await s.session.ask({ type: "put_state", ttlHours: STATE_TTL_HOURS, blob });
  s.expiresAt = f.expiresAt;
}

/** Live deliveries: open, save the state on the relay, then acknowledge (one at a time). */
function seekerLive(s) {
  s.session.setDeliver((d) => {
    s.queue = s.queue.then(async () => {
      if (seeker !== s) return;
      let m = null;
      try {
        m = s.handle.receive(d.envelope, directory);
      } catch {
        m = null; // unreadable: dropped, as the CLI does
      }
      await saveSeeker(s);
      await s.session.ack([d.id]);
      if (m && s.onMessage) s.onMessage(messageOf(m));
    }).catch(() => {});
  });
}

/**
 * Reopens a dropped mailbox connection: waits with capped backoff, opens,
 * authenticates with `authFrame(requestId, challenge)`, then hands the
 * session to `attach`; retries until it works or `current()` turns false
 * (the conversation was closed or the inbox locked).
 * @param {(id: number, challenge: Uint8Array) => Uint8Array} authFrame
 * @param {() => boolean} current
 * @param {(session: Session) => Promise<void>} attach
 */
async function reopenMailbox(authFrame, current, attach, attempt = 0) {
  await sleep(backoff(attempt));
  if (!current()) return;
  let session = null;
  try {
    session = await Session.open("mailbox");
    const challenge = await session.challenge();
    await session.request((id) => authFrame(id, challenge));
    if (!current()) return session.close();
    await attach(session);
  } catch {
    session?.close();
    if (current()) reopenMailbox(authFrame, current, attach, attempt + 1);
  }
}

/**
 * The mailbox connection of an open conversation dropped: reconnect,
 * authenticate, subscribe and read what arrived meanwhile.
 */
function resumeSeeker(s) {
  return reopenMailbox(
    (id, challenge) => s.handle.auth_frame(id, challenge),
    () => seeker === s,
    async (session) => {
      s.session = session;
      const stored = await session.subscribe();
      session.buffered.unshift(...stored);
      seekerLive(s);
      session.onClosed = () => resumeSeeker(s);
    },
  );
}

/** @returns {Promise<string>} the organisation's short fingerprint, to compare with the published one */
export function orgFingerprint() {
  return guard(async () => wasm.org_fingerprint(await orgKey()));
}

/** @returns {Promise<string>} a fresh codename (seven words), generated on this device */
export function generateCodename() {
  return guard(() => wasm.generate_codename());
}

/**
 * Topics from the signed, verified team directory.
 * @returns {Promise<{topics: Topic[], topicVisibleToRelay: boolean}>}
 */
export function listTopics() {
  return guard(async () => {
    const s = await Session.open("mailbox");
    try {
      const dir = await verifiedDirectory(s);
      return {
        topics: dir.topics("en").map((t) => ({ id: topicId(t.slug), label: t.label, team: t.id })),
        topicVisibleToRelay: dir.topic_visible_to_relay(),
      };
    } finally {
      s.close();
    }
  });
}

function forgetSeeker() {
  if (!seeker) return;
  const s = seeker;
  seeker = null;
  try {
    s.session?.close();
  } catch {
    // closing must not fail
  }
  try {
    s.handle?.free();
  } catch {
    // already freed
  }
}

/**
 * First contact: derives the seeker's keys from the codename (Argon2id),
 * registers the mailbox, fetches a prekey bundle per intake device, saves
 * the encrypted state on the relay, then deposits the opening message with
 * proof of work over a second connection.
 * @param {{codename: string, topic: string, language: string, text: string, onProgress: Progress}} a
 * @returns {Promise<Conversation>}
 */
export function startConversation({ codename, topic, language, text, onProgress = () => {} }) {
  return guard(async () => {
    forgetSeeker();
    const org = await orgKey();
    onProgress("derive", 0.05);
    await painted();
    const handle = wasm.SeekerHandle.derive(codename, org);
    const s = { handle, session: null, expiresAt: 0, onMessage: null, queue: Promise.resolve() };
    seeker = s;
    try {
      onProgress("derive", 0.3);
      s.session = await Session.open("mailbox");
      const dir = await verifiedDirectory(s.session);
      const t = dir.topics("en").find((x) => topicId(x.slug) === topic);
      if (!t) throw new CoreError("internal", "that topic is not in the directory");
      const challenge = await s.session.challenge();
      await s.session.request((id) => handle.register_frame(id, challenge));
      const bundles = [];
      for (const mailbox of dir.intake_mailboxes(t.id)) bundles.push(await s.session.fetchPrekeys(mailbox));
      const envelopes = handle.start(dir, t.id, language, text, bundles, nowSecs());
      // Saved before the deposit: a ratchet key is never used twice.
      await saveSeeker(s);
      onProgress("pow", 0.35);
      await deposit(envelopes, (f) => onProgress("pow", 0.35 + 0.55 * f));
      onProgress("send", 0.95);
      const stored = await s.session.subscribe();
      s.session.buffered.unshift(...stored);
      seekerLive(s);
      s.session.onClosed = () => resumeSeeker(s);
      onProgress("send", 1);
      return conversationOf(s, dir);
    } catch (e) {
      if (seeker === s) forgetSeeker();
      throw e;
    }
  });
}

/**
 * Comes back with a codename (any browser): derives the keys, authenticates
 * to the mailbox, restores the saved state and reads what arrived since.
 * @param {string} codename
 * @param {Progress} onProgress
 * @returns {Promise<Conversation>} rejects CoreError "codename-invalid" | "codename-not-found"
 */
export function comeBack(codename, onProgress = () => {}) {
  return guard(async () => {
    forgetSeeker();
    const org = await orgKey();
    wasm.check_codename(codename);
    onProgress("derive", 0.05);
    await painted();
    const handle = wasm.SeekerHandle.derive(codename, org);
    const s = { handle, session: null, expiresAt: 0, onMessage: null, queue: Promise.resolve() };
    seeker = s;
    try {
      onProgress("open", 0.4);
      s.session = await Session.open("mailbox");
      const dir = await verifiedDirectory(s.session);
      const challenge = await s.session.challenge();
      try {
        await s.session.request((id) => handle.auth_frame(id, challenge));
      } catch (e) {
        if (["unknown_mailbox", "auth_failed"].includes(e.relayCode)) {
          throw new CoreError("codename-not-found", "no conversation for this codename");
        }
        throw e;
      }
      let state;
      try {
        state = await s.session.ask({ type: "get_state" });
      } catch (e) {
        if (e.relayCode === "not_found") throw new CoreError("codename-not-found", "no saved conversation");
        throw e;
      }
      handle.restore(state.blob);
      s.expiresAt = state.expiresAt;
      onProgress("open", 0.7);
      const stored = await s.session.subscribe();
      const ids = [];
      for (const d of stored) {
        try {
          handle.receive(d.envelope, dir);
        } catch {
          // unreadable: skipped, as the CLI does
        }
        ids.push(d.id);
      }
      await saveSeeker(s);
      await s.session.ack(ids);
      seekerLive(s);
      s.session.onClosed = () => resumeSeeker(s);
      onProgress("open", 1);
      return conversationOf(s, dir);
    } catch (e) {
      if (seeker === s) forgetSeeker();
      throw e;
    }
  });
}

/** @param {string} text @returns {Promise<Message>} the message as sent */
export function sendReply(text) {
  return guard(async () => {
    const s = seeker;
    if (!s?.session) throw new CoreError("internal", "no conversation open");
    const envelopes = s.handle.write(text, nowSecs());
    await saveSeeker(s);
    await deposit(envelopes);
    const msgs = s.handle.conversation(directory)?.messages ?? [];
    return messageOf(msgs[msgs.length - 1]);
  });
}

/** @param {(m: Message) => void} onMessage called for each counselor message arriving live */
export async function onSeekerMessage(onMessage) {
  if (seeker) seeker.onMessage = onMessage;
}

/** Asks the team to delete the conversation, then deletes the mailbox and state on the relay. */
export function deleteEverything() {
  return guard(async () => {
    const s = seeker;
    if (!s?.session) throw new CoreError("internal", "no conversation open");
    await deposit(s.handle.request_deletion(nowSecs()));
    await s.session.ask({ type: "delete_mailbox" });
    forgetSeeker();
  });
}

/** Forgets every secret the module holds and closes the connections. Never throws. */
export function closeSeeker() {
  try {
    forgetSeeker();
  } catch {
    // quick exit must go on regardless
  }
}

// ---------------------------------------------------------------- counselor

/** Below this many one-time prekeys on the relay, unlocking uploads more. */
const PREKEY_LOW_WATER = 20;
/** Unlocking tops the relay up to this many one-time prekeys. */
const PREKEY_TARGET = 100;

let counselor = null; // {handle, session, onEvent, queue, saving}

/** @returns {Promise<boolean>} whether this browser holds a counselor device */
export async function counselorHasKeyStore() {
  const ks = await import("./keystore.js");
  return (await ks.loadDevice()) !== null;
}

/**
 * Enrols this browser as a counselor device: fresh keys in the module, a key
 * store under `passphrase`, both sealed into IndexedDB.
 * @returns {Promise<string>} the public keys (hex) to give the administrator
 */
export function counselorEnrol(passphrase) {
  return guard(async () => {
    const ks = await import("./keystore.js");
    const handle = wasm.CounselorHandle.generate(await orgKey());
    try {
      const keyStore = handle.create_key_store(passphrase);
      await ks.saveDevice({ keyStore, state: handle.seal_state() });
      return handle.public_hex();
    } finally {
      handle.free();
    }
  });
}

function persistCounselor(c) {
  c.saving = c.saving.then(async () => {
    if (counselor !== c) return;
    const ks = await import("./keystore.js");
    await ks.saveState(c.handle.seal_state());
  });
  return c.saving;
}

/** Opens deliveries, saves, then acknowledges them (a crash means a redelivery, dropped as a duplicate). */
async function counselorReceive(c, deliveries) {
  const events = [];
  for (const d of deliveries) {
    try {
      const ev = c.handle.receive(d.envelope);
      if (ev) events.push(ev);
    } catch {
      // unreadable: skipped, as the CLI does
    }
  }
  if (deliveries.length) {
    await persistCounselor(c);
    await c.session.ack(deliveries.map((d) => d.id));
  }
  return events;
}

/**
 * Fetches the directory again so colleagues and partners the administrator
 * added since unlocking are known. The module refuses a rollback or a
 * forgery; then, as when the relay cannot be reached, the directory held
 * stays in use (it is verified).
 */
async function refreshDirectory(c) {
  try {
    const bytes = await c.session.fetchDirectory(c.handle.org_hex());
    if (counselor === c) c.handle.set_directory(bytes);
  } catch {
    // keep the verified directory already held
  }
}

/** Subscribes the unlocked device's session: stored deliveries, then live ones. */
async function counselorSubscribe(c) {
  const session = c.session;
  const pending = await session.subscribe();
  await counselorReceive(c, pending);
  session.setDeliver((d) => {
    c.queue = c.queue
      .then(async () => {
        if (counselor !== c || c.session !== session) return;
        const events = await counselorReceive(c, [d]);
        for (const ev of events) c.onEvent?.(ev);
      })
      .catch(() => {});
  });
  session.onClosed = () => {
    if (counselor !== c) return;
    c.onEvent?.({ type: "connection", state: "reconnecting" });
    resumeCounselor(c);
  };
}

/** The unlocked device's connection dropped: reconnect with backoff, authenticate, subscribe. */
function resumeCounselor(c) {
  return reopenMailbox(
    (id, challenge) => c.handle.auth_frame(id, challenge),
    () => counselor === c,
    async (session) => {
      c.session = session;
      await counselorSubscribe(c);
      c.onEvent?.({ type: "connection", state: "open" });
    },
  );
}

/**
 * Unlocks the device (key store in IndexedDB, opened by the module with the
 * passphrase) and syncs: verified directory, register (proof of work
 * required from depositors), prekeys topped up, everything stored read,
 * live deliveries subscribed.
 * @param {string} passphrase
 * @returns {Promise<Counselor>} rejects CoreError "passphrase-wrong" | "no-key-store" | "not-in-directory"
 */
export function counselorUnlock(passphrase) {
  return guard(async () => {
    const ks = await import("./keystore.js");
    const stored = await ks.loadDevice();
    if (stored === null) throw new CoreError("no-key-store");
    counselorLock();
    await painted();
    const handle = wasm.CounselorHandle.unlock(stored.keyStore, stored.state, passphrase);
    const c = { handle, session: null, onEvent: null, queue: Promise.resolve(), saving: Promise.resolve() };
    counselor = c;
    try {
      c.session = await Session.open("mailbox");
      const org = handle.org_hex();
      let dirBytes;
      try {
        dirBytes = await c.session.fetchDirectory(org);
      } catch (e) {
        if (e.code !== "not-configured") throw e;
      }
      if (dirBytes) handle.set_directory(dirBytes);
      if (!dirBytes || !handle.in_directory()) {
        const err = new CoreError("not-in-directory", "this device is not in the team directory yet");
        err.publicKeys = handle.public_hex();
        throw err;
      }
      const challenge = await c.session.challenge();
      await c.session.request((id) => handle.register_frame(id, challenge));
      const held = (await c.session.request((id) => handle.prekeys_frame(id, 0))).oneTimeCount;
      if (held < PREKEY_LOW_WATER) {
        await c.session.request(async (id) => {
          const bytes = handle.prekeys_frame(id, PREKEY_TARGET - held);
          // The new one-time prekey secrets are kept before the relay can hand them out.
          await persistCounselor(c);
          return bytes;
        });
      }
      await persistCounselor(c);
      await counselorSubscribe(c);
      const me = handle.whoami();
      return { name: me.name, teams: me.teams };
    } catch (e) {
      if (counselor === c) counselorLock();
      throw e;
    }
  });
}

/** Drops the unlocked keys from memory and closes the connection. Never throws. */
export function counselorLock() {
  const c = counselor;
  counselor = null;
  if (!c) return;
  try {
    c.session?.close();
  } catch {
    // locking must not fail
  }
  // Let a pending save finish with the handle before freeing it.
  c.saving.finally(() => {
    try {
      c.handle.free();
    } catch {
      // already freed
    }
  });
}

function unlocked() {
  if (!counselor) throw new CoreError("internal", "the inbox is locked");
  return counselor;
}

const itemOf = (x) => ({ ...x, updatedAt: iso(x.updatedAt) });

/** @param {"all"|"unread"|"claimed"|"resolved"} filter @returns {Promise<InboxItem[]>} */
export function listInbox(filter = "all") {
  return guard(async () => {
    const keep = {
      all: () => true,
      unread: (x) => x.unread,
      open: (x) => x.status === "open" || x.status === "unread",
      claimed: (x) => x.status === "claimed",
      mine: (x) => x.mine,
      resolved: (x) => x.status === "resolved",
    }[filter] ?? (() => true);
    return unlocked().handle.inbox().filter(keep).map(itemOf);
  });
}

/** @param {string} id @returns {Promise<Case>} (marks it read) */
export function openCase(id) {
  return guard(async () => {
    const c = unlocked();
    const x = c.handle.open_case(id);
    persistCounselor(c).catch(() => {});
    return { ...itemOf(x), entries: x.entries.map((e) => ({ ...e, at: iso(e.at) })) };
  });
}

/** A team action: bundles for colleagues without a session, the action, save, deposit. */
function act(id, run) {
  return guard(async () => {
    const c = unlocked();
    await refreshDirectory(c);
    const bundles = [];
    for (const mailbox of c.handle.missing_bundles(id)) bundles.push(await c.session.fetchPrekeys(mailbox));
    const envelopes = run(c.handle, bundles, nowSecs());
    if (counselor !== c) throw new CoreError("internal", "the inbox was locked");
    // Saved before sending: a ratchet key is never used twice.
    await persistCounselor(c);
    await deposit(envelopes);
  });
}

/** @param {string} id */
export function claimCase(id) {
  return act(id, (h, b, now) => h.claim(id, b, now));
}

/** @param {string} id @param {string} text */
export function replyToCase(id, text) {
  return act(id, (h, b, now) => h.reply(id, text, b, now));
}

/** @param {string} id @param {string} counselorId */
export function handOffCase(id, counselorId) {
  return act(id, (h, b, now) => h.hand_off(id, Number(counselorId), b, now));
}

/** @param {string} id @param {string} text private note, team only */
export function addNote(id, text) {
  return act(id, (h, b, now) => h.note(id, text, b, now));
}

/** @param {string} id @param {string} partnerId @param {string} message shown to the seeker */
export function referCase(id, partnerId, message) {
  return act(id, (h, b, now) => h.refer(id, Number(partnerId), message, b, now));
}

/** @param {string} id */
export function resolveCase(id) {
  return act(id, (h, b, now) => h.resolve(id, b, now));
}

/** @param {string} id */
export function reopenCase(id) {
  return act(id, (h, b, now) => h.reopen(id, b, now));
}

/**
 * The team's canned answers (shared between counselor devices as end-to-end
 * encrypted team events).
 * @returns {Promise<{id: string, title: string, text: string}[]>}
 */
export function cannedAnswers() {
  return guard(async () => unlocked().handle.canned());
}

/**
 * Saves a canned answer and shares it with the colleagues of conversation `id`.
 * @param {string} id @param {string} title @param {string} text
 */
export function saveCannedAnswer(id, title, text) {
  return act(id, (h, b, now) => h.add_canned(id, title, text, b, now));
}

/** @returns {Promise<{id: string, name: string}[]>} the other devices of the directory (fetched afresh) */
export function colleagues() {
  return guard(async () => {
    const c = unlocked();
    await refreshDirectory(c);
    return c.handle.colleagues();
  });
}

/** @returns {Promise<{id: string, name: string}[]>} */
export function partners() {
  return guard(async () => unlocked().handle.partners());
}

/**
 * @param {(ev: {type: "message"|"update"|"connection", id?: string, topicLabel?: string, state?: "reconnecting"|"open"}) => void} onEvent
 *   called when a message or a team-state change arrives over the WebSocket,
 *   and when the connection drops ("reconnecting") and is back ("open")
 */
export async function onInboxEvent(onEvent) {
  if (counselor) counselor.onEvent = onEvent;
}
