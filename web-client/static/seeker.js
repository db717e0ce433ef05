// The seeker's page. Holds only in-memory state; never touches cookies,
// localStorage, sessionStorage, IndexedDB, the URL or the history.

import * as core from "./core.js";
import { STRINGS } from "./i18n.js";
import {
  announce,
  currentLanguage,
  formatDate,
  initLanguage,
  offerDownload,
  onLanguageChange,
  setupQuickExit,
  showScreen,
  t,
} from "./ui.js";

const $ = (id) => document.getElementById(id);

let state = freshState();

function freshState() {
  return { topics: null, topicsLoading: false, topic: null, answers: {}, codename: null, codenameLanguage: null, conversation: null, busy: false, file: null };
}

// -------------------------------------------------------------- messages

/** Shows the translated message `key` in `el` (kept translated on switch). */
function showMsg(el, key, vars) {
  if (vars) {
    delete el.dataset.i18n;
    el.textContent = t(key, vars);
  } else {
    el.dataset.i18n = key;
    el.textContent = t(key);
  }
  el.hidden = false;
}

function clearMsg(el) {
  delete el.dataset.i18n;
  el.textContent = "";
  el.hidden = true;
}

/** Shows the translated message for an error from the core in `el`. */
function showError(el, e) {
  if (e?.code === "codename-invalid") {
    // The core names what is wrong, never the words themselves.
    switch (e.reason) {
      case "word-count":
        return showMsg(el, "err.codenameWordCount", { expected: e.expected, got: e.got });
      case "unknown-word":
        return showMsg(el, "err.codenameUnknownWord", { position: e.position });
      case "wrong-word":
        return showMsg(el, "err.codenameWrongWord", { position: e.position });
      case "mismatch":
        return showMsg(el, "err.codenameMismatch");
    }
  }
  const key = errorKey(e);
  showMsg(el, key, key === "err.messageTooLong" ? { max: e?.max ?? 16384 } : undefined);
}

/**
 * Some of the team's devices could not take the message now (their mailbox
 * on the server is full); the others have it. Said plainly, or hidden.
 */
function showPartlyRefused(partly) {
  const el = $("conv-partly");
  if (partly && partly.refused > 0) showMsg(el, "conv.partlyRefused", { refused: partly.refused, of: partly.of });
  else clearMsg(el);
}

/** The message key for an error from the core. */
function errorKey(e) {
  if (e instanceof core.CoreUnavailable) return "err.core";
  switch (e?.code) {
    case "codename-invalid":
      return "err.codenameInvalid";
    case "codename-not-found":
      return "err.codenameNotFound";
    case "directory-expired":
      return "err.directoryExpired";
    case "network":
      return "err.network";
    case "busy":
      return "err.busy";
    case "empty-message":
      return "err.messageEmpty";
    case "message-too-long":
    case "too-large-for-relay":
      return "err.messageTooLong";
    default:
      return "err.generic";
  }
}

function coreFailed(e) {
  if (e instanceof core.CoreUnavailable) {
    if (e.reason === "no-webassembly") showScreen("screen-nowasm");
    else {
      if (e.reason === "release-invalid") {
        // The page refuses to run: say so in place of the module message.
        const span = $("core-banner").querySelector("[data-i18n='err.coreBanner']");
        if (span) {
          span.dataset.i18n = "err.releaseBanner";
          span.textContent = t("err.releaseBanner");
        }
        document.body.dataset.release = "refused";
      }
      $("core-banner").hidden = false;
    }
  }
}

// -------------------------------------------------------------- topics

function topicLabel(topic) {
  const key = `topic.${topic.id}`;
  return key in STRINGS.en ? t(key) : topic.label;
}

function renderTopics() {
  const list = $("topic-list");
  const chosen = state.topic?.id;
  list.replaceChildren();
  for (const topic of state.topics ?? []) {
    const label = document.createElement("label");
    label.className = "choice";
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "topic";
    input.value = topic.id;
    input.checked = topic.id === chosen;
    const span = document.createElement("span");
    span.textContent = topicLabel(topic);
    label.append(input, span);
    list.append(label);
  }
}

async function loadTopics() {
  if (state.topics || state.topicsLoading) return;
  state.topicsLoading = true;
  $("topic-loading").hidden = false;
  clearMsg($("topic-error"));
  try {
    const { topics, topicVisibleToRelay } = await core.listTopics();
    state.topics = topics;
    $("topic-visible").hidden = !topicVisibleToRelay;
    renderTopics();
  } catch (e) {
    showMsg($("topic-error"), errorKey(e));
    coreFailed(e);
  } finally {
    state.topicsLoading = false;
    $("topic-loading").hidden = true;
  }
}

// -------------------------------------------------------------- intake questions (issue 20)
//
// The topic's questions come from the signed directory, in every language,
// each worded twice: for the person themself and for someone helping
// another person. All are optional: "Skip this question" (the default) sends
// nothing, "Prefer not to say" sends that. The answers are kept in memory
// only, and travel inside the encrypted opening message.

/** Whether the person said they write for someone else. */
function forSomeoneElse() {
  const q = state.topic?.questions?.find((x) => x.meaning === "for_whom");
  return !!q && state.answers[q.id]?.choice === 2;
}

/** The text of a {en, es, fr, ht} object in the page's language (English if missing). */
function loc(l) {
  return l?.[currentLanguage()] || l?.en || "";
}

function choiceInput(type, name, value, label, checked, extra = {}) {
  const wrap = document.createElement("label");
  wrap.className = `choice${extra.quiet ? " choice-quiet" : ""}`;
  const input = document.createElement("input");
  input.type = type;
  input.name = name;
  input.value = value;
  input.checked = checked;
  for (const [k, v] of Object.entries(extra.data ?? {})) input.dataset[k] = v;
  const span = document.createElement("span");
  span.textContent = label;
  wrap.append(input, span);
  return wrap;
}

function renderQuestions() {
  const list = $("question-list");
  list.replaceChildren();
  const other = forSomeoneElse();
  $("questions-other").hidden = !other;
  for (const q of state.topic?.questions ?? []) {
    const a = state.answers[q.id];
    const fs = document.createElement("fieldset");
    fs.className = "question choices";
    fs.dataset.question = q.id;
    const legend = document.createElement("legend");
    legend.textContent = loc(other ? q.promptOther : q.prompt);
    fs.append(legend);
    const box = document.createElement("div");
    box.className = "choice-list";
    const name = `q-${q.id}`;
    const data = { question: String(q.id), meaning: q.meaning, kind: q.kind };
    if (q.kind === "multiple") {
      const hint = document.createElement("p");
      hint.className = "small muted";
      hint.textContent = t("q.multipleHint");
      fs.append(hint);
      for (const c of q.choices) box.append(choiceInput("checkbox", name, String(c.id), loc(c.label), !!a?.choices?.includes(c.id), { data }));
      box.append(choiceInput("checkbox", name, "declined", t("q.declined"), !!a?.declined, { data, quiet: true }));
    } else if (q.kind === "short_text") {
      const label = document.createElement("label");
      label.className = "label small";
      label.htmlFor = `${name}-text`;
      label.textContent = t("q.textLabel");
      const input = document.createElement("input");
      input.type = "text";
      input.id = `${name}-text`;
      input.className = "question-text";
      input.maxLength = 200;
      input.autocomplete = "off";
      input.value = a?.text ?? "";
      for (const [k, v] of Object.entries(data)) input.dataset[k] = v;
      box.append(label, input);
      box.append(choiceInput("checkbox", name, "declined", t("q.declined"), !!a?.declined, { data, quiet: true }));
    } else {
      const options = q.kind === "yes_no" ? [["yes", t("q.yes")], ["no", t("q.no")]] : q.choices.map((c) => [String(c.id), loc(c.label)]);
      const picked = a?.declined ? "declined" : a?.yes === true ? "yes" : a?.yes === false ? "no" : a?.choice !== undefined ? String(a.choice) : "";
      for (const [value, label] of options) box.append(choiceInput("radio", name, value, label, picked === value, { data }));
      box.append(choiceInput("radio", name, "declined", t("q.declined"), picked === "declined", { data, quiet: true }));
      box.append(choiceInput("radio", name, "", t("q.skip"), picked === "", { data, quiet: true }));
    }
    fs.append(box);
    list.append(fs);
  }
}

/** Rewords the questions in place (focus stays where it is) after "who are you writing for". */
function relabelQuestions() {
  const other = forSomeoneElse();
  $("questions-other").hidden = !other;
  for (const fs of document.querySelectorAll("#question-list .question")) {
    const q = state.topic?.questions?.find((x) => String(x.id) === fs.dataset.question);
    if (q) fs.querySelector("legend").textContent = loc(other ? q.promptOther : q.prompt);
  }
}

/** Reads the question an input belongs to back into `state.answers`. */
function readAnswer(input) {
  const id = Number(input.dataset.question);
  if (!Number.isInteger(id)) return;
  const name = `q-${id}`;
  const kind = input.dataset.kind;
  if (kind === "multiple" || kind === "short_text") {
    const boxes = [...document.querySelectorAll(`input[name="${name}"]`)];
    const declined = boxes.find((b) => b.value === "declined");
    // "Prefer not to say" and an answer exclude each other.
    if (input === declined && declined.checked) for (const b of boxes) if (b !== declined) b.checked = false;
    if (input !== declined && (input.checked || input.type === "text") && declined) declined.checked = false;
    if (kind === "short_text" && input === declined && declined.checked) $(`${name}-text`).value = "";
    const text = kind === "short_text" ? $(`${name}-text`).value.trim() : "";
    const chosen = boxes.filter((b) => b.checked && b.value !== "declined").map((b) => Number(b.value));
    if (declined?.checked) state.answers[id] = { declined: true };
    else if (kind === "short_text" && text) state.answers[id] = { text };
    else if (chosen.length) state.answers[id] = { choices: chosen };
    else delete state.answers[id];
    return;
  }
  const v = input.value;
  if (v === "") delete state.answers[id];
  else if (v === "declined") state.answers[id] = { declined: true };
  else if (v === "yes" || v === "no") state.answers[id] = { yes: v === "yes" };
  else state.answers[id] = { choice: Number(v) };
}

/** The answers as the core takes them: `[{question, …}]`, skipped ones left out. */
function answersForCore() {
  const asked = new Set((state.topic?.questions ?? []).map((q) => q.id));
  return Object.entries(state.answers)
    .filter(([id]) => asked.has(Number(id)))
    .map(([id, a]) => ({ question: Number(id), ...a }));
}

/** The write screen, worded for a helper when they write for someone else. */
function enterWrite() {
  const other = forSomeoneElse();
  for (const [id, self, helper] of [
    ["write-title", "write.title", "write.titleOther"],
    ["write-hint", "write.hint", "write.hintOther"],
  ]) {
    const el = $(id);
    el.dataset.i18n = other ? helper : self;
    el.textContent = t(el.dataset.i18n);
  }
  $("write-back").dataset.goto = state.topic?.questions?.length ? "screen-questions" : "screen-topic";
  showScreen("screen-write");
}

// -------------------------------------------------------------- codename

function renderCodename() {
  const ol = $("codename-words");
  ol.replaceChildren();
  if (!state.codename) return;
  for (const word of state.codename.split(/\s+/)) {
    const li = document.createElement("li");
    li.textContent = word;
    ol.append(li);
  }
  $("codename-status").hidden = true;
}

async function prepareCodename() {
  clearMsg($("codename-error"));
  // The codename is in the page's language; a new one if the language
  // changed before it was used (it is only shown, never kept, until sent).
  if (state.codename && state.codenameLanguage === currentLanguage()) return;
  state.codename = null;
  renderCodename();
  $("codename-status").hidden = false;
  try {
    const language = currentLanguage();
    state.codename = await core.generateCodename(language);
    state.codenameLanguage = language;
    renderCodename();
  } catch (e) {
    $("codename-status").hidden = true;
    showMsg($("codename-error"), errorKey(e));
    coreFailed(e);
  }
}

function syncSendEnabled() {
  // Not disabled (a disabled button cannot explain itself): dimmed until ticked.
  $("send-first").dataset.ready = String($("wrote-it-down").checked);
}

// -------------------------------------------------------------- progress

const STAGES = { derive: "progress.derive", pow: "progress.pow", send: "progress.send", open: "progress.open" };

function startProgress(titleKey, firstStage) {
  const title = $("progress-title");
  title.dataset.i18n = titleKey;
  title.textContent = t(titleKey);
  $("progress-bar").value = 0;
  showMsg($("progress-stage"), STAGES[firstStage]);
  showScreen("screen-progress");
}

function onProgress(stage, fraction) {
  if (STAGES[stage] && $("progress-stage").dataset.i18n !== STAGES[stage]) {
    showMsg($("progress-stage"), STAGES[stage]);
  }
  const f = Number(fraction);
  if (Number.isFinite(f)) $("progress-bar").value = Math.max(0, Math.min(100, Math.round(f * 100)));
}

// -------------------------------------------------------------- conversation

function renderMessage(m) {
  const li = document.createElement("li");
  li.className = `message from-${m.from === "seeker" ? "you" : "counselor"}`;
  const who = document.createElement("p");
  who.className = "who";
  who.dataset.i18n = m.from === "seeker" ? "conv.you" : "conv.counselor";
  who.textContent = t(who.dataset.i18n);
  const body = document.createElement("p");
  body.className = "body";
  body.textContent = m.attachment ? `${m.attachment.name} (${formatSize(m.attachment.size)})` : m.text;
  li.append(who, body);
  if (m.attachment) li.append(saveButton(m));
  if (m.at) {
    const time = document.createElement("p");
    time.className = "when";
    time.dataset.at = m.at;
    time.textContent = formatDate(m.at);
    li.append(time);
  }
  return li;
}

function renderConversation() {
  const conv = state.conversation;
  const ol = $("messages");
  ol.replaceChildren(...(conv?.messages ?? []).map(renderMessage));
  const hasAnswer = (conv?.messages ?? []).some((m) => m.from !== "seeker");
  $("conv-waiting").hidden = hasAnswer;
  refreshConversationText();
}

function refreshConversationText() {
  const conv = state.conversation;
  if (!conv) return;
  const topic = state.topics?.find((x) => x.id === conv.topic) ?? { id: conv.topic, label: conv.topicLabel ?? "" };
  const label = topicLabel(topic);
  $("conv-topic").textContent = label ? t("write.topic", { topic: label }) : "";
  $("conv-topic").hidden = !label;
  const date = conv.expiresAt ? formatDate(conv.expiresAt) : "";
  $("conv-expiry").textContent = date ? t("conv.expiry", { date }) : "";
  // The organisation's retention: the date every copy is deleted.
  if (conv.deletesAt && conv.retentionDays) {
    $("conv-expiry").textContent = t("st.deletes", { date: formatDate(conv.deletesAt), days: conv.retentionDays });
  }
  renderStatus();
  for (const el of document.querySelectorAll("#messages .when")) el.textContent = formatDate(el.dataset.at);
}

/** Where the question stands, from the team's encrypted receipts. */
function renderStatus() {
  const st = state.conversation?.status;
  const list = $("conv-status-list");
  if (!st) {
    $("conv-status").hidden = true;
    list.replaceChildren();
    return;
  }
  const lines = [];
  if (st.devices > 0) {
    lines.push(st.reached > 0 ? ["reached", t("st.reached", { n: st.reached, m: st.devices })] : ["reached", t("st.notReached")]);
  }
  if (st.read) lines.push(["read", t("st.read")]);
  if (st.answered) lines.push(["answered", t("st.answered")]);
  for (const p of st.referred ?? []) lines.push(["referred", t("st.referred", { name: p.name, contact: p.contact })]);
  if (st.resolved) lines.push(["resolved", t("st.resolved")]);
  list.replaceChildren(
    ...lines.map(([kind, text]) => {
      const li = document.createElement("li");
      li.dataset.status = kind;
      li.textContent = text;
      return li;
    }),
  );
  $("conv-status").hidden = lines.length === 0;
}

function enterConversation(conv, justSent) {
  state.conversation = conv;
  $("conv-sent").hidden = !justSent;
  showPartlyRefused(justSent ? conv.partlyRefused : null);
  renderConversation();
  showScreen("screen-conversation");
  core
    .onSeekerMessage((m) => {
      if (!state.conversation) return;
      if (m.status !== undefined) {
        // What the team's receipts say changed (live).
        state.conversation.status = m.status;
        renderStatus();
        return;
      }
      state.conversation.messages.push(m);
      $("messages").append(renderMessage(m));
      $("conv-waiting").hidden = true;
      announce(t("conv.newMessage"));
    })
    .catch(() => {}); // live delivery is a convenience; coming back works without it
}

// -------------------------------------------------------------- files

/** A size as people read it: "740 KB", "9.8 MB". */
function formatSize(bytes) {
  const n = Number(bytes) || 0;
  return n >= 1024 * 1024 ? `${(n / (1024 * 1024)).toFixed(1)} MB` : `${Math.max(1, Math.ceil(n / 1024))} KB`;
}

/** The message key for a file refusal. */
function fileErrorKey(e) {
  switch (e?.code) {
    case "file-too-large":
      return "file.errTooLarge";
    case "file-quota":
      return "file.errQuota";
    case "image-damaged":
      return "file.errImage";
    case "image-unsupported":
      return "file.errImageKind";
    case "file-unreadable":
      return "file.errUnreadable";
    case "file-damaged":
      return "file.errDamaged";
    case "file-gone":
      return "file.errGone";
    default:
      return errorKey(e);
  }
}

function fileProgress(key, fraction) {
  const bar = $("file-progress");
  bar.hidden = false;
  bar.value = Math.max(0, Math.min(100, Math.round(Number(fraction) * 100)));
  showMsg($("file-status"), key, { percent: bar.value });
}

function fileDone() {
  $("file-progress").hidden = true;
  clearMsg($("file-status"));
}

/** A "Save" button for a file of the conversation. */
function saveButton(m) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "btn btn-quiet";
  b.dataset.i18n = "file.save";
  b.textContent = t("file.save");
  b.setAttribute("aria-label", t("file.saveNamed", { name: m.attachment.name }));
  b.addEventListener("click", async () => {
    if (state.busy) return;
    state.busy = true;
    clearMsg($("file-error"));
    try {
      const blob = await core.saveFile(m.id, (_, f) => fileProgress("file.receiving", f));
      offerDownload(blob, m.attachment.name);
      announce(t("file.saved"));
    } catch (e) {
      showMsg($("file-error"), fileErrorKey(e));
    } finally {
      fileDone();
      state.busy = false;
    }
  });
  return b;
}

/** A file was picked (or photographed): say what will happen to it before sending. */
function fileChosen(input) {
  const file = input.files?.[0];
  clearMsg($("file-error"));
  if (!file) return;
  state.file = file;
  input.value = "";
  if (file.size > core.MAX_FILE_BYTES) {
    state.file = null;
    $("file-confirm").hidden = true;
    showMsg($("file-error"), "file.errTooLarge");
    return;
  }
  if (/^image\//i.test(file.type) && !core.isCleanedPhoto(file)) {
    // HEIC, WebP…: their hidden details cannot be removed (the module refuses them too).
    state.file = null;
    $("file-confirm").hidden = true;
    showMsg($("file-error"), "file.errImageKind");
    return;
  }
  $("file-chosen").textContent = `${file.name || t("file.photo")} (${formatSize(file.size)})`;
  showMsg($("file-notice"), core.isCleanedPhoto(file) ? "file.noticePhoto" : "file.noticeDocument");
  $("file-confirm").hidden = false;
  $("file-send").focus();
}

async function sendChosenFile() {
  const file = state.file;
  if (!file || state.busy) return;
  state.busy = true;
  $("file-confirm").hidden = true;
  clearMsg($("file-error"));
  fileProgress("file.sending", 0);
  try {
    const m = await core.sendFile(file, (_, f) => fileProgress("file.sending", f));
    state.conversation.messages.push(m);
    $("messages").append(renderMessage(m));
    announce(t("file.sent"));
    showPartlyRefused(m.partlyRefused);
  } catch (e) {
    showMsg($("file-error"), fileErrorKey(e));
  } finally {
    state.file = null;
    fileDone();
    state.busy = false;
  }
}

// -------------------------------------------------------------- clearing

/** Forgets everything this page holds (quick exit, close, after delete). */
function clearAll() {
  core.closeSeeker();
  const topics = state.topics;
  state = freshState();
  state.topics = topics; // the public directory, not the seeker's data
  for (const id of ["message", "reply", "codename-input", "file-pick", "file-camera"]) $(id).value = "";
  $("file-confirm").hidden = true;
  fileDone();
  $("wrote-it-down").checked = false;
  syncSendEnabled();
  for (const r of document.querySelectorAll('input[name="topic"]')) r.checked = false;
  $("codename-words").replaceChildren();
  $("question-list").replaceChildren();
  $("messages").replaceChildren();
  $("conv-topic").textContent = "";
  $("conv-expiry").textContent = "";
  $("conv-status-list").replaceChildren();
  $("conv-status").hidden = true;
  for (const el of document.querySelectorAll(".error")) clearMsg(el);
}

// -------------------------------------------------------------- wiring

function wire() {
  for (const b of document.querySelectorAll("[data-goto]")) {
    b.addEventListener("click", () => showScreen(b.dataset.goto));
  }

  $("start").addEventListener("click", () => {
    showScreen("screen-topic");
    loadTopics();
  });

  // An error goes away as soon as the person has fixed what it was about.
  $("topic-form").addEventListener("change", () => clearMsg($("topic-error")));
  $("message").addEventListener("input", () => {
    try {
      core.checkMessage($("message").value);
      clearMsg($("write-error"));
    } catch {
      // Still wrong: the message stays until it is fixed or sent again.
    }
  });
  $("codename-input").addEventListener("input", () => clearMsg($("comeback-error")));
  $("reply").addEventListener("input", () => {
    if ($("reply").value.trim()) clearMsg($("reply-error"));
  });

  $("topic-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const picked = document.querySelector('input[name="topic"]:checked');
    if (!picked) {
      if (state.topics) showMsg($("topic-error"), "topic.required");
      else loadTopics();
      return;
    }
    clearMsg($("topic-error"));
    const topic = state.topics.find((x) => x.id === picked.value);
    // Answers belong to the topic they were given for.
    if (state.topic?.id !== topic.id) state.answers = {};
    state.topic = topic;
    $("write-topic").textContent = t("write.topic", { topic: topicLabel(state.topic) });
    if (state.topic.questions?.length) {
      $("questions-topic").textContent = t("write.topic", { topic: topicLabel(state.topic) });
      renderQuestions();
      showScreen("screen-questions");
    } else {
      enterWrite();
    }
  });

  $("question-list").addEventListener("change", (ev) => {
    readAnswer(ev.target);
    // "Who are you writing for" changes the wording of the rest.
    if (ev.target.dataset.meaning === "for_whom") relabelQuestions();
  });
  $("questions-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    enterWrite();
  });
  $("questions-skip").addEventListener("click", () => {
    state.answers = {};
    renderQuestions();
    enterWrite();
  });

  $("write-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    // The core's rule, before a codename is made or anything is sent.
    try {
      core.checkMessage($("message").value);
    } catch (e) {
      if (e?.code === "empty-message") showMsg($("write-error"), "write.required");
      else showError($("write-error"), e);
      $("message").focus();
      return;
    }
    clearMsg($("write-error"));
    showScreen("screen-codename");
    prepareCodename();
  });

  $("wrote-it-down").addEventListener("change", () => {
    syncSendEnabled();
    if ($("wrote-it-down").checked) clearMsg($("codename-error"));
  });

  $("codename-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (state.busy) return;
    if (!state.codename) {
      await prepareCodename();
      return;
    }
    if (!$("wrote-it-down").checked) {
      showMsg($("codename-error"), "codename.mustConfirm");
      $("wrote-it-down").focus();
      return;
    }
    state.busy = true;
    startProgress("progress.sendTitle", "derive");
    try {
      const conv = await core.startConversation({
        codename: state.codename,
        topic: state.topic.id,
        language: currentLanguage(),
        text: $("message").value,
        answers: answersForCore(),
        onProgress,
      });
      // The codename is written down; the page forgets it and the draft.
      state.codename = null;
      $("codename-words").replaceChildren();
      $("message").value = "";
      state.answers = {};
      $("question-list").replaceChildren();
      $("wrote-it-down").checked = false;
      syncSendEnabled();
      announce(t("progress.done"));
      enterConversation(conv, true);
    } catch (e) {
      showScreen("screen-codename");
      showError($("codename-error"), e);
      coreFailed(e);
    } finally {
      state.busy = false;
    }
  });

  $("comeback-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (state.busy) return;
    const input = $("codename-input");
    const codename = input.value.trim().toLowerCase().split(/\s+/).join(" ");
    if (!codename) {
      showMsg($("comeback-error"), "comeback.required");
      input.focus();
      return;
    }
    clearMsg($("comeback-error"));
    state.busy = true;
    startProgress("progress.openTitle", "derive");
    try {
      const conv = await core.comeBack(codename, onProgress);
      input.value = "";
      enterConversation(conv, false);
    } catch (e) {
      showScreen("screen-comeback");
      showError($("comeback-error"), e);
      input.setAttribute("aria-invalid", "true");
      coreFailed(e);
    } finally {
      state.busy = false;
    }
  });
  $("codename-input").addEventListener("input", () => $("codename-input").removeAttribute("aria-invalid"));

  $("reply-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (state.busy) return;
    const text = $("reply").value;
    if (!text.trim()) {
      showMsg($("reply-error"), "reply.required");
      $("reply").focus();
      return;
    }
    clearMsg($("reply-error"));
    state.busy = true;
    announce(t("reply.sending"));
    try {
      const m = await core.sendReply(text);
      state.conversation.messages.push(m);
      $("messages").append(renderMessage(m));
      $("reply").value = "";
      announce(t("reply.sent"));
      showPartlyRefused(m.partlyRefused);
    } catch (e) {
      showError($("reply-error"), e);
    } finally {
      state.busy = false;
    }
  });

  $("file-pick").addEventListener("change", () => fileChosen($("file-pick")));
  $("file-camera").addEventListener("change", () => fileChosen($("file-camera")));
  $("file-send").addEventListener("click", sendChosenFile);
  $("file-cancel").addEventListener("click", () => {
    state.file = null;
    $("file-confirm").hidden = true;
  });

  $("close-conv").addEventListener("click", () => {
    clearAll();
    showScreen("screen-welcome");
  });

  $("delete-confirm").addEventListener("click", async () => {
    if (state.busy) return;
    state.busy = true;
    clearMsg($("delete-error"));
    announce(t("delete.deleting"));
    try {
      await core.deleteEverything();
      clearAll();
      showScreen("screen-deleted");
    } catch (e) {
      showMsg($("delete-error"), errorKey(e));
    } finally {
      state.busy = false;
    }
  });
}

function start() {
  initLanguage();
  setupQuickExit(clearAll);
  wire();
  syncSendEnabled();
  onLanguageChange(() => {
    if (state.topics) renderTopics();
    if (state.topic) $("write-topic").textContent = t("write.topic", { topic: topicLabel(state.topic) });
    if (state.topic) $("questions-topic").textContent = t("write.topic", { topic: topicLabel(state.topic) });
    if (state.topic?.questions?.length && $("question-list").childElementCount) renderQuestions();
    refreshConversationText();
    // A codename shown but not yet used follows the language: new words,
    // to be written down again.
    if (!$("screen-codename").hidden && !state.busy && state.codename && state.codenameLanguage !== currentLanguage()) {
      $("wrote-it-down").checked = false;
      syncSendEnabled();
      prepareCodename();
    }
  });

  if (!core.webAssemblySupported()) {
    showScreen("screen-nowasm");
    return;
  }
  // Focus stays at the top on first load: Tab reaches the skip link, then
  // Quick exit, before anything else.
  showScreen("screen-welcome", { focus: false });
  core
    .orgFingerprint()
    .then((fp) => {
      const el = $("fingerprint");
      delete el.dataset.i18n;
      el.textContent = fp;
    })
    .catch((e) => {
      showMsg($("fingerprint"), "fp.unavailable");
      coreFailed(e);
    });
}

start();
