// pulsar's own example job, in JavaScript: add two numbers.
//
// Args: `a` and `b` (integers, default 0). With `then: n > 0` it also queues
// another `addition-js` task adding `b` to the sum (a chain of `n` more
// tasks, each recording this one as its `from_task`). With `flaky: k`
// attempts before `k` fail with a retryable error. Anything but integers
// fails for good.
import * as wasmjob from "./wasmjob.js";

const META = wasmjob.regular("addition-js", "Add two numbers (JavaScript)", {
  maxRetries: 3,
  initialBackoffMs: 10,
  maxBackoffMs: 100,
});

export const metadata = () => META;

export function call(text) {
  let args;
  try {
    args = JSON.parse(text);
  } catch (e) {
    throw wasmjob.fatal(`args are not JSON: ${e.message}`);
  }
  const { a = 0, b = 0 } = args;
  if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b)) throw wasmjob.fatal("a and b must be integers");
  const attempt = wasmjob.attempt();
  if (attempt < (args.flaky ?? 0)) throw wasmjob.retryable(`attempt ${attempt} failed`);
  const total = a + b;
  if (!Number.isSafeInteger(total)) throw wasmjob.fatal("overflow");
  wasmjob.log(`${a} + ${b} = ${total}`);
  if ((args.then ?? 0) > 0) {
    const child = wasmjob.queueTask("addition-js", { a: total, b, then: args.then - 1 });
    wasmjob.log(`queued ${child}`);
  }
  return JSON.stringify(total);
}

export const overlapKey = () => undefined;
export const isDue = (lastRunAt, now) => wasmjob.due(META, lastRunAt, now);
