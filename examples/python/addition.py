"""pulsar's own example job, in Python: add two numbers.

Args: `a` and `b` (integers, default 0). With `then: n > 0` it also queues
another `addition-py` task adding `b` to the sum (a chain of `n` more tasks,
each recording this one as its `from_task`). With `flaky: k` attempts
before `k` fail with a retryable error. Anything but integers fails for good.
"""

import json

import wasmjob
import wit_world

META = wasmjob.regular("addition-py", "Add two numbers (Python)", max_retries=3, initial_backoff_ms=10,
                       max_backoff_ms=100)


class WitWorld(wit_world.WitWorld):
    def metadata(self):
        return META

    def call(self, args):
        try:
            args = json.loads(args)
        except ValueError as e:
            raise wasmjob.Fatal(f"args are not JSON: {e}")
        a, b = args.get("a", 0), args.get("b", 0)
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (a, b)):
            raise wasmjob.Fatal("a and b must be integers")
        attempt = wasmjob.attempt()
        if attempt < args.get("flaky", 0):
            raise wasmjob.Retryable(f"attempt {attempt} failed")
        total = a + b
        wasmjob.log(f"{a} + {b} = {total}")
        if args.get("then", 0) > 0:
            child = wasmjob.queue_task("addition-py", {"a": total, "b": b, "then": args["then"] - 1})
            wasmjob.log(f"queued {child}")
        return json.dumps(total)

    def overlap_key(self, args):
        return None

    def is_due(self, last_run_at, now):
        return wasmjob.due(META, last_run_at, now)
