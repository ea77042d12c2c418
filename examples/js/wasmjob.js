// wasmjob's helper for jobs written in JavaScript with componentize-js.
//
// A job is an ES module exporting `metadata`, `call`, `overlapKey` and
// `isDue` (the `job` world of wit/job.wit). This helper gives metadata with
// the Rust SDK's defaults (`regular`, `periodic`), pulsar's `is_due` (`due`),
// the two kinds of error (`retryable`, `fatal`: throw what they return) and
// the host's `log`, `queueTask`, `secret`, `attempt` and `taskId`. See
// examples/js/addition.js and examples/js/tick.js.
//
// WIT `u64`/`s64` values (times, durations, fuel, memory) are BigInt.
import * as host from "wasmjob:job/host@0.2.0";
import { isDue } from "./schedule.js";

export { anchorDate, anchorDatetime, isDue } from "./schedule.js";

// The Rust SDK's `RetryPolicy::default()`: 3 retries, backoff 1 s doubling
// up to 5 min, traps and timeouts retried.
const RETRY = { maxRetries: 3, initialBackoff: 1_000n, maxBackoff: 300_000n, retryOnTrap: true, retryOnTimeout: true };
const U64_MAX = 2n ** 64n - 1n;

const big = (n) => (n === undefined || n === null ? undefined : BigInt(n));

/** The metadata of a regular job, with the Rust SDK's defaults. */
export function regular(name, doc = "", options = {}) {
  return {
    name,
    doc,
    docSyntax: "markdown",
    kind: { tag: "regular" },
    overlap: options.overlap ?? "allow",
    expiry: big(options.expiryMs),
    limits: { fuel: big(options.fuel), timeout: big(options.timeoutMs), memoryBytes: big(options.memoryBytes) },
    retry: {
      maxRetries: options.maxRetries ?? RETRY.maxRetries,
      initialBackoff: big(options.initialBackoffMs) ?? RETRY.initialBackoff,
      maxBackoff: big(options.maxBackoffMs) ?? RETRY.maxBackoff,
      retryOnTrap: options.retryOnTrap ?? RETRY.retryOnTrap,
      retryOnTimeout: options.retryOnTimeout ?? RETRY.retryOnTimeout,
    },
    allowedHosts: options.allowedHosts,
    secrets: options.secrets ?? [],
  };
}

/** The metadata of a job due every `runEveryMs`, aligned to `anchor`. */
export function periodic(name, runEveryMs, anchor, doc = "", options = {}) {
  const meta = regular(name, doc, options);
  meta.kind = { tag: "periodic", val: { runEvery: BigInt(runEveryMs), anchor: big(anchor) } };
  return meta;
}

/** `isDue` for a job's metadata: pulsar's semantics; never for a regular job. */
export function due(meta, lastRunAt, now) {
  if (meta.kind.tag !== "periodic") return { isDue: false, nextRunIn: U64_MAX };
  return isDue(meta.kind.val.runEvery, meta.kind.val.anchor, lastRunAt, now);
}

/** A transient failure, retried per the policy: `throw retryable("...")`. */
export const retryable = (message) => ({ tag: "retryable", val: String(message) });
/** A permanent failure, never retried: `throw fatal("...")`. */
export const fatal = (message) => ({ tag: "fatal", val: String(message) });

/** Appends a line to the task's log (`level`: trace, debug, info, warn, error). */
export const log = (message, level = "info") => host.log(level, String(message));

/**
 * Queues a task of `job` with `args` (an object, sent as JSON); the new task
 * records this one as its `from_task`. Returns its id; throws the WIT
 * `queue-error` when refused.
 */
export function queueTask(job, args, options = {}) {
  return host.queueTask(job, JSON.stringify(args), {
    expiry: big(options.expiryMs),
    delay: big(options.delayMs),
    priority: options.priority,
    maxRetries: options.maxRetries,
  });
}

/** The tenant's secret `name`, which the metadata must declare. */
export const secret = (name) => host.secret(name);
/** The attempt being run: 1, then 2 for the first retry... */
export const attempt = () => host.attempt();
/** The id of the task being run. */
export const taskId = () => host.currentTaskId();
