// Counselor device storage: one IndexedDB database, "northstar-counselor",
// holding opaque byte strings made by the secure module (see core.js):
//   "device"     — the key store: a random state key sealed under the
//                  counselor's passphrase (Argon2id);
//   "state"      — the device state (keys, sessions, directory, inbox)
//                  sealed under that state key, rewritten after every change;
//   "generation" — a counter written with "state" in the same transaction,
//                  so a tab can tell that another tab saved a newer state.
// This file only stores and loads bytes. The seeker page never imports it:
// seekers get no IndexedDB at all.

const DB = "northstar-counselor";
const STORE = "keystore";

let opened = null; // the open database, kept between transactions (one per input of the page)

function open() {
  if (!opened) {
    opened = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE);
      req.onsuccess = () => {
        const db = req.result;
        // Another version wants in, or the browser closed it: open afresh next time.
        db.onversionchange = () => {
          db.close();
          opened = null;
        };
        db.onclose = () => {
          opened = null;
        };
        resolve(db);
      };
      req.onerror = () => reject(req.error);
    });
    opened.catch(() => {
      opened = null;
    });
  }
  return opened;
}

/** Runs `fn(store)` in one transaction; resolves with what `fn` returns, read once the transaction completed. */
function run(mode, fn) {
  return open().then(
    (db) =>
      new Promise((resolve, reject) => {
        const tx = db.transaction(STORE, mode);
        const result = fn(tx.objectStore(STORE));
        tx.oncomplete = () => resolve(typeof result === "function" ? result() : result);
        tx.onerror = tx.onabort = () => reject(tx.error);
      }),
  );
}

/** Reads `keys` in one transaction: resolves with their values, in order. */
function read(keys) {
  return run("readonly", (s) => {
    const reqs = keys.map((k) => s.get(k));
    return () => reqs.map((r) => r.result);
  });
}

const asBytes = (v) => (v instanceof Uint8Array ? v : v ? new Uint8Array(v) : null);

/** @returns {Promise<{keyStore: Uint8Array, state: Uint8Array, generation: number}|null>} the sealed device, or null when none */
export async function loadDevice() {
  const [keyStore, state, generation] = await read(["device", "state", "generation"]);
  if (!keyStore || !state) return null;
  return { keyStore: asBytes(keyStore), state: asBytes(state), generation: Number(generation) || 0 };
}

/**
 * A new device: the key store and its first sealed state. The generation
 * still goes up, so a tab holding a replaced device sees the change.
 */
export function saveDevice({ keyStore, state }) {
  return run("readwrite", (s) => {
    const previous = s.get("generation");
    previous.onsuccess = () => {
      s.put(new Uint8Array(keyStore), "device");
      s.put(new Uint8Array(state), "state");
      s.put((Number(previous.result) || 0) + 1, "generation");
    };
  });
}

/** @returns {Promise<number>} the generation of the stored state (0 when none) */
export async function loadGeneration() {
  const [generation] = await read(["generation"]);
  return Number(generation) || 0;
}

/** @returns {Promise<{state: Uint8Array, generation: number}|null>} the stored sealed state */
export async function loadState() {
  const [state, generation] = await read(["state", "generation"]);
  if (!state) return null;
  return { state: asBytes(state), generation: Number(generation) || 0 };
}

/**
 * @param {Uint8Array} state the sealed device state, as the secure module produced it
 * @param {number} generation the counter stored with it (one more than the state it replaces)
 */
export function saveState(state, generation) {
  return run("readwrite", (s) => {
    s.put(new Uint8Array(state), "state");
    s.put(generation, "generation");
  });
}
