#!/usr/bin/env bash
# The per-task cost of jobs in Python and JavaScript next to Rust, in one run:
# builds the examples (examples/python/build.sh, examples/js/build.sh, into
# target/polyglot/) and runs `wasmjob bench` with each `addition` as a --job.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/examples/python/build.sh"
"$here/examples/js/build.sh"
cargo build --release --manifest-path "$here/Cargo.toml" -q
"$here/target/release/wasmjob" bench --fib 25 \
  --job "$here/target/polyglot/python/addition.wasm" --job "$here/target/polyglot/js/addition.wasm" "$@"
