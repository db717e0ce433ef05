// Counselor device key store: ONE opaque byte string in IndexedDB. The bytes
// are encrypted under the counselor's passphrase by the secure module (see
// core.js); this file only stores and loads them. The seeker page never
// imports this module: seekers get no IndexedDB at all.

const DB = "northstar-counselor";
const STORE = "keystore";
const KEY = "device";

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

/** @returns {Promise<Uint8Array|null>} the encrypted key store, or null when none */
export async function loadStore() {
  const value = await run("readonly", (s) => s.get(KEY));
  return value instanceof Uint8Array ? value : value ? new Uint8Array(value) : null;
}

/** @param {Uint8Array} bytes the encrypted key store, as the secure module produced it */
export function saveStore(bytes) {
  return run("readwrite", (s) => s.put(new Uint8Array(bytes), KEY));
}
