"""Run one task in a fresh ``python -m harness.worker`` process and classify how it ended.

Every build, inspection and measurement runs in its own worker, so a crash, a hang or a
runaway allocation costs one task, never the sweep. This is the parent side; the child side is
:mod:`harness.worker`. Outcomes are ``{"status", "reason", "result"}`` dicts whatever happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """A preexec_fn (Linux): the worker gets SIGKILL when the process that started it dies,
    so a killed orchestrator (``kill -9``, an OOM kill, a closed CI job) leaves no worker
    running on without its timeout."""
    import ctypes
    import os
    import signal

    ppid = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != ppid:  # the parent died before prctl took effect
        os._exit(1)


TASK_DIR_PREFIX = "harness-task-"
_cleaned = False


def _remove_orphaned_task_dirs() -> None:
    """Remove task folders of orchestrators that no longer run (killed with SIGKILL, their
    ``TemporaryDirectory`` never cleaned up); once per process."""
    global _cleaned
    if _cleaned:
        return
    _cleaned = True
    import shutil

    for d in Path(tempfile.gettempdir()).glob(f"{TASK_DIR_PREFIX}*"):
        pid_text = d.name[len(TASK_DIR_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)   # its orchestrator is gone
        except PermissionError:
            pass                                   # alive, another user's


def run_in_worker(task: dict[str, Any], *, timeout_s: float, log: Path,
                  memory_limit_mb: float | None = None) -> dict[str, Any]:
    """Run ``task`` (a worker task as JSON: see :mod:`harness.worker`) in a fresh process.

    With ``memory_limit_mb`` the worker runs under RLIMIT_DATA of that size, set by the worker
    after it has imported its runtime libraries, so a runtime that needs more ends as an
    ``oom`` outcome instead of taking the machine down, and ``oom`` always means the model
    (not the interpreter starting) ran out. On Linux the worker is killed when this process
    dies. Never raises for anything the worker does; the worker's output goes to ``log``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_task_dirs()
    # The pid in the name lets a later orchestrator remove what a killed one left behind.
    with tempfile.TemporaryDirectory(prefix=f"{TASK_DIR_PREFIX}{os.getpid()}-") as tmp:
        task_path, result_path = Path(tmp) / "task.json", Path(tmp) / "result.json"
        # The cap is applied by the worker itself once the runtime libraries are imported
        # (see harness.worker.apply_memory_limit): it limits the model, not the interpreter.
        task = {**task, "memory_limit_mb": memory_limit_mb}
        task_path.write_text(json.dumps(task))
        with log.open("a") as log_fh:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log_fh.write(f"--- {task['kind']} task at {stamp}\n")
            log_fh.flush()
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "harness.worker", str(task_path), str(result_path)],
                    stdin=subprocess.DEVNULL, stdout=log_fh, stderr=log_fh, timeout=timeout_s,
                    check=False,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            except subprocess.TimeoutExpired:
                return {"status": "timeout", "reason": f"{task['kind']} did not finish within "
                                                      f"{timeout_s:g} s (worker killed)"}
        if result_path.is_file():
            outcome: dict[str, Any] = json.loads(result_path.read_text())
            if outcome.get("traceback"):
                with log.open("a") as log_fh:
                    log_fh.write(outcome["traceback"])
            return outcome
        code = proc.returncode
        if code < 0:
            import signal

            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            # SIGKILL is the kernel's OOM killer, but also `kill -9` or a job scheduler: with
            # no way to tell them apart here, the row is an error that says both (an `oom`
            # row would be taken as the model not fitting, and never retried).
            why = " (the kernel's out-of-memory killer, or another process)" \
                if name == "SIGKILL" else ""
            return {"status": "error", "reason": f"{task['kind']} worker was killed by "
                                                 f"{name}{why} (see {log})"}
        if memory_limit_mb is not None and "MemoryError" in log.read_text(errors="replace"):
            return {"status": "oom", "reason": f"{task['kind']} worker ran out of memory under "
                                               f"the {memory_limit_mb:g} MB cap (see {log})"}
        return {"status": "error", "reason": f"{task['kind']} worker exited with status {code} "
                                             f"without a result (see {log})"}
