"""When a periodic job is due: pulsar's `is_due(last_run_at)` with `run_every`
and an optional `anchor`, as the Rust SDK's `schedule::is_due` computes it
(both are tested against `guest-sdk/is-due-cases.json`).

Without an anchor, a run is due `run_every` after the previous run. With one,
runs are due at `anchor + k * run_every` (any whole `k`); a run is due when
such a time has passed since the previous run. Missed runs are not caught up
one by one: one task is due, then the schedule moves on from `now`.

Pure Python, so that it is tested outside the sandbox too. Times are
milliseconds since the epoch (the WIT `s64`), periods milliseconds (`u64`);
results saturate at the bounds of those types as the Rust SDK's do.
"""

from typing import NamedTuple, Optional

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1
MILLIS_PER_DAY = 86_400_000


class Due(NamedTuple):
    """Whether a task is due now, and how long from now until the next run."""

    is_due: bool
    next_run_in: int


def _sat(n: int) -> int:
    return max(I64_MIN, min(I64_MAX, n))


def anchor_date(hour: int, minute: int = 0, second: int = 0) -> int:
    """An anchor at `hour:minute:second` UTC (pulsar's `anchorDate`)."""
    return (hour * 3600 + minute * 60 + second) * 1000


def anchor_datetime(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """An anchor at a full UTC date and time."""
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return (era * 146_097 + doe - 719_468) * MILLIS_PER_DAY + anchor_date(hour, minute, second)


def is_due(run_every: int, anchor: Optional[int], last_run_at: int, now: int) -> Due:
    """Whether a run of a job due every `run_every` ms (aligned to `anchor`)
    is due at `now`, given the previous run at `last_run_at`."""
    if not 0 <= run_every <= U64_MAX:
        raise ValueError(f"run_every must be a u64 of milliseconds, not {run_every}")
    every = max(1, min(run_every, I64_MAX))

    def slot(at: int) -> int:
        if anchor is None:
            return at
        return _sat(anchor + _sat(_sat(at - anchor) // every * every))

    next_due = _sat(slot(last_run_at) + every)
    if now >= next_due:
        return Due(True, max(0, _sat(_sat(slot(now) + every) - now)))
    return Due(False, max(0, _sat(next_due - now)))
