// When a periodic job is due: pulsar's `is_due(last_run_at)` with `run_every`
// and an optional `anchor`, as the Rust SDK's `schedule::is_due` computes it
// (both are tested against `guest-sdk/is-due-cases.json`).
//
// Without an anchor, a run is due `run_every` after the previous run. With
// one, runs are due at `anchor + k * run_every` (any whole `k`); a run is due
// when such a time has passed since the previous run. Missed runs are not
// caught up one by one: one task is due, then the schedule moves on from `now`.
//
// Plain JavaScript with no import, so that it is tested outside the sandbox
// too. Times are BigInt milliseconds since the epoch (the WIT `s64`, which
// the bindings pass as BigInt), periods BigInt milliseconds (`u64`); results
// saturate at the bounds of those types as the Rust SDK's do.

export const I64_MIN = -(2n ** 63n);
export const I64_MAX = 2n ** 63n - 1n;
export const U64_MAX = 2n ** 64n - 1n;
export const MILLIS_PER_DAY = 86_400_000n;

const sat = (n) => (n < I64_MIN ? I64_MIN : n > I64_MAX ? I64_MAX : n);
const max = (a, b) => (a > b ? a : b);
// Floor division (BigInt `/` truncates toward zero).
const floorDiv = (a, b) => {
  const q = a / b;
  return (a % b !== 0n) && ((a < 0n) !== (b < 0n)) ? q - 1n : q;
};

/** An anchor at `hour:minute:second` UTC (pulsar's `anchorDate`). */
export function anchorDate(hour, minute = 0, second = 0) {
  return BigInt((hour * 3600 + minute * 60 + second) * 1000);
}

/** An anchor at a full UTC date and time. */
export function anchorDatetime(year, month, day, hour = 0, minute = 0, second = 0) {
  return BigInt(Date.UTC(year, month - 1, day)) + anchorDate(hour, minute, second);
}

/**
 * Whether a run of a job due every `runEvery` ms (aligned to `anchor`, or
 * none with `undefined`) is due at `now`, given the previous run at
 * `lastRunAt`: `{ isDue, nextRunIn }`, the shape of the WIT `due` record.
 */
export function isDue(runEvery, anchor, lastRunAt, now) {
  runEvery = BigInt(runEvery);
  if (runEvery < 0n || runEvery > U64_MAX) throw new RangeError(`runEvery must be a u64 of milliseconds, not ${runEvery}`);
  const every = max(1n, runEvery > I64_MAX ? I64_MAX : runEvery);
  [lastRunAt, now] = [BigInt(lastRunAt), BigInt(now)];
  const slot = (at) =>
    anchor === undefined || anchor === null
      ? at
      : sat(BigInt(anchor) + sat(floorDiv(sat(at - BigInt(anchor)), every) * every));
  const nextDue = sat(slot(lastRunAt) + every);
  if (now >= nextDue) return { isDue: true, nextRunIn: max(0n, sat(sat(slot(now) + every) - now)) };
  return { isDue: false, nextRunIn: max(0n, sat(nextDue - now)) };
}
