// Shared page behaviour: language switching, screen switching, status
// announcements and quick exit. Screens are <section class="screen"> elements
// shown one at a time; switching never touches the URL or the history.

import { LANGUAGES, STRINGS, applyTranslations, preferredLanguage, translate } from "./i18n.js";

const DEFAULT_NEUTRAL_URL = "https://weather.com/";
const EXIT_WINDOW_MS = 1000;

let lang = "en";
const langListeners = [];

export function currentLanguage() {
  return lang;
}

/** Translates `key` in the current language. */
export function t(key, vars) {
  return translate(lang, key, vars);
}

/** Re-runs `fn` now and after every language change (for dynamic text). */
export function onLanguageChange(fn) {
  langListeners.push(fn);
  fn(lang);
}

export function setLanguage(code) {
  if (!(code in STRINGS)) return;
  lang = code;
  document.documentElement.lang = code;
  applyTranslations(document, code);
  const titleKey = document.body.dataset.titleKey || "doc.title";
  document.title = translate(code, titleKey);
  for (const b of document.querySelectorAll("[data-lang-button]")) {
    b.setAttribute("aria-pressed", String(b.dataset.langButton === code));
  }
  for (const fn of langListeners) fn(code);
}

/** Builds the language buttons into every [data-lang-switch] and picks the browser's language. */
export function initLanguage() {
  // The skip link moves focus without touching the URL (no #fragment in history).
  for (const a of document.querySelectorAll("a.skip")) {
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      const target = document.getElementById(a.getAttribute("href").slice(1));
      if (target) {
        target.tabIndex = -1;
        target.focus();
      }
    });
  }
  for (const host of document.querySelectorAll("[data-lang-switch]")) {
    for (const { code, name } of LANGUAGES) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "lang-button";
      b.lang = code;
      b.dataset.langButton = code;
      b.textContent = name;
      b.addEventListener("click", () => setLanguage(code));
      host.append(b);
    }
  }
  setLanguage(preferredLanguage());
}

/**
 * Shows the screen with id `id`, hides the others and moves focus to its
 * heading so screen-reader users hear where they are. No URL change.
 * `{ focus: false }` (a page's first screen) leaves focus at the top of the
 * document, so Tab reaches the skip link and Quick exit first.
 */
export function showScreen(id, { focus = true } = {}) {
  for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== id;
  const screen = document.getElementById(id);
  const heading = screen.querySelector("h1, h2");
  if (heading && focus) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
  document.body.dataset.screen = id;
}

/** Announces `text` in the polite live region (and shows it there). */
export function announce(text) {
  const live = document.getElementById("status");
  if (!live) return;
  live.textContent = "";
  // A separate task so assistive technology reports a repeated message too.
  setTimeout(() => {
    live.textContent = text;
  }, 30);
}

/** Shows (or clears, with "") an error message in the element `el`. */
export function setError(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

/** The neutral URL for quick exit: <meta name="northstar-neutral-url"> or the default. */
export function neutralUrl() {
  const meta = document.querySelector('meta[name="northstar-neutral-url"]');
  const url = meta?.content?.trim();
  return url && /^https?:\/\//.test(url) ? url : DEFAULT_NEUTRAL_URL;
}

/**
 * Quick exit: every [data-quick-exit] button, and Escape pressed twice within
 * a second, run `clearState` (forget in-memory state), blank every field,
 * remove the page's content and replace the current history entry with the
 * neutral site. The page never created other history entries.
 */
export function setupQuickExit(clearState) {
  let lastEscape = Number.NEGATIVE_INFINITY;
  const exit = () => {
    try {
      clearState();
    } catch {
      // leave regardless
    }
    for (const f of document.querySelectorAll("input, textarea, select")) {
      if (f.type === "checkbox" || f.type === "radio") f.checked = false;
      else f.value = "";
    }
    document.title = "";
    document.body.replaceChildren();
    location.replace(neutralUrl());
  };
  for (const b of document.querySelectorAll("[data-quick-exit]")) {
    // A real link, so it still leaves when scripts are off; with scripts on,
    // the click clears the page first and replaces the history entry.
    if (b instanceof HTMLAnchorElement) b.href = neutralUrl();
    b.addEventListener("click", (ev) => {
      ev.preventDefault();
      exit();
    });
  }
  document.addEventListener(
    "keydown",
    (ev) => {
      if (ev.key !== "Escape") return;
      const now = performance.now();
      if (now - lastEscape <= EXIT_WINDOW_MS) exit();
      lastEscape = now;
    },
    true,
  );
  return exit;
}

/** Formats an ISO date in the current language, without the time of day. */
export function formatDate(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  if (lang === "ht") {
    // Few browsers carry Haitian Creole month names.
    const months = ["janvye", "fevriye", "mas", "avril", "me", "jen", "jiyè", "out", "septanm", "oktòb", "novanm", "desanm"];
    return `${d.getDate()} ${months[d.getMonth()]} ${d.getFullYear()}`;
  }
  return d.toLocaleDateString(lang, { year: "numeric", month: "long", day: "numeric" });
}

/**
 * Offers `blob` to the browser as a download named `name` (a received
 * attachment): a hidden link clicked once, its object URL revoked a minute
 * later, when the download has surely started.
 */
export function offerDownload(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
