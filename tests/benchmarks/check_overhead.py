"""Fail when the harness timing loop is more than N% slower than the bare loop.

Usage: python tests/benchmarks/check_overhead.py BENCHMARKS.json --max-overhead-pct 1

Reads what test_timing_loop_overhead put in ``extra_info``: the minimum round time (the least
noisy statistic on a shared machine) of each loop, both measured in the same rounds.
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
    info = {b["name"]: b["extra_info"] for b in data["benchmarks"]}["test_timing_loop_overhead"]
    overhead = info["overhead_pct"]
    print(f"bare loop min {info['bare_min_ms']:.3f} ms, harness loop min "
          f"{info['harness_min_ms']:.3f} ms over {info['rounds']} interleaved rounds: "
          f"overhead {overhead:+.2f}% (limit {args.max_overhead_pct}%)")
    return 0 if overhead <= args.max_overhead_pct else 1


if __name__ == "__main__":
    sys.exit(main())
