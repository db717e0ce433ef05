//! Embeds the counselor inbox (web-client/static) into the `northstar`
//! binary, for `northstar counselor web`. The WebAssembly module
//! (web-client/static/pkg, written by scripts/lib.sh build_web) is embedded
//! when it exists; a binary built before it says so at run time instead of
//! failing to build (`cargo build --workspace` works on a fresh checkout).

use std::fmt::Write as _;
use std::path::Path;

/// The inbox's files: served path, content type, file under web-client/static.
const FILES: &[(&str, &str)] = &[
    ("counselor.html", "text/html; charset=utf-8"),
    ("counselor.js", "text/javascript; charset=utf-8"),
    ("core.js", "text/javascript; charset=utf-8"),
    ("relay.js", "text/javascript; charset=utf-8"),
    ("keystore.js", "text/javascript; charset=utf-8"),
    ("ui.js", "text/javascript; charset=utf-8"),
    ("i18n.js", "text/javascript; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("icon.svg", "image/svg+xml"),
];
const MODULE: &[(&str, &str)] = &[
    ("pkg/northstar_web.js", "text/javascript; charset=utf-8"),
    ("pkg/northstar_web_bg.wasm", "application/wasm"),
];

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let root = Path::new(&manifest).join("../web-client/static");
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed={}", root.join("pkg").display());
    let module_built = MODULE.iter().all(|(f, _)| root.join(f).is_file());
    let mut out = String::from(
        "/// The embedded inbox: (path, content type, bytes).\npub const FILES: &[(&str, &str, &[u8])] = &[\n",
    );
    let all = FILES
        .iter()
        .chain(if module_built { MODULE } else { &[] }.iter());
    for (f, ty) in all {
        let p = root.join(f);
        if !p.is_file() {
            // Static files are in git; a missing one is a broken checkout.
            println!("cargo:warning=web-client/static/{f} is missing: the inbox will not work");
            continue;
        }
        let abs = p.canonicalize().unwrap_or(p);
        let _ = writeln!(
            out,
            "    (\"/{f}\", \"{ty}\", include_bytes!({:?})),",
            abs.display().to_string()
        );
    }
    out.push_str("];\n");
    let _ = writeln!(
        out,
        "/// Whether the WebAssembly module was built before this binary.\npub const MODULE_BUILT: bool = {module_built};"
    );
    let dest =
        Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("web_inbox.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        println!("cargo:warning=cannot write {}: {e}", dest.display());
    }
}
