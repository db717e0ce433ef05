#!/usr/bin/env python3
"""Writes the starting corpus of every fuzz target from docs/vectors.

Each vector file's hex values (and, for codenames, the codename text) go to
the targets that decode them. Run once, then `cargo fuzz cmin <target>` keeps
the corpus small. Rerunning only adds the same seeds again (names are their
SHA-1, as libFuzzer names corpus files).
"""
import hashlib, json, os, re, sys

ROOT = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(ROOT, "..", "docs", "vectors")
HEX = re.compile(r"^(?:[0-9a-f]{2})+$")
MAP = {
    "relay.json": ["client_frame", "server_frame", "envelope"],
    "sealed.json": ["envelope"],
    "ratchet.json": ["ratchet_message", "state_blob"],
    "pqxdh.json": ["ratchet_message", "prekey_bundle"],
    "directory.json": ["directory"],
    "state.json": ["state_blob"],
    "message.json": ["app_message"],
    "attachment.json": ["attachment"],
    "saved.json": ["saved_state"],
    "end_to_end.json": ["envelope", "ratchet_message", "prekey_bundle", "app_message"],
    "negative.json": ["client_frame", "server_frame", "envelope", "ratchet_message",
                      "prekey_bundle", "directory"],
}

def hexes(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from hexes(v)
    elif isinstance(x, list):
        for v in x:
            yield from hexes(v)
    elif isinstance(x, str) and HEX.match(x):
        yield bytes.fromhex(x)

def put(target, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)

for name, targets in MAP.items():
    with open(os.path.join(VECTORS, name)) as f:
        doc = json.load(f)
    for data in hexes(doc):
        for t in targets:
            put(t, data)
with open(os.path.join(VECTORS, "codename.json")) as f:
    for case in json.load(f)["cases"]:
        put("codename", case["codename"].encode())
        put("codename", case["codename"].upper().replace(" ", "-").encode())
sys.exit(0)
