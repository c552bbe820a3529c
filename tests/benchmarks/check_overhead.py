"""Fail when the harness timing loop is more than N% slower than the bare loop.

Usage: python tests/benchmarks/check_overhead.py BENCHMARKS.json --max-overhead-pct 1

Compares the minimum round times (the least noisy statistic on a shared machine) of the two
benchmarks in pytest-benchmark's JSON output.
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json_file")
    parser.add_argument("--max-overhead-pct", type=float, default=1.0)
    args = parser.parse_args()
    with open(args.json_file) as fh:
        data = json.load(fh)
    stats = {b["name"]: b["stats"] for b in data["benchmarks"]}
    bare = stats["test_bare_session_run_loop"]["min"]
    harness = stats["test_harness_timing_loop"]["min"]
    overhead = 100.0 * (harness - bare) / bare
    print(f"bare loop min {bare * 1e3:.3f} ms, harness loop min {harness * 1e3:.3f} ms: "
          f"overhead {overhead:+.2f}% (limit {args.max_overhead_pct}%)")
    return 0 if overhead <= args.max_overhead_pct else 1


if __name__ == "__main__":
    sys.exit(main())
