"""A periodic job in Python: due every minute on the minute (anchored at
00:00 UTC), it logs the time it ran and answers it."""

import json
import time

import wasmjob
import wit_world

META = wasmjob.periodic("tick-py", 60_000, anchor=wasmjob.anchor_date(0, 0, 0), doc="Due every minute (Python)")


class WitWorld(wit_world.WitWorld):
    def metadata(self):
        return META

    def call(self, args):
        now = int(time.time() * 1000)
        wasmjob.log(f"tick at {now}")
        return json.dumps({"ran_at": now})

    def overlap_key(self, args):
        return None

    def is_due(self, last_run_at, now):
        return wasmjob.due(META, last_run_at, now)
