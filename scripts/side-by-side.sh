#!/usr/bin/env bash
# The queue benchmarks of the README, side by side with graphile-worker in
# one run on one machine (figures from different runs or machines do not
# compare: these machines differ 2-3x in speed from one session to the next).
#
#   scripts/side-by-side.sh            # 3 interleaved repetitions, JSON lines
#   REPS=5 scripts/side-by-side.sh
#
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`) and Node.js
# for the peer. wasmjob's PostgreSQL runs use the schema `wjbench` of `test`
# (its tables are dropped). Prints one JSON line per measurement; the
# README's table gives the medians and their ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
peer=${GRAPHILE_PEER:-$here/../shared/peers/graphile/run.sh}
cargo build --release --manifest-path "$here/Cargo.toml" -q
wasmjob="$here/target/release/wasmjob"
psql -h 127.0.0.1 -U postgres -q test -c "CREATE SCHEMA IF NOT EXISTS wjbench" >/dev/null
pg='postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3Dwjbench'
for rep in $(seq 1 "${REPS:-3}"); do
  echo "# repetition $rep"
  REPS=1 "$peer"
  "$wasmjob" bench-queue --json 2>/dev/null
  "$wasmjob" bench-queue --json --samples 50 --tasks 100000 --backlog 900000 2>/dev/null | grep burn
  "$wasmjob" bench-queue --json --store "$pg" 2>/dev/null
  "$wasmjob" bench-queue --json --store "$pg" --finished 100000 --samples 10 2>/dev/null | grep burn
  "$wasmjob" bench-queue --json --store "$pg" --nodes 2 --tasks 100000 --samples 10 2>/dev/null | grep burn
  "$wasmjob" bench-queue --json --store "$pg" --tasks 100000 --samples 10 2>/dev/null | grep burn
done
"$wasmjob" bench-api 2>/dev/null
