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
