"""Command line: a thin argparse front over library functions.

Subcommands are registered in :data:`COMMANDS`; each module they need is imported only when
that command runs, so ``harness --help`` stays fast and imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import HarnessError, InputError


def _number(cast: Callable[[str], Any], *, above: float | None = None,
            at_least: float | None = None, below: float | None = None) -> Callable[[str], Any]:
    """An argparse type: a finite number of ``cast`` within the bounds, else a usage error."""
    bounds = [f"> {above:g}"] if above is not None else []
    bounds += [f">= {at_least:g}"] if at_least is not None else []
    bounds += [f"< {below:g}"] if below is not None else []
    what = f"{'an integer' if cast is int else 'a number'}{' ' if bounds else ''}" \
           f"{' and '.join(bounds)}"

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (not math.isfinite(value) or (above is not None and value <= above)
                or (at_least is not None and value < at_least)
                or (below is not None and value >= below)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_POSITIVE = _number(float, above=0)
_POSITIVE_INT = _number(int, at_least=1)
_COUNT = _number(int, at_least=0)

EPILOG = """examples:
  harness bench --device snapdragon8gen3                 run the default suite
  harness bench --device raspberrypi5 --suite smoke --quant int8-static
  harness bench --resume results/20261122-081500-default-snapdragon8gen3
  harness bench --device snapdragon8gen3 --backend emulated --backend host --suite smoke
  harness emulate model.onnx --device snapdragon8gen3 --precision int8 --detail
  harness devices                                        list device profiles
  harness report results/<run>                           rebuild the tables of a run
  harness compare results/<base> results/<new> --fail-on regression
  harness gate results/baselines/nightly results/<new>   re-time both here, gate CI
  harness recommend results/<run> --device snapdragon8gen3 --max-latency-ms 5
  harness export results/<run> --format gab-smaller -o bench.json
"""


# --------------------------------------------------------------------------- bench


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench", help="run a suite: build, measure and emulate every case",
        description=textwrap.fill(
            "Run a sweep of workloads x quantization levels x pruning levels on the "
            "host, predict each case on the device profile(s), save the run under "
            "--results-dir and print the result table. Each case runs in its own "
            "worker process: a crash or hang becomes one error/timeout row.", 100) + "\n\n"
        + textwrap.fill(
            "Exit status: 0; 1 when no case is ok or a --fail-on status occurred; 2 on bad "
            "input (nothing is run); 130 when interrupted (finished cases are kept: "
            "--resume RUN completes the run).", 100),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", action="append", metavar="NAME",
                   help="device profile name from devices/ (repeatable); see `harness devices`. "
                        "Needed by backends that predict a device (emulated)")
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="where each case runs (repeatable; default: emulated): emulated = "
                        "measured on this machine under the device's memory cap, with the "
                        "emulator's device prediction; host = measured on this machine only; adb = "
                        "measured on a real phone (--adb or --serial, --runner). "
                        "Several backends give each cell one row per backend in one run")
    p.add_argument("--executor", default="local", metavar="NAME",
                   help="what runs the builds and cases: local (default; this machine, one "
                        "timed case at a time) or ray (the nodes of a Ray cluster, needs the "
                        "ray extra and a cache dir every node mounts; see docs/cluster.md)")
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="ray executor: the running cluster to use (default: a local Ray "
                        "instance started for the run)")
    p.add_argument("--adb", default=None, metavar="HOST:PORT",
                   help="adb backend: the phone over TCP (after `adb tcpip 5555`); see "
                        "docs/adb.md")
    p.add_argument("--serial", default=None, metavar="SERIAL",
                   help="adb backend: the phone over USB (needs adb-shell[usb])")
    p.add_argument("--runner", default=None, type=Path, metavar="PATH",
                   help="adb backend: onnxruntime_perf_test (ONNX artifacts) or TFLite's "
                        "benchmark_model (.tflite artifacts) built for Android, pushed to the "
                        "phone")
    p.add_argument("--runner-kind", default=None,
                   choices=("onnxruntime_perf_test", "benchmark_model"),
                   help="adb backend: which tool --runner is (default: benchmark_model when "
                        "its file name says so, else onnxruntime_perf_test)")
    p.add_argument("--telemetry", default="auto", choices=("auto", "stream", "file", "off"),
                   help="adb backend: how the phone's temperatures, clocks and battery are "
                        "sampled during a case: stream (a loop read live on a second "
                        "connection), file (the loop runs beside the runner in its shell and "
                        "is read back after the run: one connection), off; default auto: "
                        "stream over --adb, file over --serial (USB has one connection)")
    p.add_argument("--cooldown-c", default=3.0, type=float, metavar="MARGIN",
                   help="adb backend: before each case wait until the SoC is within MARGIN "
                        "°C of its temperature at connect (default 3.0)")
    p.add_argument("--cooldown-max-s", default=120.0, type=float, metavar="S",
                   help="adb backend: wait at most S seconds for that, then run the case "
                        "marked started_hot (default 120; 0: no cooldown wait)")
    p.add_argument("--suite", default=None, metavar="NAME|PATH",
                   help="suite name from suites/ or a path to a suite file (default: default, "
                        "or the resumed run's)")
    p.add_argument("--workload", action="append", metavar="NAME",
                   help="only this workload of the suite (repeatable)")
    p.add_argument("--quant", action="append", metavar="LEVEL",
                   help="only this quantization level, e.g. fp32, fp16, int8-static, int4-b64, "
                        "int8-mixed-10, torch-int8-dynamic (repeatable; see docs/compression.md)")
    p.add_argument("--prune", action="append", metavar="LEVEL",
                   help="only this pruning level, e.g. 0, 50 (global magnitude %%), 2:4, "
                        "channel-l1-25, channel-l2-50+ft, head-l2-25, neuron-l1-50 "
                        "(repeatable)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="full shape of an input with dynamic dimensions of your ONNX "
                        "workloads (repeatable), as onnxruntime_perf_test -f; the host times "
                        "and the emulator costs exactly this shape. Overrides the suite's "
                        "`shapes`")
    p.add_argument("--iterations", type=_POSITIVE_INT, metavar="N",
                   help="timed samples per case, at least (default: the suite's)")
    p.add_argument("--min-time-s", type=_number(float, at_least=0), metavar="S",
                   help="keep timing until the samples span S seconds (default: the suite's, "
                        "0.2), as benchmark_model --min_secs; calls of a few µs are timed "
                        "several per sample")
    p.add_argument("--warmup", type=_COUNT, metavar="N",
                   help="untimed runs after the first inference (default: the suite's)")
    p.add_argument("--passes", type=_POSITIVE_INT, metavar="N",
                   help="go over the cases N times (default: the suite's, 1); passes after "
                        "the first time only, in reverse order, and pool their samples into "
                        "each row, so a drift of this host's speed weighs on every level "
                        "alike (the llm suite uses 3)")
    p.add_argument("--timeout-s", type=_POSITIVE, metavar="S",
                   help="limit per case for building and for measuring (default: the suite's)")
    p.add_argument("--threads", type=_COUNT, metavar="N",
                   help="ONNX Runtime intra-op threads, 0 = runtime default "
                        "(default: the suite's)")
    p.add_argument("--sustained-s", type=_POSITIVE, metavar="S",
                   help="length of the emulated sustained run on the device, in simulated "
                        "seconds (default: the suite's, 600)")
    p.add_argument("--period-ms", type=_POSITIVE, metavar="MS",
                   help="emulate one inference per period (e.g. 33.3 for a 30 fps camera) "
                        "instead of back to back")
    p.add_argument("--pace", action="store_true", default=None,
                   help="pad each timed host run to the predicted device latency, to feel the "
                        "device; cases where the host is slower than the device are reported")
    p.add_argument("--eval-size", choices=("small", "full"), default=None,
                   help="evaluation data per quality metric: small keeps the default sweep "
                        "near 7 minutes on 2 cores, full is several times larger "
                        "(default: small, or the resumed run's)")
    p.add_argument("--results-dir", type=Path, default=Path("results"), metavar="DIR",
                   help="where run directories are created (default: results)")
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="append to this run directory, skipping the cases it already has; "
                        "suite, devices, backends and filters default to the run's and must "
                        "match it if given")
    p.add_argument("--retry", action="append", default=[], metavar="STATUS",
                   choices=("error", "timeout", "oom", "unsupported", "device_lost"),
                   help="with --resume: run the cases that ended with this status again "
                        "(repeatable), e.g. --retry error after a worker was killed")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="artifact and model cache (default: $HARNESS_CACHE_DIR or "
                        "~/.cache/edge-harness)")
    p.add_argument("--fail-on", action="append", default=[], metavar="STATUS",
                   choices=("error", "oom", "unsupported", "timeout", "device_lost"),
                   help="exit with status 1 when any case ends with this status (repeatable: "
                        "error, oom, unsupported, timeout, device_lost). Without it, bench exits "
                        "1 only when no case is ok")
    _add_table_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-bar", action="store_true",
                   help="progress as one line per case even on a terminal (a bar is shown "
                        "only when stderr is a terminal)")
    p.set_defaults(func=_cmd_bench)


_WIDE_HELP = ("table: every column, however wide (default: fitted to the terminal's width, "
              "$COLUMNS first, hiding the least important columns)")


def _add_table_args(p: argparse.ArgumentParser) -> None:
    """--wide and --columns of the run summary (bench, report)."""
    p.add_argument("--wide", action="store_true",
                   help="print every summary column, however wide (default: the deciding "
                        "columns, fitted to the terminal's width, $COLUMNS first)")
    p.add_argument("--columns", type=_column_list, metavar="NAME,...",
                   help="print these figures (report.csv column names, e.g. "
                        "host_p90_ms,energy_mj) after the case and status instead of the "
                        "deciding ones")


def _column_list(text: str) -> tuple[str, ...]:
    from harness.report.tables import check_columns

    try:
        return check_columns([c.strip() for c in text.split(",") if c.strip()])
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _ProgressPrinter:
    """Progress on stderr. On a terminal: a bar with elapsed time and ETA, the case being
    measured, and a line for each case that is not ok. Elsewhere (CI logs, files): one line
    when a case starts and one when it ends, with an ETA from the mean case time so far."""

    def __init__(self, *, bar: bool) -> None:
        self.durations: list[float] = []
        self.use_bar = bar
        self.bar: Any = None
        self.counts = {"ok": 0, "not ok": 0}
        self.pass_no = 1

    def note(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, p: Any) -> None:
        if self.bar is not None and p.pass_no != self.pass_no:
            self.close()  # a new pass of the sweep: a new bar over its cases
        if p.pass_no != self.pass_no:
            self.pass_no, self.durations = p.pass_no, []
        if self.use_bar and self.bar is None:
            import shutil

            from tqdm import tqdm

            # the width from $COLUMNS or the terminal (tqdm's own query gives 0 on some ptys)
            width = shutil.get_terminal_size(fallback=(100, 24)).columns
            self.bar = tqdm(total=p.total, unit="case", file=sys.stderr, ncols=width,
                            desc=f"pass {p.pass_no}/{p.passes}" if p.passes > 1 else None,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                       "[{elapsed}<{remaining}{postfix}]")
        where = f" pass {p.pass_no}/{p.passes}" if p.passes > 1 else ""
        head = f"[{p.index}/{p.total}{where}] {p.case.case_id}"
        if p.skipped:
            if self.bar is not None:
                self.bar.update(1)
            else:
                print(f"{head}: already in the run, skipped", file=sys.stderr, flush=True)
            return
        m = p.measurement
        if m is None:
            if self.bar is not None:
                self.bar.set_description_str((where + ' ').lstrip() + p.case.case_id[-48:],
                                             refresh=True)
            else:
                print(f"{head} ...", file=sys.stderr, flush=True)
            return
        self.durations.append(m.duration_s or 0.0)
        line = f"{head}: {m.status} ({m.duration_s or 0:.1f} s) {self._detail(m)}"
        if self.bar is not None:
            self.counts["ok" if m.status == "ok" else "not ok"] += 1
            self.bar.update(1)
            self.bar.set_postfix_str(f"{self.counts['ok']} ok, {self.counts['not ok']} not ok")
            if m.status != "ok":
                self.bar.write(line, file=sys.stderr)
            return
        left = p.total - p.index
        # later passes go over the cases again (fewer if some failed; quicker, timing only)
        remaining = left + (p.passes - p.pass_no) * p.total
        eta = ""
        if remaining and self.durations:
            secs = remaining * sum(self.durations) / len(self.durations)
            eta = f", ETA {int(secs // 60)} min {int(secs % 60):02d} s" if secs >= 60 \
                else f", ETA {secs:.0f} s"
        print(f"{line} [{left} left{eta}]", file=sys.stderr, flush=True)

    @staticmethod
    def _detail(m: Any) -> str:
        detail = m.reason if m.status != "ok" else ""
        samples = m.samples_ns()
        if samples:
            import statistics

            p50 = statistics.median(samples) / 1e6
            detail = f"host p50 {p50:.3f} ms" + (f"; {detail}" if detail else "")
            pace = m.measured.pace if m.measured else None
            if pace and pace.get("target_ms"):
                t = pace["target_ms"]
                t0, t1 = (t[0], t[-1]) if isinstance(t, list) else (t, t)
                detail += f"; paced at {t0:.3f}" + (f" -> {t1:.3f}" if t1 != t0 else "") + " ms"
                if pace.get("overruns"):
                    detail += (f" (PACING: the host was slower than the device in "
                               f"{pace['overruns']} of {len(samples)} runs)")
        pred = m.predicted
        if pred.latency_ms is not None:
            detail += f"; device {pred.latency_ms:.3f} ms burst"
            if pred.sustained_latency_ms is not None:
                detail += f", {pred.sustained_latency_ms:.3f} ms sustained"
        return str(detail)


def _print_note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cmd_bench(args: argparse.Namespace) -> int:
    from harness.report.tables import write_report
    from harness.sweep import BenchOptions, MeasureOverrides, run_bench

    options = BenchOptions(
        devices=tuple(args.device or ()), backends=tuple(args.backend or ()),
        suite=args.suite, workloads=_opt_tuple(args.workload), quant=_opt_tuple(args.quant),
        prune=_opt_tuple(args.prune), results_dir=args.results_dir, resume=args.resume,
        cache_dir=args.cache_dir, eval_size=args.eval_size, command_line=tuple(sys.argv),
        shapes=tuple((k, tuple(v)) for k, v in _parse_shapes(args.shape).items()),
        retry=tuple(args.retry), adb=args.adb, serial=args.serial, runner=args.runner,
        runner_kind=args.runner_kind,
        cooldown_c=args.cooldown_c, cooldown_max_s=args.cooldown_max_s,
        telemetry=args.telemetry,
        executor=args.executor, ray_address=args.ray_address,
        overrides=MeasureOverrides(
            iterations=args.iterations, warmup=args.warmup, timeout_s=args.timeout_s,
            threads=args.threads, sustained_s=args.sustained_s, period_ms=args.period_ms,
            pace=args.pace, min_time_s=args.min_time_s, passes=args.passes))
    started: list[Path] = []
    printer = _ProgressPrinter(bar=sys.stderr.isatty() and not args.no_bar)
    try:
        run_dir = run_bench(options, progress=None if args.quiet else printer,
                            note=None if args.quiet else printer.note,
                            on_run_dir=started.append)
    except KeyboardInterrupt:
        printer.close()
        if not started:
            raise
        import shlex

        from harness.results import load_run

        done = len(load_run(started[0]).rows)
        print(f"\nharness: interrupted; {done} finished case(s) are saved in {started[0]}. "
              f"To finish the run:\n  harness bench --resume {shlex.quote(str(started[0]))}",
              file=sys.stderr)
        return 130
    printer.close()
    print(write_report(run_dir, wide=args.wide, columns=args.columns))
    print(f"\nrun saved in {run_dir} (report.html, report.md, report.csv, plots/, "
          "cases.jsonl)")
    return _bench_status(run_dir, fail_on=args.fail_on)


def _bench_status(run_dir: Path, *, fail_on: list[str]) -> int:
    """0, or 1 when no case is ok or a case ended with a --fail-on status (said on stderr)."""
    from collections import Counter

    from harness.results import load_run

    counts = Counter(m.status for m in load_run(run_dir).measurements)
    if counts and not counts["ok"]:
        print(f"harness: no case is ok ({dict(counts)})", file=sys.stderr)
        return 1
    failing = {s: counts[s] for s in fail_on if counts[s]}
    if failing:
        print(f"harness: --fail-on: {', '.join(f'{n} {s}' for s, n in failing.items())}",
              file=sys.stderr)
        return 1
    return 0


def _opt_tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values else None


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
    p.add_argument("--wide", action="store_true", help=_WIDE_HELP)
    p.set_defaults(func=_cmd_devices)


def _cmd_devices(args: argparse.Namespace) -> int:
    """Every good profile is listed, then every bad one is reported with its error (exit 1):
    one broken file must not hide the others."""
    from harness.datafiles import find_toml
    from harness.profiles import default_devices_dir, list_profiles, load_profile

    profiles: list[Any] = []
    bad: list[HarnessError] = []
    for name in args.names or list_profiles():
        # an unknown name is a usage error (exit 2), as before; a broken file is listed below
        path = find_toml(name, default_devices_dir(), kind="device")
        try:
            profiles.append(load_profile(path))
        except HarnessError as exc:
            bad.append(exc)
    _print_devices(args, profiles)
    for problem in bad:
        print(f"harness: error: {problem}", file=sys.stderr)
    if bad:
        print(f"harness: {len(bad)} of {len(bad) + len(profiles)} device profiles are invalid "
              "(listed above)", file=sys.stderr)
        return 1
    return 0


def _print_devices(args: argparse.Namespace, profiles: list[Any]) -> None:
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
        return
    from harness.report.term import Column, sig, table

    # Given up when the terminal is narrow, highest first: uncalibrated figures, idle power,
    # RAM, then the SoC name wraps.
    print(table([Column("name"), Column("SoC", wrap=True, priority=1, min_width=12),
                 Column("units"), Column("RAM (MB)", "right", priority=3),
                 Column("app cap (MB)", "right"), Column("bandwidth (GB/s)", "right"),
                 Column("idle (W)", "right", priority=4), Column("sustained", "right"),
                 Column("uncalibrated", "right", priority=5)],
                [[r["name"], r["soc"], r["units"], sig(r["ram_mb"]), sig(r["app_cap_mb"]),
                  sig(r["bandwidth_gb_s"]), sig(r["idle_w"]), sig(r["sustained_fraction"]),
                  str(r["uncalibrated_figures"])] for r in rows], wide=args.wide))
    print()
    # Peak throughput per unit and precision; int8 (what deployed models run) is kept longest.
    units = [(u, p) for u in ("cpu", "gpu", "npu") for p in ("fp32", "fp16", "int8", "int4")
             if any(f"{u}_{p}_gops" in r for r in rows)]
    drop = {"int8": 0, "fp16": 1, "int4": 2, "fp32": 3}
    print(table([Column("name"), *(Column(f"{u} {p} (GOPS)", "right", priority=drop[p])
                                   for u, p in units)],
                [[r["name"], *(sig(r.get(f"{u}_{p}_gops")) for u, p in units)] for r in rows],
                wide=args.wide))
    if args.sources:
        for prof in profiles:
            print(f"\n{prof.name} ({prof.path}):")
            for key, f in prof.figures().items():
                print(f"  {key} = {f.value:g}  [{f.basis}] {f.source}")


# --------------------------------------------------------------------------- report


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="rebuild the tables, plots and HTML report of a run",
                       description="Rebuild report.md, report.csv, report.json, plots/ (PNG "
                                   "and SVG) and the self-contained report.html from a run "
                                   "directory's rows and print the table; nothing is re-run.")
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory under results/")
    p.add_argument("--format", choices=("terminal", "markdown", "csv", "json"),
                   default="terminal", help="what to print (default: terminal)")
    p.add_argument("--no-plots", action="store_true", help="skip plots/ and report.html")
    _add_table_args(p)
    p.add_argument("--unstable-threshold", type=_POSITIVE, default=None, metavar="FRACTION",
                   help="flag rows whose warm samples have (p90-p10)/p50 above this "
                        "(default: 0.20)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report.stats import UNSTABLE_SPREAD
    from harness.report.tables import write_report

    threshold = UNSTABLE_SPREAD if args.unstable_threshold is None else args.unstable_threshold
    table = write_report(args.run, html=not args.no_plots, plots=not args.no_plots,
                         unstable_threshold=threshold, wide=args.wide, columns=args.columns)
    files = {"markdown": "report.md", "csv": "report.csv", "json": "report.json"}
    print((args.run / files[args.format]).read_text() if args.format in files else table,
          end="" if args.format in files else "\n")
    return 0


def _add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare", help="compare two runs case by case (release notes, CI gating)",
        description="Compare run B against baseline run A, joined on case id: host latency "
                    "ratio B/A with a bootstrap confidence interval and a verdict (faster / "
                    "slower / same: a change is claimed only when the interval lies beyond "
                    "the noise threshold), predicted device latency, size, memory, fit and "
                    "quality changes. Prints a table fitted to the terminal, Markdown (for "
                    "release notes or $GITHUB_STEP_SUMMARY: the default when the output is "
                    "redirected) or JSON.",
        epilog="example: harness compare results/base results/new --fail-on regression "
               "--format markdown "
               ">> \"$GITHUB_STEP_SUMMARY\"")
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="the baseline run directory")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the new run directory")
    p.add_argument("--threshold", type=_number(float, at_least=0), default=0.10,
                   metavar="FRACTION",
                   help="smallest relative change that counts (default: 0.10)")
    p.add_argument("--confidence", type=_number(float, above=0, below=1), default=0.95,
                   metavar="LEVEL",
                   help="confidence level of the interval (default: 0.95)")
    p.add_argument("--quality-tolerance", type=_number(float, at_least=0), default=0.005,
                   metavar="DELTA",
                   help="quality changes smaller than this (metric units) are ignored "
                        "(default: 0.005)")
    p.add_argument("--format", choices=("table", "markdown", "json"),
                   help="table (default on a terminal), markdown (default when the output is "
                        "piped or redirected, as to $GITHUB_STEP_SUMMARY) or json")
    p.add_argument("--wide", action="store_true", help=_WIDE_HELP)
    p.add_argument("--fail-on", choices=("regression", "change", "never"), default="never",
                   help="exit with status 1 when a case regressed (or changed at all); "
                        "default: never")
    p.set_defaults(func=_cmd_compare)


def _table_or_markdown() -> str:
    """The default format of compare and recommend: the terminal table on a terminal, GitHub
    Markdown when the output goes to a file or pipe (a CI step summary, release notes)."""
    return "table" if sys.stdout.isatty() else "markdown"


def _cmd_compare(args: argparse.Namespace) -> int:
    from harness.report.compare import CompareOptions, compare_runs, to_json, to_markdown, to_table
    from harness.results import load_run

    opts = CompareOptions(threshold=args.threshold, confidence=args.confidence,
                          quality_tolerance=args.quality_tolerance)
    cmp = compare_runs(load_run(args.run_a), load_run(args.run_b), opts)
    fmt = args.format or _table_or_markdown()
    print(to_table(cmp, wide=args.wide) if fmt == "table"
          else to_markdown(cmp) if fmt == "markdown" else to_json(cmp), end="")
    if cmp.fails(args.fail_on):
        print(f"harness: {len(cmp.regressions)} case(s) regressed"
              if args.fail_on == "regression" else "harness: the runs differ", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- gate


def _add_gate(sub: Any) -> None:
    from harness.gate import DEFAULT_ALPHA, DEFAULT_BLOCK, DEFAULT_ROUNDS, DEFAULT_THRESHOLD

    p = sub.add_parser(
        "gate", help="re-time two runs' artifacts here, interleaved, and gate on a confirmed "
                     "slowdown (nightly CI)",
        description="For every case ok in both runs, load the baseline's and the candidate's "
                    "artifacts in one worker and time them in interleaved ABBA rounds; the "
                    "median per-round ratio B/A must clear a noise band with Holm's "
                    "correction over the cases, and a suspected regression must be "
                    "confirmed by a re-run. Deterministic figures (prediction, memory, fit, "
                    "size, quality, status) are compared exactly; a changed emulator or "
                    "profile is reported as such. Exit status: 0 no confirmed regression, "
                    "1 at least one, 2 bad input (run not found, no common case, artifacts "
                    "gone). `--self-test` measures false alarms and detection on this "
                    "machine instead.",
        epilog="example: harness gate results/baselines/nightly results/<run> "
               ">> \"$GITHUB_STEP_SUMMARY\"")
    p.add_argument("baseline", type=Path, nargs="?", metavar="BASELINE_RUN")
    p.add_argument("candidate", type=Path, nargs="?", metavar="CANDIDATE_RUN")
    p.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="artifact cache (default: $HARNESS_CACHE_DIR or "
                        "~/.cache/edge-harness); artifacts beside the baseline come first")
    p.add_argument("--rounds", type=_number(int, at_least=4), default=DEFAULT_ROUNDS,
                   metavar="N", help=f"interleaved ABBA rounds per case (default: "
                                     f"{DEFAULT_ROUNDS}, measured: docs/comparing-runs.md)")
    p.add_argument("--block", type=_POSITIVE_INT, default=DEFAULT_BLOCK, metavar="N",
                   help=f"samples per block (default: {DEFAULT_BLOCK})")
    p.add_argument("--threshold", type=_number(float, at_least=0, below=1),
                   default=DEFAULT_THRESHOLD, metavar="FRACTION",
                   help=f"noise band: smaller changes are `same` (default: "
                        f"{DEFAULT_THRESHOLD}, measured: docs/comparing-runs.md)")
    p.add_argument("--alpha", type=_number(float, above=0, below=0.5), default=DEFAULT_ALPHA,
                   metavar="P", help=f"family-wise error rate over the cases, Holm "
                                     f"(default: {DEFAULT_ALPHA})")
    p.add_argument("--quality-tolerance", type=_number(float, at_least=0), default=0.0,
                   metavar="DELTA", help="quality drops up to this are listed, not "
                                         "regressions (default: 0, exact)")
    p.add_argument("--no-confirm", action="store_true",
                   help="count a suspected regression without re-running it")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="also write the comparison to FILE (before the exit status is set)")
    p.add_argument("--json-output", type=Path, default=None, metavar="FILE",
                   help="also write the JSON form to FILE, whatever --format (the nightly "
                        "session indexes its verdict counts: harness history add)")
    p.add_argument("--self-test", action="store_true",
                   help="measure the false-alarm rate (A/A) and the detection of 5%% and "
                        "10%% more work on this machine, with these settings")
    p.add_argument("--comparisons", type=_POSITIVE_INT, default=100, metavar="N",
                   help="self-test: comparisons of each kind (default: 100, about 3 min on 2 "
                        "cores; 300, about 10 min, bound the false-alarm rate near 1%%)")
    p.set_defaults(func=_cmd_gate)


def _cmd_gate(args: argparse.Namespace) -> int:
    import dataclasses

    from harness.gate import GateOptions, gate_runs, to_json, to_markdown

    opts = GateOptions(rounds=args.rounds, block=args.block, threshold=args.threshold,
                       alpha=args.alpha, confirm=not args.no_confirm,
                       quality_tolerance=args.quality_tolerance)
    if args.self_test:
        import tempfile

        from harness.gate import self_test, selftest_markdown

        with tempfile.TemporaryDirectory(prefix="harness-gate-selftest-") as tmp:
            st = self_test(opts, comparisons=args.comparisons, workdir=Path(tmp),
                           progress=_print_note)
        if args.format == "json":
            print(json.dumps({**dataclasses.asdict(st), "meets_targets": st.meets_targets()},
                             indent=1))
        else:
            print(selftest_markdown(st), end="")
        return 0 if st.meets_targets() else 1
    if args.baseline is None or args.candidate is None:
        raise InputError("expected BASELINE_RUN and CANDIDATE_RUN (or --self-test)")
    for what, path in (("baseline", args.baseline), ("candidate", args.candidate)):
        if not path.is_dir():
            raise InputError(f"the {what} run does not exist", file=path)
    result = gate_runs(args.baseline, args.candidate, opts, cache_dir=args.cache_dir,
                       progress=_print_note)
    text = to_markdown(result) if args.format == "markdown" else to_json(result)
    if args.output is not None:
        _write_output(args.output, text)
    if args.json_output is not None:
        _write_output(args.json_output, to_json(result))
    print(text, end="")
    if result.regressions:
        print(f"harness: {len(result.regressions)} case(s) regressed: "
              + ", ".join(c.case_id for c in result.regressions), file=sys.stderr)
        return 1
    return 0


def _add_baseline(sub: Any) -> None:
    from harness.baseline import BASELINES, DEFAULT_NAME

    p = sub.add_parser("baseline", help="keep a run as a baseline for `harness gate`")
    bsub = p.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    pp = bsub.add_parser(
        "promote", help="copy a run and its artifacts to results/baselines/NAME",
        description="Copy the run's manifest and rows and the artifacts its rows name "
                    "(content-addressed) to BASELINES_DIR/NAME, replacing an older baseline "
                    "of that name once the copy is complete, so a later gate can re-time the "
                    "baseline's artifacts on a fresh machine.")
    pp.add_argument("run", type=Path, metavar="RUN")
    pp.add_argument("--name", default=DEFAULT_NAME, help=f"default: {DEFAULT_NAME}")
    pp.add_argument("--baselines-dir", type=Path, default=BASELINES, metavar="DIR",
                    help=f"default: {BASELINES}")
    pp.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                    help="artifact cache (default: $HARNESS_CACHE_DIR or ~/.cache/edge-harness)")
    pp.set_defaults(func=_cmd_baseline_promote)


def _cmd_baseline_promote(args: argparse.Namespace) -> int:
    from harness.baseline import promote

    if not args.run.is_dir():
        raise InputError("the run does not exist", file=args.run)
    out = promote(args.run, name=args.name, baselines_dir=args.baselines_dir,
                  cache_dir=args.cache_dir)
    print(f"baseline {args.name}: {out}")
    return 0


def _add_history(sub: Any) -> None:
    from harness.history import DEFAULT_K, DEFAULT_Z, METRICS

    p = sub.add_parser(
        "history", help="a metric of the indexed nightly runs over time, with change points",
        description="`harness history METRIC`: one figure per case from every run indexed in "
                    "RESULTS_DIR/history.jsonl (oldest first): a table (run x case) and a "
                    "plot (PNG and SVG) with change points marked: a run where the median of "
                    f"the {DEFAULT_K} runs from it on differs from the median of the "
                    f"{DEFAULT_K} runs before by more than {DEFAULT_Z:g} x the run-to-run "
                    "noise (1.4826 MAD of consecutive differences / sqrt 2); see "
                    "docs/comparing-runs.md. METRIC: " + ", ".join(METRICS) + ". "
                    "`harness history add RUN [--gate-json FILE]` indexes a run (the nightly "
                    "session does). Exit status 2 when the index is missing or empty.")
    p.add_argument("metric", metavar="METRIC|add", help="a metric, or `add` to index RUN")
    p.add_argument("run", type=Path, nargs="?", metavar="RUN", help="with `add`: the run")
    p.add_argument("--case", action="append", default=[], metavar="CASE_ID",
                   help="only this case (repeat for more; default: every case)")
    p.add_argument("--results-dir", type=Path, default=Path("results"), metavar="DIR",
                   help="where history.jsonl is (default: results)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="PLOT.png",
                   help="the plot (an SVG is written beside it; default: "
                        "RESULTS_DIR/history-METRIC.png)")
    p.add_argument("--gate-json", type=Path, default=None, metavar="FILE",
                   help="with `add`: the gate's JSON output, for the verdict counts "
                        "(default: RUN/gate.json when it exists)")
    p.set_defaults(func=_cmd_history)


def _cmd_history(args: argparse.Namespace) -> int:
    from harness import history

    if args.metric == "add":
        if args.run is None:
            raise InputError("expected RUN: harness history add RUN")
        if not args.run.is_dir():
            raise InputError("the run does not exist", file=args.run)
        gate_json = args.gate_json or args.run / "gate.json"
        summary = None
        if gate_json.is_file():
            try:
                cases = json.loads(gate_json.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(f"cannot read the gate's JSON: {exc}",
                                 file=gate_json) from exc
            if not isinstance(cases, list):
                raise InputError("expected a list (harness gate --format json)",
                                 file=gate_json)
            summary = history.gate_summary(cases)
        elif args.gate_json is not None:
            raise InputError("no such file", file=args.gate_json, field="--gate-json")
        entry = history.record(args.results_dir, args.run, summary)
        print(f"indexed {entry['run_id']} in {history.index_path(args.results_dir)}")
        return 0
    if args.run is not None:
        raise InputError(f"unexpected argument {str(args.run)!r} (RUN goes with `add`)")
    if args.gate_json is not None:
        raise InputError("--gate-json goes with `add`", field="--gate-json")
    png = args.output or args.results_dir / f"history-{args.metric}.png"
    if png.suffix.lower() != ".png":
        raise InputError("expected a .png path (the SVG is written beside it)", file=png,
                         field="--output")
    h = history.load_history(args.results_dir, args.metric, cases=args.case or None)
    for s in h.skipped:
        print(f"warning: indexed run skipped: {s}", file=sys.stderr)
    print(history.table(h))
    unit = history.UNITS[h.metric]
    if h.change_points:
        print(f"\nchange points (* above; k={history.DEFAULT_K}, "
              f"{history.DEFAULT_Z:g} x noise):")
        for cp in h.change_points:
            pct = "" if cp.change_pct is None else f" ({cp.change_pct:+.1f}%)"
            print(f"  {cp.case_id}: from run {cp.run_id}: {cp.before:.4g} -> "
                  f"{cp.after:.4g} {unit}{pct}, noise {cp.noise:.3g}")
    else:
        print(f"\nno change point (k={history.DEFAULT_K}, {history.DEFAULT_Z:g} x noise; "
              f"a change needs {history.DEFAULT_K} runs on each side)")
    out_png, out_svg = history.write_plot(h, png)
    print(f"plot: {out_png} and {out_svg}", file=sys.stderr)
    return 0


def _add_recommend(sub: Any) -> None:
    p = sub.add_parser(
        "recommend", help="which variant to ship on a device, given budgets",
        description="The variants of a run that meet the budgets on a device, best first "
                    "along the latency-vs-quality Pareto front (fastest first), and the reason "
                    "every other variant was rejected. Latency and memory are the emulator's "
                    "device predictions; quality comes from the host run. Exit status: 0 when "
                    "some variant meets the budgets, 1 when none does, 2 on bad input.")
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory")
    p.add_argument("--device", required=True, metavar="NAME", help="a device of the run")
    p.add_argument("--workload", metavar="NAME", help="only this workload of the run")
    p.add_argument("--max-latency-ms", type=_POSITIVE, metavar="MS",
                   help="predicted device latency budget")
    p.add_argument("--max-memory-mb", type=_POSITIVE, metavar="MB",
                   help="predicted device memory budget (MB)")
    p.add_argument("--min-quality", type=_number(float), metavar="Q",
                   help="quality floor in the workload's metric (a ceiling when lower is "
                        "better)")
    p.add_argument("--sustained", action="store_true",
                   help="judge latency after thermal throttling (when the run has it)")
    p.add_argument("--format", choices=("table", "markdown", "json", "text"),
                   help="table (default on a terminal), markdown (default when the output is "
                        "piped or redirected) or json; text is the older name of table")
    p.add_argument("--wide", action="store_true", help=_WIDE_HELP)
    p.set_defaults(func=_cmd_recommend)


def _cmd_recommend(args: argparse.Namespace) -> int:
    from harness.report.recommend import Budgets, recommend, to_json, to_markdown, to_table
    from harness.results import load_run

    rec = recommend(load_run(args.run), args.device, Budgets(
        max_latency_ms=args.max_latency_ms, max_memory_mb=args.max_memory_mb,
        min_quality=args.min_quality, sustained=args.sustained), workload=args.workload)
    fmt = args.format or _table_or_markdown()
    print(to_table(rec, wide=args.wide) if fmt in ("table", "text")
          else to_markdown(rec) if fmt == "markdown" else to_json(rec), end="")
    # nothing meets the budgets: a CI step asking "is there a variant to ship?" fails
    return 0 if rec.accepted else 1


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="export a run for existing dashboards",
        description="Write a run as JSON for existing dashboards: github-action-benchmark's "
                    "customSmallerIsBetter (gab-smaller: latencies, size, device memory) or "
                    "customBiggerIsBetter (gab-bigger: quality), or pytest-benchmark's "
                    "--benchmark-json format (pytest-benchmark: raw warm samples as rounds).")
    p.add_argument("run", type=Path, metavar="RUN", help="a run directory")
    from harness.report.export import EXPORTERS

    p.add_argument("--format", required=True, choices=EXPORTERS.names())
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="write here instead of stdout")
    p.set_defaults(func=_cmd_export)


def _write_output(path: Path, text: str) -> None:
    """Write an -o/--output file; a missing or unwritable directory is an InputError."""
    if not path.parent.is_dir():
        raise InputError("no such directory (create it first)", file=path.parent,
                         field="--output")
    try:
        from harness.fsutil import atomic_write_text

        atomic_write_text(path, text)
    except OSError as exc:
        raise InputError(f"cannot write the file: {exc.strerror or exc}", file=path,
                         field="--output") from None


def _cmd_export(args: argparse.Namespace) -> int:
    from harness.report.export import export
    from harness.results import load_run

    text = export(load_run(args.run), args.format)
    if args.output:
        _write_output(args.output, text)
    else:
        print(text, end="")
    return 0


# --------------------------------------------------------------------------- emulate


def _add_emulate(sub: Any) -> None:
    p = sub.add_parser(
        "emulate", help="predict latency, memory, energy and heat of ONNX models on devices",
        description="Predict what ONNX models would do on device profiles, without running "
                    "them: latency (burst, and sustained under heat with --duration or "
                    "--iterations), peak memory against the app's cap, energy and power, and "
                    "with --detail the unit, time and share of every node and why nodes fell "
                    "back from the NPU. --precision emulates float models at another precision "
                    "without quantizing them. JSON output is a list with one object per "
                    "(model, device, precision).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  harness emulate model.onnx --device snapdragon8gen3 "
               "--device raspberrypi5 --precision fp32 --precision int8 --format json\n"
               "  harness emulate model.gguf --device snapdragon8gen3 --prompt-tokens 256 "
               "--gen-tokens 128   (as stored; --precision q8_0: a what-if)")
    p.add_argument("models", nargs="+", type=Path, metavar="MODEL.onnx",
                   help="ONNX models, or decoders for text generation (docs/llm.md): Hugging "
                        "Face config.json files (the architecture), GGUF files (architecture "
                        "and every tensor's stored type and bytes) or ONNX decoder graphs")
    p.add_argument("--device", action="append", required=True, metavar="NAME",
                   help="device profile (repeatable); see `harness devices`")
    p.add_argument("--precision", action="append", metavar="P",
                   choices=_GRAPH_PRECISIONS + _LLM_ONLY_PRECISIONS,
                   help="what-if precision for float nodes (repeatable; default: as stored): "
                        "int4 = 4-bit weights and 16-bit activations, w8a16 = 8-bit weights "
                        "and 16-bit activations at the fp16 rate. For a decoder also "
                        + ", ".join(_LLM_ONLY_PRECISIONS) + " (default: q4_k_m for a "
                        "config.json, the stored weights of a GGUF file or decoder graph)")
    p.add_argument("--unit", default="auto", choices=("auto", "cpu", "gpu", "npu"),
                   help="auto (default) places each node on the best unit; cpu/gpu/npu forces "
                        "one (nodes it cannot run fall back to the CPU; a device without that "
                        "unit gets an error entry)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--wide", action="store_true", help=_WIDE_HELP)
    p.add_argument("--detail", action="store_true", help="include the per-node breakdown")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--duration", type=_POSITIVE, metavar="S",
                   help="also simulate a sustained run of S seconds (device time)")
    g.add_argument("--iterations", type=_POSITIVE_INT, metavar="N",
                   help="also simulate a sustained run of N back-to-back inferences")
    p.add_argument("--period-ms", type=_POSITIVE, metavar="MS",
                   help="in the sustained run, one inference per period (idle in between)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="full shape of a model input with dynamic dimensions (repeatable; "
                        "other dynamic dimensions are 1)")
    _add_generation_args(p)
    p.set_defaults(func=_cmd_emulate)


_GRAPH_PRECISIONS = ("fp32", "fp16", "int8", "int4", "w8a16")
_LLM_ONLY_PRECISIONS = ("bf16", "w4a16", "w4a8", "q2_k", "q3_k_m", "q4_0", "q4_1", "q4_k_m",
                        "q5_k_m", "q6_k", "q8_0", "f16")


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "text generation (when MODEL is a Hugging Face config.json of a decoder, a GGUF file "
        "of a llama-like decoder, or an ONNX decoder graph with a KV cache, as ONNX Runtime "
        "GenAI builds them: docs/llm.md)")
    g.add_argument("--prompt-tokens", type=_POSITIVE_INT, default=128, metavar="N",
                   help="prompt length: prefill and time to first token (default 128)")
    g.add_argument("--gen-tokens", type=_POSITIVE_INT, default=128, metavar="M",
                   help="generated tokens: decode (default 128)")
    g.add_argument("--context", type=_POSITIVE_INT, metavar="C",
                   help="KV cache length for memory (default prompt + generated tokens)")


def _cmd_emulate_generation(args: argparse.Namespace, configs: list[Path]) -> int:
    """`harness emulate CONFIG.json|MODEL.gguf ...`: prefill, TTFT, decode, KV cache, memory,
    energy."""
    from harness.errors import InputError
    from harness.whatif import emulate_generation

    if len(configs) != len(args.models):
        raise InputError("give either ONNX models or decoders (config.json files, GGUF "
                         "files, ONNX decoder graphs with a KV cache), not both", field="models")
    if args.detail or args.iterations is not None or args.period_ms is not None or args.shape:
        raise InputError("--detail, --iterations, --period-ms and --shape apply to ONNX "
                         "models, not to a decoder config.json or GGUF file", field="models")
    results = emulate_generation(
        configs, devices=args.device, precisions=args.precision or [None], unit=args.unit,
        prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens, context=args.context,
        duration_s=args.duration)
    status = 1 if all("error" in r for r in results) else 0
    if status:
        print("harness: error: no (model, device, precision) could be emulated", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(results, indent=2))
        return status
    from harness.whatif import generation_table

    print(generation_table(results, after_s=int(args.duration or 600), wide=args.wide))
    print(f"prompt {args.prompt_tokens} tokens, {args.gen_tokens} generated; efficiencies fitted "
          "on 13 published rows (devices/fitted/llm.toml): decode within ~13% (median, "
          "leave-one-out), prefill within ~57% (docs/llm.md)")
    return status


def _parse_shapes(specs: list[str]) -> dict[str, list[int]]:
    from harness.errors import InputError

    shapes = {}
    for spec in specs:
        name, _, dims = spec.partition("=")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            raise InputError(f"expected NAME=D1,D2,... with integer dims, got {spec!r}",
                             field="--shape") from None
        if not name or not shapes[name]:
            raise InputError(f"expected NAME=D1,D2,..., got {spec!r}", field="--shape")
        if any(d < 1 for d in shapes[name]):
            raise InputError(f"expected dimensions >= 1, got {spec!r}", field="--shape")
    return shapes


def _cmd_emulate(args: argparse.Namespace) -> int:
    from harness.emulator.generation import is_decoder_graph, read_json_config
    from harness.emulator.gguf_model import is_gguf
    from harness.errors import InputError
    from harness.whatif import emulate_models

    # A .gguf name counts as a decoder whatever its content, so that a file that is not GGUF
    # is reported as such (by gguf_facts) rather than as an unreadable ONNX model.
    configs = [m for m in args.models if (m.suffix != ".onnx" and read_json_config(m))
               or m.suffix == ".gguf" or is_gguf(m) or is_decoder_graph(m)]
    if configs:
        return _cmd_emulate_generation(args, configs)
    for m in args.models:
        if m.suffix == ".tflite":
            raise InputError("the emulator costs ONNX graphs, not TFLite FlatBuffers: time a "
                             ".tflite on the host or a phone with harness bench (a suite's "
                             "tflite = ... workload, docs/suites.md)", file=m)
    if set(args.precision or ()) & set(_LLM_ONLY_PRECISIONS):
        raise InputError(f"precisions {', '.join(_LLM_ONLY_PRECISIONS)} apply to a decoder "
                         "config.json, not to ONNX models", field="--precision")
    if args.period_ms is not None and args.duration is None and args.iterations is None:
        raise InputError("--period-ms paces the sustained run: give --duration or --iterations "
                         "too", field="--period-ms")
    results = emulate_models(
        args.models, devices=args.device, precisions=args.precision or [None], unit=args.unit,
        detail=args.detail, duration_s=args.duration, iterations=args.iterations,
        period_ms=args.period_ms, input_shapes=_parse_shapes(args.shape))
    # Every combination failing (e.g. --unit npu on boards without one) is a failed command.
    status = 1 if all("error" in r for r in results) else 0
    if status:
        print("harness: error: no (model, device, precision) could be emulated", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(results, indent=2))
        return status
    from harness.whatif import detail_table, emulate_table

    print(emulate_table(results, wide=args.wide))
    for r in results if args.detail else ():
        if "nodes" in r:
            print(f"\n{Path(r['model']).name} on {r['device']} ({r['precision']}):")
            print(detail_table(r, wide=args.wide))
    return status


# --------------------------------------------------------------------------- calibrate


def _add_calibrate(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate", help="fit the emulator's NPU parameters on published latencies",
        description="Fit the NPU efficiency per op class, dispatch cost, fp16 rate and DRAM "
                    "bandwidth efficiency on the AI Hub NPU latencies in "
                    "harness/calibration/data/published_latency.csv (runtimes TFLITE and QNN_DLC; "
                    "$HARNESS_CALIBRATION_DIR overrides the directory), "
                    "using reference architectures built in PyTorch, and print the fit error "
                    "per device, model and precision (median absolute % error, worst rows) in "
                    "sample, leave-one-device-out and leave-one-model-out, then the published "
                    "GPU and CPU rows against the "
                    "profiles (a check, not fitted). --write stores the fitted figures, with their "
                    "provenance, in devices/fitted/calibration.toml, which profiles load.")
    p.add_argument("--write", action="store_true",
                   help="write the fitted figures into devices/fitted/calibration.toml")
    p.add_argument("--from-run", type=Path, default=None, metavar="RUN",
                   help="instead: the error of a run's emulated rows against its adb (phone) "
                        "rows per case, and one scale on the efficiency of the unit the phone "
                        "ran on that removes the median error; with --write that refit is "
                        "stored in devices/fitted/phone-<device>.toml, which the profile loads "
                        "(see docs/adb.md)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="where reference models are cached (default: the artifact cache)")
    p.add_argument("--worst", type=_COUNT, default=8, metavar="N", help="worst rows to list")
    p.set_defaults(func=_cmd_calibrate)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from harness.cache import default_cache_dir
    from harness.calibrate import run_calibration, write_overlay

    if args.from_run is not None:
        return _calibrate_from_run(args)
    report = run_calibration(cache_dir=args.cache_dir or default_cache_dir(),
                             progress=_print_note)
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(f"fitted parameters (shared by all NPUs; {len(report.parameters)} fitted on "
              f"{report.independent_targets} independent targets, distinct model and "
              "precision):")
        print(tabulate(sorted(report.parameters.items()), headers=["parameter", "value"],
                       floatfmt=".4g"))
        checks = report.validations()
        for title, key in (("device", "device"), ("model", "model"),
                           ("precision (as costed)", "precision")):
            by = {name: report.summary_by(key, rows) for name, rows in checks.items()}
            print(f"\nmedian |error| % by {title}:")
            print(tabulate([[k, *(f"{by[name][k]:.1f}" if k in by[name] else ""
                                  for name in checks)]
                            for k in by["in sample"]],
                           headers=[title.split(" ")[0], *checks]))
        lomo = checks["leave one model out"]
        if lomo:
            print("\nmodel on a device, leave one model out (median predicted/published over "
                  "its rows; furthest from 1 first):")
            print(tabulate([[g["model"], g["device"], f"{g['median_ratio']:.2f}", g["rows"]]
                            for g in report.by_model_and_device(lomo)[:args.worst]],
                           headers=["model", "device", "ratio", "rows"]))
        print("\nmodel ordering per device (Kendall tau, 1 = same order as published):")
        print(tabulate(sorted(report.rank_agreement.items()), headers=["device / precision",
                                                                         "tau"],
                       floatfmt=".2f"))
        for name in ("leave one device out", "leave one model out"):
            worst = sorted(checks[name] or report.in_sample,
                           key=lambda r: -abs(r["error_pct"]))[:args.worst]
            print(f"\nworst rows ({name if checks[name] else 'in sample'}):")
            print(tabulate([[r["label"], f"{r['observed_ms']:.3f}", f"{r['predicted_ms']:.3f}",
                             f"{r['error_pct']:+.0f}"] for r in worst],
                           headers=["target", "published (ms)", "predicted (ms)", "error %"]))
        if report.unit_checks:
            print("\nchecks on other units (published GPU/CPU rows, not fitted; those units' "
                  "efficiencies are assumed):")
            print(tabulate([[r["label"], r["emulated_precision"], f"{r['observed_ms']:.3f}",
                             f"{r['predicted_ms']:.3f}", f"{r['error_pct']:+.0f}",
                             (f"{r['predicted_fp32_ms']:.3f}" if "predicted_fp32_ms" in r
                              else "")] for r in report.unit_checks],
                           headers=["target", "as", "published (ms)", "predicted (ms)",
                                    "error %", "as fp32 (ms)"]))
        overall = report.overall()
        print(f"\noverall |error| over {len(report.in_sample)} targets "
              f"({len(report.skipped)} left out):")
        print(tabulate([[name, f"{o['median_abs_pct']:.1f}", f"{o['worst_abs_pct']:.0f}"]
                        for name, o in overall.items()],
                       headers=["", "median %", "worst %"]))
    if args.write:
        path = write_overlay(report)
        print(f"\nfitted figures written to {path}", file=sys.stderr)
    return 0


def _calibrate_from_run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from harness.calibrate import check_phone_fit, fit_from_run, write_phone_overlay

    fits = fit_from_run(args.from_run)

    def write() -> None:
        if args.write:
            for f in fits:       # every device's fit is checked before a file is written
                check_phone_fit(f)
            for f in fits:
                path = write_phone_overlay(f)
                print(f"{f.device}: refit written to {path}", file=sys.stderr)

    if args.format == "json":
        print(json.dumps([f.to_json() for f in fits], indent=2))
        write()
        return 0
    for f in fits:
        print(f"{f.device}: emulated vs phone rows of {args.from_run}")
        print(tabulate([[r["case"], r["predicted_on"] or "", r["ran_on"],
                         f"{r['predicted_ms']:.3f}", f"{r['measured_ms']:.3f}",
                         f"{r['error_pct']:+.1f}",
                         "" if r["after_pct"] is None else f"{r['after_pct']:+.1f}"]
                        for r in f.rows],
                       headers=["case", "predicted on", "ran on", "predicted (ms)",
                                "measured p50 (ms)", "error %", "after %"]))
        before, after = f.errors(after=False), f.errors(after=True)
        if f.scale is None:
            print(f"no case was predicted on the unit the phone ran ({f.unit}): nothing to "
                  "fit\n")
            continue
        eff = "" if f.efficiency is None else (
            f": efficiency {f.efficiency:.3g} -> {f.efficiency * f.scale:.3g}")
        print(f"\n{f.unit} efficiency x {f.scale:.3g}{eff}; median error "
              f"{before['median_pct']:+.1f}% -> {after['median_pct']:+.1f}% (median |error| "
              f"{before['median_abs_pct']:.1f}% -> {after['median_abs_pct']:.1f}%), assuming "
              "latency inversely proportional to the efficiency (not re-emulated)\n")
    write()
    return 0


# --------------------------------------------------------------------------- suites


def _add_suites(sub: Any) -> None:
    p = sub.add_parser("suites", help="list the suites and what they sweep",
                       description="List the suite files in suites/ (or $HARNESS_SUITES_DIR) "
                                   "with their workloads, quantization and pruning levels and "
                                   "measurement settings. Pick one with `harness bench --suite "
                                   "NAME`, or pass the path of your own suite file; the format "
                                   "is described in docs/suites.md.")
    p.set_defaults(func=_cmd_suites)


def _cmd_suites(args: argparse.Namespace) -> int:
    from harness.suites import list_suites, load_suite

    for name in list_suites():
        s = load_suite(name)
        print(f"{name}: {s.description}")
        for w in s.workloads:
            quant, prune = s.levels_for(w.name)
            print(f"  {w.name}: quant {', '.join(q.name for q in quant)}; "
                  f"prune {', '.join(p.name for p in prune)}")
        print(f"  measure: {s.measure.warmup} warm-up + {s.measure.iterations} timed runs, "
              f"{s.measure.threads} thread(s), timeout {s.measure.timeout_s:g} s")
    return 0


COMMANDS: list[Callable[[Any], None]] = [_add_bench, _add_emulate, _add_calibrate,
                                         _add_devices, _add_report, _add_compare,
                                         _add_gate, _add_baseline, _add_history,
                                         _add_recommend,
                                         _add_export, _add_suites]


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
    except BrokenPipeError:
        # `harness ... | head` closed the pipe: not an error of ours. Point stdout at devnull so
        # the interpreter's final flush does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
