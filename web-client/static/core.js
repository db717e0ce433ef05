// The ONE module that talks to client-core compiled to WebAssembly
// (web-client/static/pkg/northstar_web.js, written by wasm-bindgen).
//
// Every cryptographic and protocol operation happens inside the WebAssembly
// module: codenames, Argon2id, keys, PQXDH, the Double Ratchet, sealing,
// padding, proof of work, the signed directory, the encrypted state blobs and
// the relay frames. This file only forwards calls and maps errors. When the
// module, WebAssembly itself, or one bridge export is missing, functions throw
// CoreUnavailable and the page shows a calm "the secure module could not
// load" message. Nothing here fakes a result.
//
// Bridge exports expected from pkg/northstar_web.js (wasm-bindgen, snake_case):
//   default init()                                  → Promise (loads the .wasm)
//   set_transport(transport)                        → void, once after init (optional)
//   org_fingerprint()                               → string
//   generate_codename()                             → string (7 words, space separated)
//   list_topics()                                   → Promise<{topics: Topic[], topicVisibleToRelay: boolean}>
//   seeker_start(codename, topic, language, text, onProgress) → Promise<Conversation>
//   seeker_open(codename, onProgress)               → Promise<Conversation>
//   seeker_reply(text)                              → Promise<Message>
//   seeker_subscribe(onMessage)                     → void
//   seeker_delete()                                 → Promise<void>
//   seeker_close()                                  → void (zeroizes; never throws)
//   counselor_unlock(storeBytes, passphrase, persist) → Promise<Counselor>
//   counselor_lock()                                → void
//   counselor_inbox(filter)                         → Promise<InboxItem[]>
//   counselor_open(id)                              → Promise<Case>
//   counselor_claim(id) / counselor_resolve(id)     → Promise<void>
//   counselor_reply(id, text)                       → Promise<void>
//   counselor_hand_off(id, counselorId)             → Promise<void>
//   counselor_note(id, text)                        → Promise<void>
//   counselor_refer(id, partnerId, message)         → Promise<void>
//   counselor_canned(language)                      → Promise<{id, title, text}[]>
//   counselor_colleagues()                          → Promise<{id, name}[]>
//   counselor_partners()                            → Promise<{id, name}[]>
//   counselor_subscribe(onEvent)                    → void
// Errors: the bridge rejects with an Error (or string) whose `code` property,
// or message prefix before ":", is one of ERROR_CODES below.

import { createTransport } from "./relay.js";

/**
 * @typedef {{id: string, label: string}} Topic
 * @typedef {{id: string, from: "seeker"|"counselor", text: string, at?: string}} Message
 * @typedef {{topic: string, expiresAt: string, messages: Message[]}} Conversation
 *   expiresAt: ISO 8601 date-time (rounded to the hour by the relay)
 * @typedef {{name: string, teams: Topic[]}} Counselor
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
  "codename-invalid", // not seven words of the list, or a checksum failed
  "codename-not-found", // well formed, but no saved conversation (expired or deleted)
  "passphrase-wrong", // counselor key store did not decrypt
  "no-key-store", // this browser holds no counselor key store
  "network", // relay unreachable
  "busy", // rate limited or over a limit: try later
  "internal",
]);

/** A failure reported by the secure module, with a stable `code`. */
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

let wasm = null;
let loading = null;
let transport = null;

/**
 * Loads and initialises the WebAssembly module once.
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
      wasm = mod;
      if (typeof wasm.set_transport === "function") {
        transport = createTransport();
        wasm.set_transport(transport);
      }
    })();
  }
  return loading;
}

async function call(name, ...args) {
  await loadCore();
  const fn = wasm[name];
  if (typeof fn !== "function") throw new CoreUnavailable("export-missing", name);
  try {
    return await fn(...args);
  } catch (e) {
    throw toCoreError(e);
  }
}

// ---------------------------------------------------------------- seeker

/** @returns {Promise<string>} the organisation's short fingerprint, to compare with the published one */
export function orgFingerprint() {
  return call("org_fingerprint");
}

/** @returns {Promise<string>} a fresh codename (seven words), generated on this device */
export function generateCodename() {
  return call("generate_codename");
}

/**
 * Topics from the signed, verified team directory.
 * @returns {Promise<{topics: Topic[], topicVisibleToRelay: boolean}>}
 *   topicVisibleToRelay: the organisation narrowed the intake set, so the relay learns the team
 */
export function listTopics() {
  return call("list_topics");
}

/**
 * First contact: derives the seeker's keys from the codename (Argon2id), solves
 * the proof of work, sends the first message to the intake set and saves the
 * encrypted state on the relay.
 * @param {{codename: string, topic: string, language: string, text: string, onProgress: Progress}} a
 * @returns {Promise<Conversation>}
 */
export function startConversation({ codename, topic, language, text, onProgress }) {
  return call("seeker_start", codename, topic, language, text, onProgress);
}

/**
 * Comes back with a codename (any browser): derives the keys, fetches and
 * decrypts the saved state and any new messages.
 * @param {string} codename
 * @param {Progress} onProgress
 * @returns {Promise<Conversation>} rejects CoreError "codename-invalid" | "codename-not-found"
 */
export function comeBack(codename, onProgress) {
  return call("seeker_open", codename, onProgress);
}

/** @param {string} text @returns {Promise<Message>} the message as sent */
export function sendReply(text) {
  return call("seeker_reply", text);
}

/** @param {(m: Message) => void} onMessage called for each counselor message arriving live */
export function onSeekerMessage(onMessage) {
  return call("seeker_subscribe", onMessage);
}

/** Deletes the saved state and mailbox on the relay now. @returns {Promise<void>} */
export function deleteEverything() {
  return call("seeker_delete");
}

/** Forgets every secret the module holds and closes the connections. Never throws. */
export function closeSeeker() {
  try {
    if (wasm && typeof wasm.seeker_close === "function") wasm.seeker_close();
  } catch {
    // quick exit must go on regardless
  }
  if (transport) transport.closeAll();
}

// ---------------------------------------------------------------- counselor

/** @returns {Promise<boolean>} whether this browser holds a counselor key store */
export async function counselorHasKeyStore() {
  const ks = await import("./keystore.js");
  return (await ks.loadStore()) !== null;
}

/**
 * Unlocks the device key store (kept in IndexedDB, encrypted under the
 * passphrase by the secure module; this file never sees a key).
 * @param {string} passphrase
 * @returns {Promise<Counselor>} rejects CoreError "passphrase-wrong" | "no-key-store"
 */
export async function counselorUnlock(passphrase) {
  const ks = await import("./keystore.js");
  await loadCore();
  const store = await ks.loadStore();
  if (store === null) throw new CoreError("no-key-store");
  return call("counselor_unlock", store, passphrase, (bytes) => ks.saveStore(bytes));
}

/** Drops the unlocked keys from memory. Never throws. */
export function counselorLock() {
  try {
    if (wasm && typeof wasm.counselor_lock === "function") wasm.counselor_lock();
  } catch {
    // locking must not fail
  }
}

/** @param {"all"|"unread"|"claimed"|"resolved"} filter @returns {Promise<InboxItem[]>} */
export function listInbox(filter) {
  return call("counselor_inbox", filter);
}

/** @param {string} id @returns {Promise<Case>} */
export function openCase(id) {
  return call("counselor_open", id);
}

/** @param {string} id */
export function claimCase(id) {
  return call("counselor_claim", id);
}

/** @param {string} id @param {string} text */
export function replyToCase(id, text) {
  return call("counselor_reply", id, text);
}

/** @param {string} id @param {string} counselorId */
export function handOffCase(id, counselorId) {
  return call("counselor_hand_off", id, counselorId);
}

/** @param {string} id @param {string} text private note, team only */
export function addNote(id, text) {
  return call("counselor_note", id, text);
}

/** @param {string} id @param {string} partnerId @param {string} message shown to the seeker */
export function referCase(id, partnerId, message) {
  return call("counselor_refer", id, partnerId, message);
}

/** @param {string} id */
export function resolveCase(id) {
  return call("counselor_resolve", id);
}

/** @param {string} language @returns {Promise<{id: string, title: string, text: string}[]>} */
export function cannedAnswers(language) {
  return call("counselor_canned", language);
}

/** @returns {Promise<{id: string, name: string}[]>} */
export function colleagues() {
  return call("counselor_colleagues");
}

/** @returns {Promise<{id: string, name: string}[]>} */
export function partners() {
  return call("counselor_partners");
}

/**
 * @param {(ev: {type: "message"|"update", id: string, topicLabel: string}) => void} onEvent
 *   called when a message or a team-state change arrives over the WebSocket
 */
export function onInboxEvent(onEvent) {
  return call("counselor_subscribe", onEvent);
}
