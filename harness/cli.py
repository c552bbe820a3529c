"""Command line: a thin argparse front over library functions.

Subcommands are registered in :data:`COMMANDS`; each module they need is imported only when
that command runs, so ``harness --help`` stays fast and imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import HarnessError

EPILOG = """examples:
  harness bench --device snapdragon8gen3                 run the default suite
  harness bench --device raspberrypi5 --suite smoke --quant int8-static
  harness bench --device snapdragon8gen3 --resume results/20261122-081500-default-snapdragon8gen3
  harness devices                                        list device profiles
  harness report results/<run>                           rebuild the tables of a run
"""


# --------------------------------------------------------------------------- bench


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench", help="run a suite: build, measure and emulate every case",
        description="Run a sweep of workloads x quantization levels x pruning levels on the "
                    "host, predict each case on the device profile(s), save the run under "
                    "--results-dir and print the result table. Each case runs in its own "
                    "worker process: a crash or hang becomes one error/timeout row.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", action="append", required=True, metavar="NAME",
                   help="device profile name from devices/ (repeatable); see `harness devices`")
    p.add_argument("--suite", default="default", metavar="NAME|PATH",
                   help="suite name from suites/ or a path to a suite file (default: default)")
    p.add_argument("--workload", action="append", metavar="NAME",
                   help="only this workload of the suite (repeatable)")
    p.add_argument("--quant", action="append", metavar="LEVEL",
                   help="only this quantization level, e.g. fp32, int8-dynamic, int8-static "
                        "(repeatable)")
    p.add_argument("--prune", action="append", metavar="PCT",
                   help="only this pruning level in percent, e.g. 0 or 50 (repeatable)")
    p.add_argument("--iterations", type=int, metavar="N",
                   help="timed runs per case (default: the suite's)")
    p.add_argument("--warmup", type=int, metavar="N",
                   help="untimed runs after the first inference (default: the suite's)")
    p.add_argument("--timeout-s", type=float, metavar="S",
                   help="limit per case for building and for measuring (default: the suite's)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="ONNX Runtime intra-op threads, 0 = runtime default "
                        "(default: the suite's)")
    p.add_argument("--eval-size", choices=("small", "full"), default=None,
                   help="evaluation data per quality metric: small keeps the default sweep "
                        "near 15 minutes on 2 cores, full is several times larger "
                        "(default: small, or the resumed run's)")
    p.add_argument("--results-dir", type=Path, default=Path("results"), metavar="DIR",
                   help="where run directories are created (default: results)")
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="append to this run directory, skipping the cases it already has")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="artifact and model cache (default: $HARNESS_CACHE_DIR or "
                        "~/.cache/edge-harness)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_bench)


def _print_progress(p: Any) -> None:
    head = f"[{p.index}/{p.total}] {p.case.case_id}"
    if p.skipped:
        print(f"{head}: already in the run, skipped", file=sys.stderr, flush=True)
    elif p.row is None:
        print(f"{head} ...", file=sys.stderr, flush=True)
    else:
        row = p.row
        detail = row["reason"] if row["status"] != "ok" else ""
        if row.get("host"):
            import statistics

            p50 = statistics.median(row["host"]["warm_latency_ns"]) / 1e6
            detail = f"host p50 {p50:.3f} ms" + (f"; {detail}" if detail else "")
        left = p.total - p.index
        print(f"{head}: {row['status']} ({row['duration_s']:.1f} s) {detail} "
              f"[{left} left]", file=sys.stderr, flush=True)


def _print_note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench import run_bench
    from harness.report.tables import write_report

    run_dir = run_bench(
        devices=args.device, suite=args.suite, workloads=args.workload, quant=args.quant,
        prune=args.prune, results_dir=args.results_dir, resume=args.resume,
        cache_dir=args.cache_dir, iterations=args.iterations, warmup=args.warmup,
        timeout_s=args.timeout_s, threads=args.threads, eval_size=args.eval_size,
        command_line=sys.argv,
        progress=None if args.quiet else _print_progress,
        progress_note=None if args.quiet else _print_note)
    print(write_report(run_dir))
    print(f"\nrun saved in {run_dir} (report.md, report.csv, cases.jsonl)")
    return 0


# --------------------------------------------------------------------------- devices


def _add_devices(sub: Any) -> None:
    p = sub.add_parser("devices", help="list device profiles and their key figures",
                       description="List the device profiles in devices/ with their key "
                                   "figures. Every figure in a profile carries its source; "
                                   "--sources prints them.")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these profiles")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--sources", action="store_true",
                   help="also print every figure with its basis and source")
    p.set_defaults(func=_cmd_devices)


def _cmd_devices(args: argparse.Namespace) -> int:
    from harness.profiles import list_profiles, load_profile

    profiles = [load_profile(n) for n in (args.names or list_profiles())]
    rows = []
    for prof in profiles:
        peaks = {f"{u.name}_{prec}_gops": f.value for u in prof.units
                 for prec, f in u.peak_gops.items()}
        rows.append({"name": prof.name, "soc": prof.soc, "units": "+".join(
            u.name for u in prof.units), "ram_mb": prof.memory.ram_mb.value,
            "app_cap_mb": prof.memory.app_cap_mb.value,
            "bandwidth_gb_s": prof.memory.bandwidth_gb_s.value,
            "idle_w": prof.power.idle_w.value,
            "sustained_fraction": prof.thermal.sustained_fraction.value,
            "uncalibrated_figures": len(prof.uncalibrated()), **peaks})
    if args.format == "json":
        out = []
        for prof, row in zip(profiles, rows, strict=True):
            if args.sources:
                row = {**row, "figures": {k: vars(f) for k, f in prof.figures().items()}}
            out.append(row)
        print(json.dumps(out, indent=2))
        return 0
    from tabulate import tabulate

    keys = ["name", "soc", "units", "ram_mb", "app_cap_mb", "bandwidth_gb_s", "idle_w",
            "sustained_fraction", "uncalibrated_figures"]
    headers = ["name", "SoC", "units", "RAM (MB)", "app cap (MB)", "bandwidth (GB/s)",
               "idle (W)", "sustained", "uncalibrated"]
    print(tabulate([[r[k] for k in keys] for r in rows], headers=headers))
    print()
    peak_headers = ["name"] + [f"{u} {p} (GOPS)" for u in ("cpu", "gpu", "npu")
                               for p in ("fp32", "fp16", "int8", "int4")]
    peak_rows = [[r["name"]] + [r.get(h.split(" (")[0].replace(" ", "_") + "_gops", "")
                                for h in peak_headers[1:]] for r in rows]
    used = [i for i in range(len(peak_headers)) if any(row[i] != "" for row in peak_rows)]
    print(tabulate([[row[i] for i in used] for row in peak_rows],
                   headers=[peak_headers[i] for i in used]))
    if args.sources:
        for prof in profiles:
            print(f"\n{prof.name} ({prof.path}):")
            for key, f in prof.figures().items():
                print(f"  {key} = {f.value:g}  [{f.basis}] {f.source}")
    return 0


# --------------------------------------------------------------------------- report


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="rebuild the tables of a run directory",
                       description="Rebuild report.md and report.csv from a run directory's "
                                   "rows and print the table; nothing is re-run.")
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory under results/")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report.tables import write_report

    print(write_report(args.run))
    return 0


# --------------------------------------------------------------------------- suites


def _add_suites(sub: Any) -> None:
    p = sub.add_parser("suites", help="list the suites and what they sweep",
                       description="List the suite files in suites/ (or $HARNESS_SUITES_DIR) "
                                   "with their workloads, quantization and pruning levels and "
                                   "measurement settings. Pick one with `harness bench --suite "
                                   "NAME`, or pass the path of your own suite file; the format "
                                   "is described in README.md, section Suites.")
    p.set_defaults(func=_cmd_suites)


def _cmd_suites(args: argparse.Namespace) -> int:
    from harness.suites import list_suites, load_suite

    for name in list_suites():
        s = load_suite(name)
        print(f"{name}: {s.description}\n  workloads: {', '.join(w.name for w in s.workloads)}"
              f"\n  quant: {', '.join(q.name for q in s.quant)}"
              f"\n  prune %: {', '.join(p.name for p in s.prune)}"
              f"\n  measure: {s.measure.warmup} warm-up + {s.measure.iterations} timed runs, "
              f"{s.measure.threads} thread(s), timeout {s.measure.timeout_s:g} s")
    return 0


COMMANDS: list[Callable[[Any], None]] = [_add_bench, _add_devices, _add_report, _add_suites]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Benchmark compressed ML models on the host and emulate them on phones "
                    "and edge boards: latency, memory fit and quality per quantization and "
                    "pruning level.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; finished cases are saved (use --resume RUN)",
              file=sys.stderr)
        return 130
