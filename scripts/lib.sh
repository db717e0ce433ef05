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
