# Shared set-up steps for scripts/run and scripts/test. Sourced, not run.
# Each step installs what is missing and does nothing when it is present, so
# the same scripts work on a fresh Debian machine and on a warm one.

# The wasm-bindgen CLI must match the wasm-bindgen crate version exactly
# (Cargo.toml pins `wasm-bindgen = "=0.2.100"`).
WASM_BINDGEN_VERSION=0.2.100

say() { printf '\n==> %s\n' "$*"; }

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install rustup (https://rustup.rs) first" >&2
        exit 1
    fi
    # rust-toolchain.toml pins the toolchain; rustup installs it, its
    # components and the wasm32 target on first use.
    rustup show active-toolchain >/dev/null
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        say "installing the wasm32-unknown-unknown target"
        rustup target add wasm32-unknown-unknown
    fi
    for c in rustfmt clippy; do
        if ! rustup component list --installed | grep -q "^$c"; then
            rustup component add "$c"
        fi
    done
}

ensure_wasm_bindgen() {
    if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION\$"; then
        say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (once)"
        cargo install --locked wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
    fi
}

# Builds client-core to WebAssembly and writes the JS bindings into
# web-client/static/pkg, which the relay serves.
build_web() {
    say "building the web client (client-core → wasm32)"
    cargo build --locked --release -p northstar-web --target wasm32-unknown-unknown
    local target_dir="${CARGO_TARGET_DIR:-target}"
    wasm-bindgen --target web --no-typescript \
        --out-dir web-client/static/pkg \
        "$target_dir/wasm32-unknown-unknown/release/northstar_web.wasm"
    # The relay serves this to browsers that accept gzip (a third of the size).
    gzip -9 -k -f web-client/static/pkg/northstar_web_bg.wasm
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# What a headless-Chromium script needs (scripts/browser-test, scripts/bench-wasm):
# Debian's chromium (/usr/bin/chromium, or $CHROMIUM_PATH), Node.js 20 or
# later, and the npm packages of tests/browser (npm ci when node_modules is
# missing or was installed from another lockfile).
ensure_browser_deps() {
    CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
    if [ ! -x "$CHROMIUM_PATH" ]; then
        say "installing Debian's chromium (once)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
    fi
    export CHROMIUM_PATH

    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "node and npm are needed for the browser tests (Node.js 20 or later)" >&2
        exit 1
    fi
    local node_major
    node_major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$node_major" -lt 20 ]; then
        echo "Node.js 20 or later is needed for the browser tests (found $(node --version))" >&2
        exit 1
    fi

    local lock_hash stamp
    lock_hash=$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)
    stamp=tests/browser/node_modules/.northstar-lock-sha256
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
        say "installing the browser-test npm packages (npm ci)"
        (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
        echo "$lock_hash" >"$stamp"
    fi
}

# PostgreSQL server binaries (initdb, pg_ctl) and clients (psql, pg_dump),
# for the tests of the PostgreSQL backend (scripts/pg-throwaway).
PG_BIN=""
ensure_postgres() {
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || ! command -v psql >/dev/null 2>&1; then
        say "installing PostgreSQL (Debian's postgresql package, once)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    export PATH="$PG_BIN:$PATH"
}

# cargo-fuzz (crates.io) drives the libFuzzer targets in fuzz/; they need
# the nightly toolchain, which scripts/fuzz checks for first.
CARGO_FUZZ_VERSION=0.13.2

have_nightly() {
    rustup toolchain list 2>/dev/null | grep -q '^nightly'
}

ensure_cargo_fuzz() {
    if ! cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
        say "installing cargo-fuzz $CARGO_FUZZ_VERSION (once)"
        cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
    fi
}
