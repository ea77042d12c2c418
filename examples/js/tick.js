// A periodic job in JavaScript: due every minute on the minute (anchored at
// 00:00 UTC), it logs the time it ran and answers it.
import * as wasmjob from "./wasmjob.js";

const META = wasmjob.periodic("tick-js", 60_000, wasmjob.anchorDate(0, 0, 0), "Due every minute (JavaScript)");

export const metadata = () => META;

export function call() {
  const now = Date.now();
  wasmjob.log(`tick at ${now}`);
  return JSON.stringify({ ran_at: now });
}

export const overlapKey = () => undefined;
export const isDue = (lastRunAt, now) => wasmjob.due(META, lastRunAt, now);
