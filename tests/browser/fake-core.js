// TEST DOUBLE of web-client/static/pkg/northstar_web.js, served only by the
// browser tests (through Playwright request interception) so that the page's
// screens and its use of the core.js contract can be exercised before the
// real wasm-bindgen bridge exists. It implements NO cryptography and NO
// protocol: it returns canned data with the shapes documented in core.js.
// It is never part of the site.

const CODENAME = "harbor lantern meadow copper violet summit orchard";
const wait = (ms) => new Promise((r) => setTimeout(r, ms));
const gate = () => globalThis.__northstarTestGate ?? Promise.resolve();

const topics = [
  { id: "minors", label: "Unaccompanied minors" },
  { id: "border", label: "Border crossing" },
  { id: "stca", label: "Safe Third Country Agreement" },
  { id: "prior-asylum", label: "Earlier asylum claims" },
  { id: "us-citizens", label: "U.S. citizens" },
  { id: "newcomers", label: "Newcomer services in Canada" },
];

let seeker = null;

export default async function init() {}

export function org_fingerprint() {
  return "7F3A 91C2 0D5E 44B8 · E6A1 2F90 B37C 5D14";
}

export function generate_codename() {
  return CODENAME;
}

export async function list_topics() {
  return { topics, topicVisibleToRelay: false };
}

function conversation(text, topic) {
  return {
    topic,
    expiresAt: "2027-01-08T15:00:00Z",
    messages: [{ id: "m1", from: "seeker", text, at: "2026-11-27T14:00:00Z" }],
  };
}

export async function seeker_start(codename, topic, language, text, onProgress) {
  if (codename !== CODENAME) throw new Error("codename-invalid: not the generated codename");
  onProgress("derive", 0.1);
  await wait(20);
  onProgress("pow", 0.45);
  await gate();
  onProgress("send", 0.9);
  seeker = conversation(text, topic);
  return structuredClone(seeker);
}

export async function seeker_open(codename, onProgress) {
  onProgress("derive", 0.2);
  await wait(20);
  if (codename.split(" ").length !== 7) throw new Error("codename-invalid: seven words expected");
  if (codename !== CODENAME) throw new Error("codename-not-found: no saved state");
  onProgress("open", 0.8);
  seeker = conversation(
    "I crossed into the U.S. two years ago and I am afraid of being detained. My sister lives in Montreal. Is Canada an option for me and my son?",
    "stca",
  );
  seeker.messages.push({
    id: "m2",
    from: "counselor",
    text:
      "Thank you for writing to us. You did the right thing by asking before you travel.\n\n" +
      "Because you entered the U.S. first, the Safe Third Country Agreement may apply at the land border, " +
      "but there are exceptions for family members in Canada. Your sister living in Montreal may matter a lot. " +
      "Could you tell us whether she is a Canadian citizen or a permanent resident?",
    at: "2026-11-29T10:00:00Z",
  });
  return structuredClone(seeker);
}

export async function seeker_reply(text) {
  return { id: `r${Date.now()}`, from: "seeker", text, at: "2026-11-30T09:00:00Z" };
}

export function seeker_subscribe() {}

export async function seeker_delete() {
  seeker = null;
}

export function seeker_close() {
  seeker = null;
}

// ------------------------------------------------------------- counselor

const cases = [
  {
    id: "c1", topic: "minors", topicLabel: "Unaccompanied minors", language: "es", status: "unread", mine: false,
    preview: "Tengo 16 años y estoy solo en Texas. No sé a quién…", updatedAt: "2026-11-27T13:00:00Z",
    entries: [{ id: "e1", kind: "seeker", text: "Tengo 16 años y estoy solo en Texas. No sé a quién puedo pedir ayuda.", at: "2026-11-27T13:00:00Z" }],
  },
  {
    id: "c2", topic: "stca", topicLabel: "Safe Third Country Agreement", language: "en", status: "claimed", mine: true, claimedBy: "Amara",
    preview: "My sister lives in Montreal. Is Canada an option…", updatedAt: "2026-11-27T11:00:00Z",
    entries: [
      { id: "e1", kind: "seeker", text: "I crossed into the U.S. two years ago and I am afraid of being detained. My sister lives in Montreal. Is Canada an option for me and my son?", at: "2026-11-26T18:00:00Z" },
      { id: "e2", kind: "event", text: "Amara claimed this conversation", at: "2026-11-27T09:00:00Z" },
      { id: "e3", kind: "note", author: "Amara", text: "Family-member exception likely applies: ask about the sister's status.", at: "2026-11-27T09:05:00Z" },
      { id: "e4", kind: "counselor", author: "Amara", text: "Thank you for writing to us. Could you tell us whether your sister is a Canadian citizen or a permanent resident?", at: "2026-11-27T11:00:00Z" },
    ],
  },
  {
    id: "c3", topic: "prior-asylum", topicLabel: "Earlier asylum claims", language: "ht", status: "claimed", mine: false, claimedBy: "Jean",
    preview: "Mwen te deja mande azil Ozetazini an 2023…", updatedAt: "2026-11-26T16:00:00Z",
    entries: [{ id: "e1", kind: "seeker", text: "Mwen te deja mande azil Ozetazini an 2023. Èske m ka toujou ale Kanada?", at: "2026-11-26T16:00:00Z" }],
  },
  {
    id: "c4", topic: "newcomers", topicLabel: "Newcomer services in Canada", language: "fr", status: "resolved", mine: false, claimedBy: "Lucie",
    preview: "Nous sommes arrivés à Montréal la semaine dernière…", updatedAt: "2026-11-24T10:00:00Z",
    entries: [{ id: "e1", kind: "seeker", text: "Nous sommes arrivés à Montréal la semaine dernière. Où trouver un hébergement ?", at: "2026-11-24T10:00:00Z" }],
  },
];

export async function counselor_unlock(store, passphrase) {
  if (!(store instanceof Uint8Array)) throw new Error("internal: store must be bytes");
  if (passphrase !== "correct horse") throw new Error("passphrase-wrong: did not decrypt");
  return { name: "Amara", teams: topics.slice(0, 3) };
}
export function counselor_lock() {}
export async function counselor_inbox(filter) {
  const strip = ({ entries, ...rest }) => rest;
  return cases.filter((c) => filter === "all" || c.status === filter).map(strip);
}
export async function counselor_open(id) {
  return structuredClone(cases.find((c) => c.id === id));
}
export async function counselor_claim(id) {
  Object.assign(cases.find((c) => c.id === id), { status: "claimed", mine: true, claimedBy: "Amara" });
}
export async function counselor_resolve(id) {
  cases.find((c) => c.id === id).status = "resolved";
}
export async function counselor_reply(id, text) {
  cases.find((c) => c.id === id).entries.push({ id: `x${Date.now()}`, kind: "counselor", author: "Amara", text, at: "2026-11-27T15:00:00Z" });
}
export async function counselor_note(id, text) {
  cases.find((c) => c.id === id).entries.push({ id: `n${Date.now()}`, kind: "note", author: "Amara", text, at: "2026-11-27T15:00:00Z" });
}
export async function counselor_hand_off() {}
export async function counselor_refer() {}
export async function counselor_canned() {
  return [
    { id: "a1", title: "Thank you and next steps", text: "Thank you for trusting us with your question. A counselor will look at your situation carefully." },
    { id: "a2", title: "Family-member exception", text: "If you have a family member in Canada, you may be exempt from the Safe Third Country Agreement." },
  ];
}
export async function counselor_colleagues() {
  return [{ id: "jean", name: "Jean" }, { id: "lucie", name: "Lucie" }];
}
export async function counselor_partners() {
  return [{ id: "p1", name: "Montreal newcomer shelter network" }];
}
export function counselor_subscribe() {}
