"""Run directories: a versioned manifest plus one appended row per finished case.

Layout of a run directory (format documented in docs/results-format.md)::

    results/20261122-081500-default-snapdragon8gen3/
        manifest.json     written once when the run starts; never rewritten
        sessions.jsonl    one line per invocation that wrote to this run (start and --resume)
        cases.jsonl       one JSON row per finished case, appended and flushed at once
        logs/             worker stderr per case
        report.md, report.csv   rebuilt from the rows by `harness report`

Every record carries ``schema_version``. Readers upgrade older versions through
:data:`ROW_UPGRADES` / :data:`MANIFEST_UPGRADES` and refuse newer ones.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.core.measurement import (
    ROW_SCHEMA_VERSION,
    STATUSES,
    Measurement,
    upgrade_row_v1,
)
from harness.errors import HarnessError, InputError
from harness.fsutil import atomic_write_text

# Manifests and rows share one version number: version 2 added backends (rows hold a
# `measured` block, a `prediction` and provenance; manifests list `backends`).
SCHEMA_VERSION = ROW_SCHEMA_VERSION
MANIFEST = "manifest.json"
ROWS = "cases.jsonl"
SESSIONS = "sessions.jsonl"

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]


def _manifest_v1(m: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: one ``backend`` becomes the list ``backends``."""
    out = {k: v for k, v in m.items() if k != "backend"}
    out["backends"] = [m.get("backend") or "emulated"]
    out["schema_version"] = 2
    return out


# v -> function turning a version-v record into version v + 1
MANIFEST_UPGRADES: dict[int, Upgrade] = {1: _manifest_v1}
ROW_UPGRADES: dict[int, Upgrade] = {1: upgrade_row_v1}

_PACKAGES = ("edge-harness", "numpy", "onnx", "onnxruntime", "torch", "scikit-learn", "psutil",
             "pandas")


def _upgrade(record: dict[str, Any], upgrades: dict[int, Upgrade], *, file: Path,
             where: str) -> dict[str, Any]:
    from harness.schema import upgrade

    return upgrade(record, upgrades, current=SCHEMA_VERSION, file=file, where=where)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in _PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """The checkout's commit and whether it has local changes (None outside a git checkout)."""
    here = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True,
                               text=True, timeout=5, check=True).stdout.strip() != ""
        return {"sha": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def host_info() -> dict[str, Any]:
    import psutil

    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        **_load_and_clock(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model,
        "logical_cpus": os.cpu_count(),
        "affinity": affinity,
        "total_memory_mb": round(psutil.virtual_memory().total / 2**20),
    }


def _load_and_clock() -> dict[str, Any]:
    """Load average and CPU frequency scaling where the system exposes them: a busy or
    power-saving host explains a slow run."""
    out: dict[str, Any] = {}
    with suppress(AttributeError, OSError):
        out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    cpufreq = Path("/sys/devices/system/cpu/cpu0/cpufreq")
    for key, name in (("scaling_governor", "cpu_governor"), ("scaling_cur_freq", "cpu_khz"),
                      ("scaling_max_freq", "cpu_max_khz")):
        try:
            text = (cpufreq / key).read_text().strip()
            out[name] = int(text) if text.isdigit() else text
        except OSError:
            pass
    return out


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Run:
    """A run directory, read back: its manifest and its rows (latest row per case wins)."""

    path: Path
    manifest: dict[str, Any]
    rows: tuple[dict[str, Any], ...]

    def finished_case_ids(self) -> set[str]:
        return {r["case_id"] for r in self.rows}

    @functools.cached_property
    def measurements(self) -> tuple[Measurement, ...]:
        """The rows as typed measurements (every reader goes through these)."""
        return tuple(Measurement.from_row(r) for r in self.rows)


def create_run(results_dir: Path, *, label: str, manifest: dict[str, Any]) -> Path:
    """A new run directory (never an existing one) with its manifest written."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError("expected a directory for run results, found a file",
                         file=results_dir, field="--results-dir") from None
    except OSError as exc:
        raise InputError(f"cannot create the results directory: {exc.strerror or exc}",
                         file=results_dir, field="--results-dir") from None
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    try:
        for n in range(1000):
            path = results_dir / (f"{stamp}-{label}" + (f"-{n}" if n else ""))
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        else:
            raise RuntimeError(f"could not create a run directory in {results_dir}")
        (path / "logs").mkdir()
        record = {"schema_version": SCHEMA_VERSION, "kind": "edge-harness-run",
                  "run_id": path.name, **manifest}
        atomic_write_text(path / MANIFEST, json.dumps(record, indent=2) + "\n")
    except OSError as exc:  # read-only, no permission, full disk
        raise InputError(f"cannot write a run into the results directory: "
                         f"{exc.strerror or exc}", file=results_dir,
                         field="--results-dir") from None
    return path


class RunWriteError(HarnessError):
    """The run directory could not be written (full disk, read-only, gone)."""


def repair_tail(path: Path) -> int:
    """Cut a torn last line (a crash or a full disk mid-write) off a JSONL file.

    Appending after a torn line would glue the next record onto it and make the file
    unreadable from there on; the torn record never finished, so dropping it loses nothing
    (``--resume`` runs that case again). Returns how many bytes were cut.
    """
    if not path.is_file():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as fh:
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return len(data) - keep


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record and make it durable before returning (a crash loses nothing).

    Strict JSON (no NaN/Infinity, which other tools cannot read). A write that fails midway
    (a full disk) is cut back off, so the file stays readable, and raised as a
    :class:`RunWriteError` naming the file.
    """
    line = json.dumps({"schema_version": SCHEMA_VERSION, **record}, separators=(",", ":"),
                      allow_nan=False)
    try:
        with path.open("a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        with suppress(OSError):  # else the next writer repairs it (see open_run)
            repair_tail(path)
        raise RunWriteError(f"{path}: could not write the row ({exc.strerror or exc}); the "
                            "cases finished before are saved: free the space and complete "
                            "the run with --resume") from exc


@contextmanager
def open_run(run_dir: Path) -> Iterator[None]:
    """Hold the run's writer lock while appending to it; repair a torn tail first.

    One writer per run: two processes appending the same cases would run every pending case
    twice. The lock is an advisory ``flock`` on ``run_dir/.lock``, released when the process
    ends however it ends.
    """
    import fcntl

    lock_path = run_dir / ".lock"
    fh = lock_path.open("a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise InputError(f"the run is being written by {holder}; wait for it to finish "
                         "(or stop it) before resuming", file=run_dir) from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"harness pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        for name in (ROWS, SESSIONS):
            cut = repair_tail(run_dir / name)
            if cut:
                print(f"warning: {run_dir / name}: removed a torn last line ({cut} bytes) left "
                      "by an interrupted write; that case runs again", file=sys.stderr)
        yield
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def append_row(run_dir: Path, row: dict[str, Any]) -> None:
    if row.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row.get('status')!r}")
    append_jsonl(run_dir / ROWS, row)


def record_session(run_dir: Path, *, command_line: list[str], resumed: bool) -> None:
    append_jsonl(run_dir / SESSIONS, {
        "started_at": now_iso(), "resumed": resumed, "command_line": command_line,
        "host": host_info(), "packages": package_versions(), "git": git_state(),
        "pid": os.getpid(), "unix_time": time.time()})


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    if not path.is_file():
        return
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", file=path) from exc
    if lines and not lines[-1]:
        lines.pop()                                   # the final newline
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            yield i, json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if i == len(lines):
                # A run killed mid-write leaves a truncated last line: that case never
                # finished, so it is skipped (and --resume runs it again).
                print(f"warning: {path}:{i}: ignoring truncated last row", file=sys.stderr)
                return
            what = "UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "valid JSON"
            raise InputError(f"line {i} is not {what} ({exc}): the file was damaged; remove "
                             "or repair that line (--resume runs its case again)",
                             file=path) from exc


# Fields every row has, with their JSON types; the rest are checked by building the
# Measurement (which every reader goes through).
_ROW_FIELDS: dict[str, tuple[type, ...]] = {
    "case_id": (str,), "workload": (str,), "quant": (str,), "prune": (str, int, float),
    "backend": (str,), "status": (str,)}
_OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {
    "device": (str,), "reason": (str,), "precision": (str,), "prune_method": (str,),
    "started_at": (str,), "duration_s": (int, float), "artifact": (dict,), "measured": (dict,),
    "quality": (dict,), "fidelity": (dict,), "prediction": (dict,), "trace": (dict,),
    "provenance": (dict,)}


def _row(record: Any, *, file: Path, line: int) -> dict[str, Any]:
    """One row of ``cases.jsonl``, upgraded and checked: a hand-damaged row is an
    InputError naming the file, the line and the field, never a KeyError later."""
    where = f"line {line}"
    if not isinstance(record, dict):
        raise InputError(f"expected a JSON object (a row), got {type(record).__name__}",
                         file=file, field=where)
    try:
        row = _upgrade(record, ROW_UPGRADES, file=file, where=where)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InputError(f"a damaged row, cannot be upgraded ({type(exc).__name__}: {exc})",
                         file=file, field=where) from exc
    for key, types in _ROW_FIELDS.items():
        if not isinstance(row.get(key), types) or isinstance(row.get(key), bool):
            raise InputError(f"expected {_type_names(types)}, got {row.get(key)!r}",
                             file=file, field=f"{where}.{key}")
    for key, types in _OPTIONAL_FIELDS.items():
        value = row.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            raise InputError(f"expected {_type_names(types)} or null, got {value!r}",
                             file=file, field=f"{where}.{key}")
    if row["status"] not in STATUSES:
        raise InputError(f"expected one of {', '.join(STATUSES)}, got {row['status']!r}",
                         file=file, field=f"{where}.status")
    try:
        Measurement.from_row(row)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InputError(f"a damaged row ({type(exc).__name__}: {exc})", file=file,
                         field=where) from exc
    return row


def _type_names(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "a number", float: "a number", dict: "an object"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def load_run(path: Path) -> Run:
    """Read a run directory, upgrading old records; the latest row of each case wins.

    A damaged row (not JSON, not an object, a field of the wrong type) is an InputError that
    names the file and the line, except a torn last line (a crash mid-write), which is skipped.
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"not a run directory (no {MANIFEST})", file=path)
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}", file=manifest_path) from exc
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}",
                         file=manifest_path) from exc
    if not isinstance(manifest, dict):
        raise InputError(f"expected a JSON object, got {type(manifest).__name__}",
                         file=manifest_path)
    manifest = _upgrade(manifest, MANIFEST_UPGRADES, file=manifest_path, where="manifest")
    latest: dict[str, dict[str, Any]] = {}
    for i, record in _iter_jsonl(path / ROWS):
        row = _row(record, file=path / ROWS, line=i)
        latest[row["case_id"]] = row
    return Run(path=path, manifest=manifest, rows=tuple(latest.values()))
