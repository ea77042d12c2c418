"""Tests the Python helper against the table every SDK's helper is tested
against. Run: python3 examples/python/test_wasmjob.py"""

import importlib.util
import json
import pathlib
import unittest

here = pathlib.Path(__file__).resolve().parent
# The pure module alone: the package's `__init__` imports the bindings,
# which exist only inside the component.
spec = importlib.util.spec_from_file_location("schedule", here / "wasmjob" / "schedule.py")
schedule = importlib.util.module_from_spec(spec)
spec.loader.exec_module(schedule)
anchor_date, anchor_datetime, is_due = schedule.anchor_date, schedule.anchor_datetime, schedule.is_due

CASES = json.loads((here.parent.parent / "guest-sdk" / "is-due-cases.json").read_text())["cases"]


class IsDue(unittest.TestCase):
    def test_is_due_follows_the_shared_table_of_cases(self):
        self.assertGreaterEqual(len(CASES), 12)
        for c in CASES:
            with self.subTest(c["what"]):
                got = is_due(c["every"], c["anchor"], c["last"], c["now"])
                self.assertEqual((got.is_due, got.next_run_in), (c["due"], c["next"]))

    def test_anchors_count_from_the_epoch(self):
        self.assertEqual(anchor_date(3), 3 * 3600 * 1000)
        self.assertEqual(anchor_datetime(1970, 1, 1), 0)
        self.assertEqual(anchor_datetime(2000, 3, 1, 0, 0, 1), 951_868_801_000)
        self.assertEqual(anchor_datetime(1969, 12, 31), -86_400_000)

    def test_a_period_outside_u64_is_refused(self):
        with self.assertRaises(ValueError):
            is_due(-1, None, 0, 0)


if __name__ == "__main__":
    unittest.main()
