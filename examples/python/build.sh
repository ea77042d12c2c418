#!/usr/bin/env bash
# Builds the Python example jobs into components, with no manual step:
#
#   examples/python/build.sh [OUT_DIR]      # default: target/polyglot/python
#
# Installs componentize-py (requirements.txt, from PyPI) into a virtualenv
# under OUT_DIR, then componentizes each job module (addition.py, tick.py)
# against wit/v0.2.0/job.wit into OUT_DIR/<module>.wasm. A build whose sources
# (the modules, the helper, the WIT, the requirements) are unchanged since
# the last one is skipped: OUT_DIR/sources.sha256 records them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/target/polyglot/python}
jobs=(addition tick)
mkdir -p "$out"
out=$(cd "$out" && pwd)

sum=$(cd "$root" && cat examples/python/requirements.txt examples/python/*.py examples/python/wasmjob/*.py wit/v0.2.0/job.wit \
  | sha256sum | cut -d' ' -f1)
built=yes
for job in "${jobs[@]}"; do [ -f "$out/$job.wasm" ] || built=no; done
if [ "$built" = yes ] && [ "$(cat "$out/sources.sha256" 2>/dev/null)" = "$sum" ]; then
  exit 0
fi

python=${PYTHON:-python3}
if [ ! -x "$out/env/bin/componentize-py" ]; then
  "$python" -m venv "$out/env"
  "$out/env/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi
for job in "${jobs[@]}"; do
  # Into a temporary file first: a build killed midway leaves no half component.
  "$out/env/bin/componentize-py" -d "$root/wit/v0.2.0/job.wit" -w job componentize -p "$here" "$job" \
    -o "$out/$job.wasm.part" >/dev/null
  mv "$out/$job.wasm.part" "$out/$job.wasm"
done
echo "$sum" > "$out/sources.sha256"
