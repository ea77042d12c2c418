#!/usr/bin/env bash
# Builds the JavaScript example jobs into components, with no manual step:
#
#   examples/js/build.sh [OUT_DIR]      # default: target/polyglot/js
#
# Installs componentize-js from the npm registry into OUT_DIR (exactly the
# versions of package-lock.json, with `npm ci`), then componentizes each job
# module (addition.js, tick.js; they import ./wasmjob.js, which is bundled)
# against wit/v0.2.0/job.wit into OUT_DIR/<module>.wasm. A build whose sources (the
# modules, the WIT, the lock file) are unchanged since the last one is
# skipped: OUT_DIR/sources.sha256 records them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/target/polyglot/js}
jobs=(addition tick)
mkdir -p "$out"
out=$(cd "$out" && pwd)

sum=$(cd "$root" && cat examples/js/package.json examples/js/package-lock.json examples/js/*.js wit/v0.2.0/job.wit \
  | sha256sum | cut -d' ' -f1)
built=yes
for job in "${jobs[@]}"; do [ -f "$out/$job.wasm" ] || built=no; done
if [ "$built" = yes ] && [ "$(cat "$out/sources.sha256" 2>/dev/null)" = "$sum" ]; then
  exit 0
fi

if ! cmp -s "$here/package-lock.json" "$out/package-lock.json" || [ ! -d "$out/node_modules" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$out/"
  (cd "$out" && npm ci --no-audit --no-fund --silent)
fi
for job in "${jobs[@]}"; do
  # Into a temporary file first: a build killed midway leaves no half component.
  "$out/node_modules/.bin/componentize-js" "$here/$job.js" --wit "$root/wit/v0.2.0/job.wit" -n job \
    -o "$out/$job.wasm.part" >/dev/null
  mv "$out/$job.wasm.part" "$out/$job.wasm"
done
echo "$sum" > "$out/sources.sha256"
