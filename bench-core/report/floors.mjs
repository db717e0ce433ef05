// What one ratchet message (encrypt + decrypt of 1 KiB) costs in primitives:
// the floor the ratchet cannot go below. Operation and primitive names are
// those of northstar_bench_core::OPERATIONS. Used by summary.mjs (native) and
// tests/browser/bench.js (wasm).
//
// Same direction, per message: the sender's KDF_CK (2 HMACs), the message
// key's HKDF (44 bytes), header seal, body seal; the receiver's header open
// (under HKr, first try), KDF_CK, HKDF, body open.
//
// Alternating, per message (every message is a DH ratchet step): on top of
// that, the sender's fresh ratchet key (key generation), DH and KDF_RK (HKDF,
// 96 bytes); the receiver's failed header open under HKr before NHKr opens
// it, DH and KDF_RK.
const SAME = [
  ["prim/hmac_sha256", 4],
  ["prim/hkdf_sha256_44", 2],
  ["prim/xchacha20poly1305_header_seal", 1],
  ["prim/xchacha20poly1305_header_open", 1],
  ["prim/chacha20poly1305_seal_1k", 1],
  ["prim/chacha20poly1305_open_1k", 1],
];
const STEP = [
  ["prim/x25519_keygen", 1],
  ["prim/x25519_dh", 2],
  ["prim/hkdf_sha256_96", 2],
  ["prim/xchacha20poly1305_header_open", 1],
];
export const FLOORS = {
  "core/ratchet_1k_same_direction": SAME,
  "core/ratchet_1k_alternating": [...SAME, ...STEP],
};

/** Floor of every ratchet operation, from `time(primitive)` (undefined when one is missing). */
export function floorOf(time) {
  const out = {};
  for (const [op, parts] of Object.entries(FLOORS)) {
    const ts = parts.map(([p, n]) => n * time(p));
    if (ts.every((t) => Number.isFinite(t))) out[op] = ts.reduce((a, b) => a + b, 0);
  }
  return out;
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
