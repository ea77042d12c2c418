"""wasmjob's helper for jobs written in Python with componentize-py.

A job is a module defining `class WitWorld(wit_world.WitWorld)` with
`metadata`, `call`, `overlap_key` and `is_due`. This helper gives metadata
with the Rust SDK's defaults (`regular`, `periodic`), pulsar's `is_due`
(`due`), the two kinds of error (`Retryable`, `Fatal`) and the host's
`log`, `queue_task`, `secret`, `attempt` and `task_id`. See
`examples/python/addition.py` and `examples/python/tick.py`.
"""

import json
from typing import Any, List, Optional

from componentize_py_types import Err
from wit_world.imports import host, types

from .schedule import Due, anchor_date, anchor_datetime, is_due

__all__ = [
    "Due", "Fatal", "Retryable", "anchor_date", "anchor_datetime", "attempt", "due", "is_due", "log",
    "periodic", "queue_task", "regular", "secret", "task_id",
]

# The Rust SDK's `RetryPolicy::default()`: 3 retries, backoff 1 s doubling up
# to 5 min, traps and timeouts retried.
MAX_RETRIES = 3
INITIAL_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 300_000


def regular(name: str, doc: str = "", *, overlap: types.Overlap = types.Overlap.ALLOW,
            expiry_ms: Optional[int] = None, fuel: Optional[int] = None, timeout_ms: Optional[int] = None,
            memory_bytes: Optional[int] = None, max_retries: int = MAX_RETRIES,
            initial_backoff_ms: int = INITIAL_BACKOFF_MS, max_backoff_ms: int = MAX_BACKOFF_MS,
            retry_on_trap: bool = True, retry_on_timeout: bool = True,
            allowed_hosts: Optional[List[str]] = None, secrets: Optional[List[str]] = None) -> types.Metadata:
    """The metadata of a regular job, with the Rust SDK's defaults."""
    return types.Metadata(
        name=name, doc=doc, doc_syntax=types.DocSyntax.MARKDOWN, kind=types.JobKind_Regular(),
        overlap=overlap, expiry=expiry_ms,
        limits=types.Limits(fuel=fuel, timeout=timeout_ms, memory_bytes=memory_bytes),
        retry=types.RetryPolicy(max_retries=max_retries, initial_backoff=initial_backoff_ms,
                                max_backoff=max_backoff_ms, retry_on_trap=retry_on_trap,
                                retry_on_timeout=retry_on_timeout),
        allowed_hosts=allowed_hosts, secrets=list(secrets or []),
    )


def periodic(name: str, run_every_ms: int, anchor: Optional[int] = None, doc: str = "", **options: Any) -> types.Metadata:
    """The metadata of a job due every `run_every_ms`, aligned to `anchor`."""
    meta = regular(name, doc, **options)
    meta.kind = types.JobKind_Periodic(types.Schedule(run_every=run_every_ms, anchor=anchor))
    return meta


def due(meta: types.Metadata, last_run_at: int, now: int) -> types.Due:
    """`is-due` for a periodic job's metadata: pulsar's semantics."""
    if not isinstance(meta.kind, types.JobKind_Periodic):
        return types.Due(is_due=False, next_run_in=2**64 - 1)
    schedule = meta.kind.value
    answer = is_due(schedule.run_every, schedule.anchor, last_run_at, now)
    return types.Due(is_due=answer.is_due, next_run_in=answer.next_run_in)


def Retryable(message: str) -> Err:
    """A transient failure: `raise Retryable("...")`, retried per the policy."""
    return Err(types.JobError_Retryable(message))


def Fatal(message: str) -> Err:
    """A permanent failure: `raise Fatal("...")`, never retried."""
    return Err(types.JobError_Fatal(message))


def log(message: str, level: types.LogLevel = types.LogLevel.INFO) -> None:
    """Appends a line to the task's log."""
    host.log(level, message)


def queue_task(job: str, args: Any, *, delay_ms: Optional[int] = None, expiry_ms: Optional[int] = None,
               priority: Optional[int] = None, max_retries: Optional[int] = None) -> str:
    """Queues a task of `job` with `args` (a dict, sent as JSON); the new task
    records this one as its `from_task`. Returns its id; raises
    `componentize_py_types.Err` with a `types.QueueError` when refused."""
    options = types.QueueOptions(expiry=expiry_ms, delay=delay_ms, priority=priority, max_retries=max_retries)
    return host.queue_task(job, json.dumps(args), options)


def secret(name: str) -> str:
    """The tenant's secret `name`, which the metadata must declare."""
    return host.secret(name)


def attempt() -> int:
    """The attempt being run: 1, then 2 for the first retry..."""
    return host.attempt()


def task_id() -> str:
    """The id of the task being run."""
    return host.current_task_id()
