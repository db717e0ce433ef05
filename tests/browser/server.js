// The server the browser tests talk to. Prefers the real relay binary
// (target/debug/northstar-relay or $NORTHSTAR_BIN_DIR/northstar-relay) when it
// exists and supports --web-root; until then falls back to a tiny static
// server that sends the SAME security headers the relay is specified to send.
// Everything listens on 127.0.0.1 only.

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, "../..");
export const WEB_ROOT = path.join(REPO, "web-client/static");

export const CSP =
  "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'; img-src 'self'; " +
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export const SECURITY_HEADERS = {
  "content-security-policy": CSP,
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
};

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".png": "image/png",
  ".txt": "text/plain; charset=utf-8",
};

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function relayBinary() {
  const candidates = [];
  if (process.env.NORTHSTAR_BIN_DIR) candidates.push(path.join(process.env.NORTHSTAR_BIN_DIR, "northstar-relay"));
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, "target");
  candidates.push(path.join(targetDir, "debug/northstar-relay"));
  for (const bin of candidates) {
    if (!existsSync(bin)) continue;
    const help = spawnSync(bin, ["--help"], { encoding: "utf8", timeout: 10_000 });
    const text = `${help.stdout ?? ""}${help.stderr ?? ""}`;
    if (help.status === 0 && text.includes("--web-root") && text.includes("--listen") && text.includes("--data-dir")) {
      return bin;
    }
    console.log(`# browser tests: ${bin} exists but does not support --listen/--data-dir/--web-root; not using it`);
  }
  return null;
}

async function waitForHttp(origin, child, ms = 15_000, pathname = "/health") {
  const deadline = Date.now() + ms;
  let lastError;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`relay exited with code ${child.exitCode}`);
    try {
      const res = await fetch(`${origin}${pathname}`);
      if (res.ok) return;
      lastError = new Error(`HTTP ${res.status}`);
    } catch (e) {
      lastError = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server at ${origin} did not answer: ${lastError?.message}`);
}

async function startRelay(bin, webRoot = WEB_ROOT, extraArgs = []) {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "northstar-browser-relay-"));
  let stderr = "";
  const launch = () => {
    const c = spawn(bin, ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--web-root", webRoot, ...extraArgs], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    c.stderr.on("data", (d) => {
      stderr = (stderr + d).slice(-4000);
    });
    return c;
  };
  let child = launch();
  const origin = `http://127.0.0.1:${port}`;
  const stopChild = async () => {
    if (child.exitCode !== null) return;
    child.kill("SIGTERM");
    await new Promise((r) => {
      const t = setTimeout(() => {
        child.kill("SIGKILL");
        r();
      }, 5000);
      child.once("exit", () => {
        clearTimeout(t);
        r();
      });
    });
  };
  try {
    await waitForHttp(origin, child);
  } catch (e) {
    child.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`${e.message}\n${stderr}`);
  }
  return {
    kind: "relay",
    origin,
    description: `the real relay (${path.relative(REPO, bin)})`,
    /** Stops the relay (graceful shutdown) and starts it again on the same port and data. */
    async restart() {
      await stopChild();
      child = launch();
      await waitForHttp(origin, child);
    },
    async stop() {
      await stopChild();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function startStatic(root = WEB_ROOT, csp = CSP) {
  const server = createServer((req, res) => {
    const headers = { ...SECURITY_HEADERS, "content-security-policy": csp };
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, "http://127.0.0.1").pathname);
    } catch {
      res.writeHead(400, headers).end();
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, headers).end();
      return;
    }
    if (pathname.endsWith("/")) pathname += "index.html";
    const file = path.resolve(root, `.${pathname}`);
    let body = null;
    if (file.startsWith(root + path.sep) && existsSync(file) && statSync(file).isFile()) {
      body = readFileSync(file);
    }
    if (body === null) {
      res.writeHead(404, { ...headers, "content-type": "text/plain; charset=utf-8" }).end("not found");
      return;
    }
    headers["content-type"] = TYPES[path.extname(file)] ?? "application/octet-stream";
    res.writeHead(200, headers);
    res.end(req.method === "HEAD" ? undefined : body);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    kind: "static",
    origin,
    description: "the Node static fallback server (relay binary not built or without --web-root)",
    stop: () => new Promise((r) => server.close(r)),
  };
}

/**
 * A static host on its own origin serving a signed release directory (the
 * organisation's site in a split deployment, docs/DEPLOY.md), with the CSP
 * the release carries.
 */
export async function startStaticSite(root) {
  const text = readFileSync(path.join(root, ".well-known/northstar/release"), "utf8");
  const csp = /^csp (.*)$/m.exec(text)[1];
  const server = await startStatic(path.resolve(root), csp);
  return { ...server, description: "a static host (second origin)" };
}

/** Starts the relay if it is built, the static fallback otherwise. */
export async function startServer() {
  const bin = process.env.NORTHSTAR_BROWSER_STATIC === "1" ? null : relayBinary();
  const server = bin ? await startRelay(bin) : await startStatic();
  console.log(`# browser tests: serving web-client/static with ${server.description} at ${server.origin}`);
  return server;
}

/**
 * The real relay (required) serving `webRoot` (the end-to-end tests), with
 * `args` added to its command line (e.g. a limit to exercise).
 */
export async function startRealRelay(webRoot, { args = [] } = {}) {
  const bin = relayBinary();
  if (!bin) throw new Error("the relay binary is not built (cargo build --workspace --bins)");
  const server = await startRelay(bin, webRoot, args);
  console.log(`# browser tests: serving web-client/static with ${server.description} at ${server.origin}`);
  return server;
}
