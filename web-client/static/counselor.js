// The counselor inbox. Keys stay inside the secure module (core.js); the page
// holds the decrypted view in memory only while unlocked, and forgets it on
// lock (button or idle timeout).

import * as core from "./core.js";
import { LANGUAGES } from "./i18n.js";
import { announce, currentLanguage, formatDate, initLanguage, offerDownload, onLanguageChange, showScreen, t } from "./ui.js";

// The inbox runs only from the binary the counselor installed (`northstar
// counselor web`, on 127.0.0.1), which also gives the organisation key and
// the relay URLs; never from a page a relay serves.
core.useLocalConfig();

const $ = (id) => document.getElementById(id);

let me = null; // {name, teams}
let filter = "all";
// The intake order and filters (issue 20), applied by the core.
let intakeView = { order: "newest", minors: false, urgent: false, forSomeoneElse: false };
let items = [];
// The inbox search: the words typed, and what the last search found.
let query = "";
let searchTotal = 0;
let searchSeq = 0;
let current = null; // the open Case
let canned = [];
let idleTimer = null;
let busy = false;

function showMsg(el, key, vars) {
  el.textContent = t(key, vars);
  el.dataset.shown = key;
  if (vars) delete el.dataset.i18n;
  else el.dataset.i18n = key;
  el.hidden = false;
}

function clearMsg(el) {
  delete el.dataset.i18n;
  delete el.dataset.shown;
  el.textContent = "";
  el.hidden = true;
}

function errorKey(e) {
  if (e instanceof core.CoreUnavailable) return "err.core";
  switch (e?.code) {
    case "passphrase-wrong":
      return "c.wrongPassphrase";
    case "no-key-store":
      return "c.noKeyStore";
    case "passphrase-short":
      return "c.passphraseShort";
    case "not-in-directory":
      return "c.notInDirectory";
    case "claimed-by-other":
      return "c.claimedByOther";
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
    else $("core-banner").hidden = false;
  }
}

// Counselors see the team's name from the signed directory, not the
// seeker-facing wording of the topic.
function topicName(item) {
  return item.topicLabel || item.topic;
}

function languageName(code) {
  return LANGUAGES.find((l) => l.code === code)?.name ?? code;
}

// ------------------------------------------------------------ lock / unlock

function resetIdle() {
  if (!me) return;
  clearTimeout(idleTimer);
  const meta = document.querySelector('meta[name="northstar-idle-minutes"]');
  const minutes = Math.max(1, Number(meta?.content) || 10);
  idleTimer = setTimeout(() => lock("c.lockedIdle"), minutes * 60_000);
}

function lock(reasonKey) {
  core.counselorLock();
  clearTimeout(idleTimer);
  me = null;
  items = [];
  current = null;
  canned = [];
  clearSearch();
  for (const f of document.querySelectorAll("textarea, input[type=password]")) f.value = "";
  $("case-list").replaceChildren();
  $("entries").replaceChildren();
  $("case").hidden = true;
  $("pane-empty").hidden = false;
  $("lock").hidden = true;
  delete $("conn").dataset.i18n;
  $("conn").textContent = "";
  document.body.classList.remove("case-open");
  if (reasonKey) showMsg($("unlock-info"), reasonKey);
  showScreen("screen-unlock");
}

async function unlock(ev) {
  ev.preventDefault();
  if (busy) return;
  const pass = $("passphrase");
  if (!pass.value) {
    pass.focus();
    return;
  }
  busy = true;
  clearMsg($("unlock-error"));
  $("unlock-button").setAttribute("aria-disabled", "true");
  announce(t("c.unlocking"));
  try {
    me = await core.counselorUnlock(pass.value);
    pass.value = "";
    clearMsg($("unlock-info"));
    $("unlock-keys").hidden = true;
    $("lock").hidden = false;
    renderWhoami();
    showScreen("screen-inbox");
    resetIdle();
    await Promise.all([loadInbox(), loadLists()]);
    core.onInboxEvent(onEvent).catch(() => {});
  } catch (e) {
    me = null;
    showMsg($("unlock-error"), errorKey(e));
    $("to-enrol").hidden = e?.code !== "no-key-store";
    $("unlock-keys").hidden = !e?.publicKeys;
    $("unlock-keys-text").value = e?.publicKeys ?? "";
    coreFailed(e);
    pass.select();
  } finally {
    busy = false;
    $("unlock-button").setAttribute("aria-disabled", "false");
  }
}

async function enrol(ev) {
  ev.preventDefault();
  if (busy) return;
  const [p1, p2] = [$("enrol-pass"), $("enrol-pass2")];
  clearMsg($("enrol-error"));
  try {
    core.checkNewPassphrase(p1.value);
  } catch (e) {
    showMsg($("enrol-error"), errorKey(e));
    p1.focus();
    return;
  }
  if (p1.value !== p2.value) {
    showMsg($("enrol-error"), "c.enrolMismatch");
    p2.focus();
    return;
  }
  busy = true;
  $("enrol-button").setAttribute("aria-disabled", "true");
  try {
    const keys = await core.counselorEnrol(p1.value);
    p1.value = "";
    p2.value = "";
    $("enrol-form").hidden = true;
    $("enrol-keys").value = keys;
    $("enrol-done").hidden = false;
    $("enrol-keys").focus();
  } catch (e) {
    showMsg($("enrol-error"), errorKey(e));
    coreFailed(e);
  } finally {
    busy = false;
    $("enrol-button").setAttribute("aria-disabled", "false");
  }
}

function renderWhoami() {
  $("whoami").textContent = me ? t("c.signedIn", { name: me.name }) : "";
}

// ------------------------------------------------------------ inbox

async function loadInbox() {
  const seq = ++searchSeq;
  const words = query.trim();
  try {
    let found;
    if (words) {
      // In the module, over what this device decrypted; nothing goes to the relay.
      const r = await core.searchInbox(words, filter);
      found = r.items;
      searchTotal = r.total;
    } else {
      found = await core.listInbox(filter, intakeView);
    }
    // A later keystroke already started another search: its result wins.
    if (seq !== searchSeq) return;
    items = found;
    clearMsg($("inbox-error"));
  } catch (e) {
    if (seq !== searchSeq) return;
    items = [];
    searchTotal = 0;
    showMsg($("inbox-error"), e?.code === "query-too-long" ? "c.search.tooLong" : errorKey(e));
  }
  renderInbox();
}

/** The count under the search field, and the empty-list wording. */
function renderSearchCount() {
  const el = $("search-count");
  const searching = Boolean(query.trim());
  if (!searching || !me) {
    clearMsg(el);
  } else if (searchTotal > items.length) {
    showMsg(el, "c.search.more", { shown: items.length, total: searchTotal });
  } else if (items.length > 0) {
    showMsg(el, "c.search.count", { count: searchTotal });
  } else {
    clearMsg(el);
  }
  const empty = $("inbox-empty");
  const key = searching ? "c.search.none" : "c.empty";
  empty.dataset.i18n = key;
  empty.textContent = t(key);
}

/** Where a search matched: "In a private note: … <mark>word</mark> …". */
function matchLine(m) {
  const line = document.createElement("span");
  line.className = `preview match match-${m.field}`;
  const where = document.createElement("span");
  where.className = "match-field";
  where.textContent = `${t(`c.search.in.${m.field}`)}: `;
  const mark = document.createElement("mark");
  mark.textContent = m.matched;
  line.append(where, document.createTextNode(m.before), mark, document.createTextNode(m.after));
  return line;
}

function clearSearch() {
  query = "";
  searchTotal = 0;
  $("search").value = "";
  $("search-clear").hidden = true;
  clearMsg($("search-count"));
}

function renderInbox() {
  const ul = $("case-list");
  ul.replaceChildren();
  for (const item of items) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    // Unread whatever the status (a claimed or reopened case with a new message too).
    b.className = `case-item${item.unread ? " is-unread" : ""}`;
    b.setAttribute("aria-current", String(current?.id === item.id));
    const row = document.createElement("span");
    row.className = "row";
    const topic = document.createElement("span");
    topic.className = "topic";
    topic.textContent = topicName(item);
    const status = document.createElement("span");
    status.className = `status status-${item.status}`;
    status.textContent = t(`c.status.${item.status}`);
    row.append(topic, status);
    const preview = document.createElement("span");
    preview.className = "preview";
    preview.textContent = item.preview ?? "";
    const badges = intakeBadges(item.intake);
    const when = document.createElement("span");
    when.className = "preview";
    when.textContent = [formatDate(item.updatedAt), item.claimedBy ? t("c.claimedBy", { name: item.claimedBy }) : ""]
      .filter(Boolean)
      .join(" · ");
    b.append(row, preview, when);
    if (item.match) b.append(matchLine(item.match));
    if (badges) b.append(badges);
    b.addEventListener("click", () => openCase(item.id));
    li.append(b);
    ul.append(li);
  }
  $("inbox-empty").hidden = items.length > 0;
  renderSearchCount();
}

async function loadLists() {
  const fill = (select, list) => {
    select.replaceChildren(
      ...list.map((x) => {
        const o = document.createElement("option");
        o.value = x.id;
        o.textContent = x.title ?? x.name;
        return o;
      }),
    );
  };
  const [c, p, a] = await Promise.allSettled([core.colleagues(), core.partners(), core.cannedAnswers(currentLanguage())]);
  fill($("colleague"), c.status === "fulfilled" ? c.value : []);
  fill($("partner"), p.status === "fulfilled" ? p.value : []);
  canned = a.status === "fulfilled" ? a.value : [];
  fill($("canned"), canned);
  // No canned answers configured: no empty picker.
  $("canned").closest(".tool-row").hidden = canned.length === 0;
}

// ------------------------------------------------------------ one conversation

async function openCase(id) {
  try {
    current = await core.openCase(id, currentLanguage());
  } catch (e) {
    showMsg($("inbox-error"), errorKey(e));
    return;
  }
  clearMsg($("case-error"));
  renderCase();
  loadLists(); // colleagues and partners as the directory stands now
  $("pane-empty").hidden = true;
  $("case").hidden = false;
  document.body.classList.add("case-open");
  for (const b of document.querySelectorAll(".case-item")) b.setAttribute("aria-current", "false");
  // Opening marked it read: the list shows the status the pane shows.
  await loadInbox();
  $("case-title").focus();
}

function renderCase() {
  if (!current) return;
  $("case-title").textContent = topicName(current);
  const status = $("case-status");
  status.className = `status status-${current.status}`;
  status.textContent = t(`c.status.${current.status}`);
  $("case-claimed").textContent = current.claimedBy ? t("c.claimedBy", { name: current.claimedBy }) : "";
  $("case-language").textContent = current.language ? t("c.language", { lang: languageName(current.language) }) : "";
  $("claim").hidden = current.mine || current.status === "resolved";
  $("resolve").hidden = current.status === "resolved";
  $("reopen").hidden = current.status !== "resolved";
  $("purge-confirm-box").hidden = true;
  renderRetention();
  renderIntake(current.intake);
  const ol = $("entries");
  ol.replaceChildren();
  for (const e of current.entries ?? []) {
    const li = document.createElement("li");
    const kind = { seeker: "from-counselor", counselor: "from-you", note: "entry-note", event: "entry-event" }[e.kind];
    li.className = `message ${kind ?? ""}`;
    const who = document.createElement("p");
    who.className = "who";
    const label = { seeker: t("c.seeker"), note: t("c.note"), event: t("c.event") }[e.kind];
    who.textContent = e.kind === "counselor" ? e.author ?? "" : e.author && e.kind === "note" ? `${label} · ${e.author}` : label;
    const body = document.createElement("p");
    body.className = "body";
    body.textContent = e.attachment ? `${e.attachment.name} (${e.attachment.type}, ${Math.max(1, Math.ceil(e.attachment.size / 1024))} KB)` : e.text;
    const when = document.createElement("p");
    when.className = "when";
    when.textContent = formatDate(e.at);
    li.append(who, body, when);
    if (e.attachment) li.append(saveFileButton(current.id, e));
    ol.append(li);
  }
}

/** When the case leaves this device, whether a counselor kept it, and the keep log. */
function renderRetention() {
  const kept = current?.keptUntil && current.keptUntil === current.deletesAt;
  $("case-retention").textContent = !current?.deletesAt
    ? ""
    : kept
      ? t("c.keptUntil", { date: formatDate(current.keptUntil) })
      : t("c.deletesAt", { date: formatDate(current.deletesAt) });
  core.keepLog().then(
    (log) => {
      const ul = $("keep-log");
      if (!log.length) {
        const li = document.createElement("li");
        li.textContent = t("c.keepLogEmpty");
        ul.replaceChildren(li);
        return;
      }
      ul.replaceChildren(
        ...log.map((k) => {
          const li = document.createElement("li");
          li.textContent = t("c.keepLogEntry", { date: formatDate(k.at), until: formatDate(k.until), by: k.by, reason: k.reason });
          return li;
        }),
      );
    },
    () => {},
  );
}

/** The message key for a file refusal. */
function fileErrorKey(e) {
  return (
    {
      "file-too-large": "file.errTooLarge",
      "file-quota": "file.errQuota",
      "image-damaged": "file.errImage",
      "image-unsupported": "file.errImageKind",
      "file-unreadable": "file.errUnreadable",
      "file-damaged": "file.errDamaged",
      "file-gone": "file.errGone",
    }[e?.code] ?? errorKey(e)
  );
}

function caseFileProgress(key, fraction) {
  const bar = $("case-file-progress");
  bar.hidden = false;
  bar.value = Math.max(0, Math.min(100, Math.round(Number(fraction) * 100)));
  showMsg($("case-file-status"), key, { percent: bar.value });
}

function caseFileDone() {
  $("case-file-progress").hidden = true;
  clearMsg($("case-file-status"));
}

/** "Save" for a file of conversation `caseId`: downloads, checks, then offers it. */
function saveFileButton(caseId, e) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "btn btn-quiet";
  b.textContent = t("file.save");
  b.setAttribute("aria-label", t("file.saveNamed", { name: e.attachment.name }));
  b.addEventListener("click", async () => {
    if (busy) return;
    busy = true;
    clearMsg($("case-error"));
    try {
      const blob = await core.saveCaseFile(caseId, e.id, (_, f) => caseFileProgress("file.receiving", f));
      offerDownload(blob, e.attachment.name);
      announce(t("file.saved"));
    } catch (err) {
      showMsg($("case-error"), fileErrorKey(err));
    } finally {
      caseFileDone();
      busy = false;
    }
  });
  return b;
}

async function act(fn, doneKey, after) {
  if (busy || !current) return;
  busy = true;
  clearMsg($("case-error"));
  try {
    const done = await fn(current.id);
    if (after) after();
    announce(t(doneKey));
    const id = current.id;
    await loadInbox();
    current = await core.openCase(id);
    renderCase();
    // Some colleagues' (or the seeker's) mailboxes were full: say so.
    const partly = done?.partlyRefused;
    if (partly?.refused > 0) showMsg($("case-error"), "c.partlyRefused", { refused: partly.refused, of: partly.of });
  } catch (e) {
    const key = fileErrorKey(e);
    showMsg($("case-error"), key, key === "err.messageTooLong" ? { max: e?.max ?? 16384 } : undefined);
  } finally {
    busy = false;
  }
}

function onEvent(ev) {
  if (!me) return;
  if (ev?.type === "connection") {
    const conn = $("conn");
    if (ev.state === "reconnecting") {
      conn.dataset.i18n = "c.reconnecting";
      conn.textContent = t("c.reconnecting");
    } else {
      delete conn.dataset.i18n;
      conn.textContent = "";
    }
    if (ev.state !== "open") return;
  }
  if (ev?.type === "canned") return void loadLists();
  if (ev?.type === "message") announce(t("c.newMessage", { topic: topicName({ topic: ev.topic, topicLabel: ev.topicLabel }) }));
  if (current && ev?.id === current.id) {
    // The open case is read as it is shown; the list is reloaded after
    // that, so both show the same status.
    core.openCase(current.id, currentLanguage()).then(
      (c) => {
        current = c;
        renderCase();
        loadInbox();
      },
      // Gone from this device (a colleague's purge, the seeker's
      // deletion, the retention): the pane closes.
      () => {
        closeCase();
        loadInbox();
      },
    );
  } else {
    loadInbox();
  }
}

/** Closes the case pane (back to the list). */
function closeCase() {
  document.body.classList.remove("case-open");
  $("case").hidden = true;
  $("pane-empty").hidden = false;
  current = null;
  renderInbox();
}

// ------------------------------------------------------------ wiring

function wire() {
  $("unlock-form").addEventListener("submit", unlock);
  $("enrol-form").addEventListener("submit", enrol);
  // An error goes away as soon as the person has fixed what it was about.
  $("passphrase").addEventListener("input", () => clearMsg($("unlock-error")));
  for (const id of ["enrol-pass", "enrol-pass2"]) {
    $(id).addEventListener("input", () => {
      const [p1, p2] = [$("enrol-pass").value, $("enrol-pass2").value];
      try {
        core.checkNewPassphrase(p1);
      } catch {
        return;
      }
      if (p1 === p2 || $("enrol-error").dataset.shown !== "c.enrolMismatch") clearMsg($("enrol-error"));
    });
  }
  for (const id of ["reply", "note"]) {
    $(id).addEventListener("input", () => {
      // Only the message rule's own errors; a refusal from the team stays.
      if (!["err.messageEmpty", "err.messageTooLong"].includes($("case-error").dataset.shown)) return;
      try {
        core.checkMessage($(id).value);
        clearMsg($("case-error"));
      } catch {
        // Still too long or empty.
      }
    });
  }

  $("to-enrol").addEventListener("click", () => {
    $("enrol-form").hidden = false;
    $("enrol-done").hidden = true;
    showScreen("screen-enrol");
  });
  $("enrol-continue").addEventListener("click", () => {
    clearMsg($("unlock-error"));
    $("to-enrol").hidden = true;
    showScreen("screen-unlock");
    $("passphrase").focus();
  });
  $("lock").addEventListener("click", () => lock("c.locked"));
  for (const r of document.querySelectorAll('input[name="filter"]')) {
    r.addEventListener("change", () => {
      filter = r.value;
      loadInbox();
    });
  }
  // Results as the counselor types; Escape or the button clears the search.
  $("search-form").addEventListener("submit", (ev) => ev.preventDefault());
  // The module folds the inbox for searching the first time it is asked
  // (about 0.15 s for 10,000 conversations): on focus, before the first key.
  $("search").addEventListener("focus", () => {
    if (me && !query.trim()) core.searchInbox("", filter).catch(() => {});
  });
  $("search").addEventListener("input", () => {
    query = $("search").value;
    $("search-clear").hidden = !query;
    if (me) loadInbox();
  });
  $("search").addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && query) {
      ev.preventDefault();
      clearSearch();
      if (me) loadInbox();
    }
  });
  $("search-clear").addEventListener("click", () => {
    clearSearch();
    if (me) loadInbox();
    $("search").focus();
  });
  $("inbox-sort").addEventListener("change", () => {
    intakeView.order = $("inbox-sort").value;
    loadInbox();
  });
  for (const [id, key] of [
    ["only-minors", "minors"],
    ["only-urgent", "urgent"],
    ["only-other", "forSomeoneElse"],
  ]) {
    $(id).addEventListener("change", () => {
      intakeView[key] = $(id).checked;
      loadInbox();
    });
  }
  $("case-back").addEventListener("click", () => {
    document.body.classList.remove("case-open");
    $("case").hidden = true;
    $("pane-empty").hidden = false;
    current = null;
    renderInbox();
  });
  $("claim").addEventListener("click", () => act(core.claimCase, "c.claimed"));
  $("resolve").addEventListener("click", () => act(core.resolveCase, "c.resolved"));
  $("reopen").addEventListener("click", () => act(core.reopenCase, "c.reopened"));
  $("canned-insert").addEventListener("click", () => {
    const a = canned.find((x) => x.id === $("canned").value);
    if (!a) return;
    const r = $("reply");
    r.value = r.value ? `${r.value}\n\n${a.text}` : a.text;
    r.focus();
  });
  $("file-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = $("case-file").files?.[0];
    if (!file) return $("case-file").focus();
    if (file.size > core.MAX_FILE_BYTES) return showMsg($("case-error"), "file.errTooLarge");
    try {
      await act(
        (id) => core.sendFileToCase(id, file, (_, f) => caseFileProgress("file.sending", f)),
        "c.fileSent",
        () => ($("case-file").value = ""),
      );
    } finally {
      caseFileDone();
    }
  });

  $("reply-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("reply").value;
    if (!text.trim()) return $("reply").focus();
    act((id) => core.replyToCase(id, text), "c.sent", () => ($("reply").value = ""));
  });
  $("note-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("note").value;
    if (!text.trim()) return $("note").focus();
    act((id) => core.addNote(id, text), "c.noteAdded", () => ($("note").value = ""));
  });
  $("canned-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const title = $("canned-title").value.trim();
    const text = $("canned-text").value;
    if (!title) return $("canned-title").focus();
    if (!text.trim()) return $("canned-text").focus();
    act((id) => core.saveCannedAnswer(id, title, text), "c.cannedSaved", () => {
      $("canned-title").value = "";
      $("canned-text").value = "";
      loadLists();
    });
  });
  $("handoff-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const to = $("colleague").value;
    if (to) act((id) => core.handOffCase(id, to), "c.handedOff");
  });
  $("refer-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const partner = $("partner").value;
    const note = $("refer-note").value;
    // The core refuses an empty message, a referral's too.
    if (!note.trim()) return $("refer-note").focus();
    if (partner) act((id) => core.referCase(id, partner, note), "c.referred", () => ($("refer-note").value = ""));
  });
  // Keeping a case longer is an explicit choice: asked, then confirmed.
  $("keep-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!$("keep-until").value) return $("keep-until").focus();
    if (!$("keep-reason").value.trim()) return $("keep-reason").focus();
    $("keep-confirm-box").hidden = false;
    $("keep-confirm").focus();
  });
  $("keep-cancel").addEventListener("click", () => {
    $("keep-confirm-box").hidden = true;
    $("keep-until").focus();
  });
  $("keep-confirm").addEventListener("click", () => {
    const day = $("keep-until").value;
    const reason = $("keep-reason").value;
    $("keep-confirm-box").hidden = true;
    act((id) => core.keepCase(id, day, reason), "c.keptShort", () => {
      $("keep-reason").value = "";
    }).then(() => {
      if (current?.keptUntil) announce(t("c.kept", { date: formatDate(current.keptUntil) }));
    });
  });
  // Resolve and delete (issue 21): an explicit choice, asked, then
  // confirmed; the case is then gone from this device, so the pane closes.
  $("purge").addEventListener("click", () => {
    $("purge-confirm-box").hidden = false;
    $("purge-confirm").focus();
  });
  $("purge-cancel").addEventListener("click", () => {
    $("purge-confirm-box").hidden = true;
    $("purge").focus();
  });
  $("purge-confirm").addEventListener("click", async () => {
    $("purge-confirm-box").hidden = true;
    if (busy || !current) return;
    busy = true;
    clearMsg($("case-error"));
    try {
      await core.purgeCase(current.id);
      closeCase();
      announce(t("c.purged"));
      await loadInbox();
      $("search").focus();
    } catch (e) {
      showMsg($("case-error"), fileErrorKey(e));
    } finally {
      busy = false;
    }
  });
  for (const type of ["pointerdown", "keydown", "scroll", "touchstart"]) {
    document.addEventListener(type, resetIdle, { passive: true, capture: true });
  }
}

function start() {
  initLanguage();
  wire();
  onLanguageChange(() => {
    renderWhoami();
    if (items.length) renderInbox();
    renderCase();
    // The intake summary's wording follows the page's language.
    if (current) core.openCase(current.id, currentLanguage()).then((c) => ((current = c), renderCase()), () => {});
  });
  if (!core.webAssemblySupported()) {
    showScreen("screen-nowasm");
    return;
  }
  showScreen("screen-unlock");
  $("passphrase").focus();
  core.loadCore().catch(coreFailed);
  core.counselorHasKeyStore().then(
    (has) => {
      if (!has && !me) showScreen("screen-enrol");
    },
    () => {},
  );
}

start();

// ------------------------------------------------------------ intake answers (issue 20)

/** The small flags of an inbox row (minor, urgent, for someone else), or null. */
function intakeBadges(intake) {
  if (!intake) return null;
  const keys = [
    [intake.minor === true, "c.badge.minor"],
    [intake.urgent === true, "c.badge.urgent"],
    [intake.forSomeoneElse === true, "c.badge.other"],
  ].filter(([on]) => on);
  if (!keys.length) return null;
  const span = document.createElement("span");
  span.className = "badges";
  for (const [, key] of keys) {
    const b = document.createElement("span");
    b.className = `badge ${key.replace("c.badge.", "badge-")}`;
    b.textContent = t(key);
    span.append(b);
  }
  return span;
}

/** One answer as the counselor reads it. */
function intakeAnswerText(a) {
  switch (a.kind) {
    case "yes":
      return t("c.intake.yes");
    case "no":
      return t("c.intake.no");
    case "declined":
      return t("c.intake.declined");
    case "unrecognised":
      return t("c.intake.unrecognised");
    default:
      return a.values.join(", ");
  }
}

/** The summary box at the top of a case: each question and its answer. */
function renderIntake(intake) {
  const box = $("case-intake");
  const list = $("case-intake-list");
  list.replaceChildren();
  const lines = intake?.lines ?? [];
  box.hidden = lines.length === 0;
  $("case-intake-other").hidden = intake?.forSomeoneElse !== true;
  for (const l of lines) {
    const dt = document.createElement("dt");
    dt.textContent = l.prompt || t("c.intake.unknownQuestion", { id: l.question });
    const dd = document.createElement("dd");
    dd.className = `answer answer-${l.answer.kind}`;
    dd.textContent = intakeAnswerText(l.answer);
    list.append(dt, dd);
  }
}
