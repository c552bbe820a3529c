"""Faults between processes, injected for real: two processes committing the same artifact
at once, a builder killed mid-build, an orchestrator killed with its worker running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.cache import ArtifactStore

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

COMMITTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness.cache import ArtifactStore

    root, go, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    store = ArtifactStore(root)
    stages = []
    for i in range(n):
        key = f"{i:064x}"
        stage = store.staging(key)
        (stage / "model.onnx").write_bytes(key.encode() * 1000)
        stages.append((key, stage))
    while not go.exists():        # both processes commit at the same moment
        time.sleep(0.001)
    for key, stage in stages:
        path = store.commit(key, stage)
        assert path.read_bytes() == key.encode() * 1000, key
""")


def test_two_processes_committing_the_same_keys_at_once(tmp_path: Path) -> None:
    n = 300
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", COMMITTER, str(tmp_path / "cache"),
                               str(go), str(n)], env=ENV, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    time.sleep(1.0)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    root = tmp_path / "cache" / "artifacts"
    names = sorted(p.name for p in root.iterdir())
    assert names == [f"{i:064x}" for i in range(n)]          # no .tmp-* litter
    for name in names:
        assert [f.name for f in (root / name).iterdir()] == ["model.onnx"]
        assert (root / name / "model.onnx").read_bytes() == name.encode() * 1000


def test_staging_names_are_unique_within_one_process(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    a, b = store.staging("k" * 64), store.staging("k" * 64)
    assert a != b and a.is_dir() and b.is_dir()


def test_a_killed_builders_staging_is_removed_by_the_next_build(tmp_path: Path) -> None:
    key = "a" * 64
    builder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from harness.cache import ArtifactStore\n"
         f"s = ArtifactStore(Path(sys.argv[1])).staging({key!r})\n"
         "(s / 'model.onnx').write_bytes(b'half')\nprint(s, flush=True)\ntime.sleep(60)\n",
         str(tmp_path)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert builder.stdout is not None
    orphan = Path(builder.stdout.readline().strip())
    store = ArtifactStore(tmp_path)
    live = store.staging(key)                   # the builder still runs: its dir stays
    assert orphan.is_dir()
    builder.send_signal(signal.SIGKILL)         # killed mid-build
    builder.wait(timeout=10)
    builder.stdout.close()
    stage = store.staging(key)
    assert not orphan.exists() and live.is_dir()   # live.: this process is alive
    (stage / "model.onnx").write_bytes(b"whole")
    assert store.commit(key, stage).read_bytes() == b"whole"
    assert store.get(key) is not None


def test_a_failed_build_leaves_no_staging_dir(tmp_path: Path) -> None:
    from harness.build import build_artifact
    from harness.variants import PruneSpec, QuantSpec

    class Broken:
        name = "broken"

        def fingerprint(self) -> str:
            return "broken-1"

        def can_finetune(self) -> bool:
            return False

        def export_fp32(self, path: Path, **kw: object) -> None:
            path.write_bytes(b"half a model")
            raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        build_artifact(Broken(), quant=QuantSpec("fp32"), prune=PruneSpec("magnitude", 0.0),
                       cache_dir=tmp_path)
    assert list((tmp_path / "artifacts").iterdir()) == []


# --------------------------------------------------------------------------- workers


def _measure_task(model: Path, tmp_path: Path, iterations: int) -> dict[str, object]:
    import numpy as np

    inputs = tmp_path / "in.npz"
    np.savez(inputs, input=np.ones((1, 4, 8, 8), np.float32))
    return {"kind": "measure", "workload": {"name": "tiny", "onnx": str(model)},
            "artifact": str(model), "inputs": str(inputs), "warmup": 0,
            "iterations": iterations, "threads": 1}


ORCHESTRATOR = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from harness.launcher import run_in_worker

    run_in_worker(json.loads(sys.argv[1]), timeout_s=3600, log=Path(sys.argv[2]))
""")


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_worker_dies_with_its_orchestrator(tiny_model: Path, tmp_path: Path) -> None:
    """kill -9 on the orchestrator, for real: its hour-long worker must not run on."""
    import json

    import psutil

    task = _measure_task(tiny_model, tmp_path, iterations=10**9)
    parent = subprocess.Popen([sys.executable, "-c", ORCHESTRATOR, json.dumps(task),
                               str(tmp_path / "log")], env=ENV)
    deadline = time.monotonic() + 60
    workers: list[psutil.Process] = []
    while not workers and time.monotonic() < deadline:
        workers = [c for c in psutil.Process(parent.pid).children()
                   if "harness.worker" in " ".join(c.cmdline())]
        time.sleep(0.05)
    assert workers, "the worker never started"
    time.sleep(0.5)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    _, alive = psutil.wait_procs(workers, timeout=5)
    for p in alive:                            # do not leave it behind if the test fails
        p.kill()
    assert not alive, "the worker outlived its orchestrator"


def test_a_cap_below_the_runtimes_own_footprint_is_a_clear_oom(tiny_model: Path,
                                                               tmp_path: Path) -> None:
    """A 40 MB cap: numpy and onnxruntime alone need more on this host. The outcome says
    so, with the figure measured, not an ImportError or an OpenBLAS thread error."""
    from harness.launcher import run_in_worker

    out = run_in_worker(_measure_task(tiny_model, tmp_path, iterations=1), timeout_s=120,
                        log=tmp_path / "log", memory_limit_mb=40)
    assert out["status"] == "oom", out
    assert "40 MB memory cap is below what the runtime itself needs" in out["reason"]
    assert "(measured)" in out["reason"] and "numpy" in out["reason"]


def test_a_tight_cap_above_the_runtime_still_runs_a_small_model(tiny_model: Path,
                                                               tmp_path: Path) -> None:
    """The cap limits the model, not the interpreter: a cap just above the runtime's own
    footprint (which used to fail while importing numpy) runs a tiny model."""
    from harness.launcher import run_in_worker
    from harness.worker import _data_mb

    probe = subprocess.run([sys.executable, "-c", "import numpy, onnxruntime\n"
                            "from harness.worker import _data_mb\nprint(_data_mb())"],
                           env=ENV, capture_output=True, text=True, check=True)
    runtime_mb = float(probe.stdout)
    assert _data_mb() is not None
    out = run_in_worker(_measure_task(tiny_model, tmp_path, iterations=3), timeout_s=120,
                        log=tmp_path / "log", memory_limit_mb=runtime_mb + 150)
    assert out["status"] == "ok", out


def test_task_folders_of_a_killed_orchestrator_are_removed_later(tmp_path: Path) -> None:
    """An orchestrator killed with SIGKILL cannot clean its task folder; the next one removes
    folders whose orchestrator is gone and keeps those of live ones."""
    import subprocess
    import sys
    import tempfile

    from harness import launcher

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    base = Path(tempfile.gettempdir())
    orphan = base / f"{launcher.TASK_DIR_PREFIX}{gone.pid}-test"
    alive = base / f"{launcher.TASK_DIR_PREFIX}{os.getppid()}-test"
    for d in (orphan, alive):
        d.mkdir(exist_ok=True)
        (d / "task.json").write_text("{}")
    try:
        launcher._cleaned = False
        launcher._remove_orphaned_task_dirs()
        assert not orphan.exists() and alive.exists()
    finally:
        import shutil

        shutil.rmtree(orphan, ignore_errors=True)
        shutil.rmtree(alive, ignore_errors=True)
