// Tests the JavaScript helper against the table every SDK's helper is tested
// against. Run: node examples/js/test.mjs
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { anchorDate, anchorDatetime, isDue } from "./schedule.js";

// Every integer as a BigInt: the table holds values past 2^53.
const text = readFileSync(new URL("../../guest-sdk/is-due-cases.json", import.meta.url), "utf8");
const quoted = text.replace(/(?<=":\s*)(-?\d+)(?=\s*[,}\n])/g, '"$1"');
const { cases } = JSON.parse(quoted, (key, value) =>
  typeof value === "string" && /^-?\d+$/.test(value) ? BigInt(value) : value);

assert.ok(cases.length >= 12);
for (const c of cases) {
  const got = isDue(c.every, c.anchor ?? undefined, c.last, c.now);
  assert.deepEqual(got, { isDue: c.due, nextRunIn: c.next }, c.what);
}
assert.equal(anchorDate(3), 3n * 3600n * 1000n);
assert.equal(anchorDatetime(1970, 1, 1), 0n);
assert.equal(anchorDatetime(2000, 3, 1, 0, 0, 1), 951_868_801_000n);
assert.equal(anchorDatetime(1969, 12, 31), -86_400_000n);
assert.throws(() => isDue(-1n, undefined, 0n, 0n), RangeError);
console.log(`ok: ${cases.length} cases`);
