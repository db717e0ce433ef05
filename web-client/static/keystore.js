// Counselor device storage: one IndexedDB database, "northstar-counselor",
// holding two opaque byte strings made by the secure module (see core.js):
//   "device" — the key store: a random state key sealed under the
//              counselor's passphrase (Argon2id);
//   "state"  — the device state (keys, sessions, directory, inbox) sealed
//              under that state key, rewritten after every change.
// This file only stores and loads bytes. The seeker page never imports it:
// seekers get no IndexedDB at all.

const DB = "northstar-counselor";
const STORE = "keystore";

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function run(mode, fn) {
  return open().then(
    (db) =>
      new Promise((resolve, reject) => {
        const tx = db.transaction(STORE, mode);
        const req = fn(tx.objectStore(STORE));
        tx.oncomplete = () => {
          db.close();
          resolve(req.result);
        };
        tx.onerror = () => {
          db.close();
          reject(tx.error);
        };
      }),
  );
}

const asBytes = (v) => (v instanceof Uint8Array ? v : v ? new Uint8Array(v) : null);

/** @returns {Promise<{keyStore: Uint8Array, state: Uint8Array}|null>} the sealed device, or null when none */
export async function loadDevice() {
  const [keyStore, state] = await Promise.all([
    run("readonly", (s) => s.get("device")),
    run("readonly", (s) => s.get("state")),
  ]);
  if (!keyStore || !state) return null;
  return { keyStore: asBytes(keyStore), state: asBytes(state) };
}

/** A new device: the key store and its first sealed state. */
export function saveDevice({ keyStore, state }) {
  return run("readwrite", (s) => {
    s.put(new Uint8Array(keyStore), "device");
    return s.put(new Uint8Array(state), "state");
  });
}

/** @param {Uint8Array} state the sealed device state, as the secure module produced it */
export function saveState(state) {
  return run("readwrite", (s) => s.put(new Uint8Array(state), "state"));
}
