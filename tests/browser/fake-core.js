// TEST DOUBLE of web-client/static/core.js, served only by the browser tests
// (through Playwright request interception) for tests of PURE UI behaviour —
// screens, language switching, quick exit, keyboard use, progress display —
// that need no protocol. It implements NO cryptography and NO protocol and
// talks to no relay: it returns canned data with the shapes core.js
// documents. Everything protocol-related is tested against the real module
// and the real relay in e2e.test.js. It is never part of the site.

// Nine words of nine letters: the longest English codename words, to test
// that the page never breaks one.
const CODENAME = "abdominal backtrack dashboard education fireplace gladiator hamburger important landscape";
const wait = (ms) => new Promise((r) => setTimeout(r, ms));
const gate = () => globalThis.__northstarTestGate ?? Promise.resolve();

export class CoreUnavailable extends Error {
  constructor(reason) {
    super(`the secure module could not load (${reason})`);
    this.name = "CoreUnavailable";
    this.reason = reason;
  }
}

export class CoreError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "CoreError";
    this.code = code;
  }
}

export function webAssemblySupported() {
  return typeof WebAssembly === "object";
}

export async function loadCore() {}

const topics = [
  { id: "minors", label: "Unaccompanied minors" },
  { id: "border", label: "Border crossing" },
  { id: "stca", label: "Safe Third Country Agreement" },
  { id: "prior-asylum", label: "Earlier asylum claims" },
  { id: "us-citizens", label: "U.S. citizens" },
  { id: "newcomers", label: "Newcomer services in Canada" },
];

/** The core's message rule, as core.js documents it (emptiness only here). */
export function checkMessage(text) {
  if (!String(text).trim()) throw new CoreError("empty-message");
}

export async function orgFingerprint() {
  return "FAKE 0000 TEST 0000 · DOUBLE 0000";
}

export async function generateCodename(_language) {
  return CODENAME;
}

export async function listTopics() {
  return { topics, topicVisibleToRelay: false };
}

function conversation(text, topic) {
  return {
    topic,
    expiresAt: "2027-01-08T15:00:00Z",
    messages: [{ id: "m1", from: "seeker", text, at: "2026-11-27T14:00:00Z" }],
  };
}

export async function startConversation({ codename, topic, text, onProgress }) {
  if (codename !== CODENAME) throw new CoreError("codename-invalid");
  onProgress("derive", 0.1);
  await wait(20);
  onProgress("pow", 0.45);
  await gate();
  onProgress("send", 0.9);
  return conversation(text, topic);
}

export async function comeBack(codename, onProgress) {
  onProgress("derive", 0.2);
  await wait(20);
  if (codename !== CODENAME) throw new CoreError("codename-not-found");
  const c = conversation("My sister lives in Montreal. Is Canada an option for me?", "stca");
  c.messages.push({ id: "m2", from: "counselor", text: "Is your sister a citizen or a permanent resident?", at: "2026-11-29T10:00:00Z" });
  return c;
}

export async function sendReply(text) {
  return { id: `r${Date.now()}`, from: "seeker", text, at: "2026-11-30T09:00:00Z" };
}

export async function onSeekerMessage() {}
export async function deleteEverything() {}
export function closeSeeker() {}
