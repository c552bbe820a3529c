"""The ray executor on a local two-node Ray cluster (``ray.cluster_utils.Cluster``).

Skipped without Ray (the default test environment does not install it); ``nox -s ray_tests``
installs the ``ray`` extra and runs these. Both nodes run on this machine and share its file
system, which stands in for the shared cache mount a real cluster needs (docs/cluster.md).
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # Ray's own imports may warn about their dependencies; nothing of ours is hidden here
    warnings.simplefilter("ignore", DeprecationWarning)
    ray = pytest.importorskip("ray", reason="the ray extra is not installed "
                                            "(nox -s ray_tests runs these)")
    from ray.cluster_utils import Cluster

from sweep_fakes import tiny_suite

from harness.executors.base import ExecutorOptions
from harness.executors.local import LocalExecutor
from harness.sweep import BenchOptions, Progress, run_bench

pytestmark = pytest.mark.ray

NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024**2,
        "resources": {"harness_timing": 1}}


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A head and one worker node, one CPU and one timing slot each."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    c = Cluster(initialize_head=True,
                head_node_args={**NODE, "include_dashboard": False})
    c.add_node(**NODE)
    c.wait_for_nodes()
    try:
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


def _executor(cluster: Any) -> Any:
    from harness.executors.ray import RayExecutor

    return RayExecutor(ExecutorOptions(ray_address=cluster.address))


def _rows(run_dir: Path) -> dict[str, dict[str, Any]]:
    lines = (run_dir / "cases.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    ids = [r["case_id"] for r in rows]
    assert len(ids) == len(set(ids)), f"a case recorded twice: {ids}"
    return {r["case_id"]: r for r in rows}


def _deterministic(row: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on where a case ran: status, artifact, prediction, quality."""
    art, pred = row["artifact"] or {}, row["prediction"] or {}
    return {"status": row["status"],
            "artifact": {k: art.get(k) for k in ("key", "sha256", "size_bytes", "params",
                                                 "zero_params", "sparsity")},
            "prediction": {k: pred.get(k) for k in ("latency_ms", "sustained_latency_ms",
                                                    "peak_memory_mb", "fits", "energy_mj")},
            "quality": row["quality"], "fidelity": row["fidelity"]}


def _options(tmp_path: Path, suite: Path, name: str, **kw: Any) -> BenchOptions:
    return BenchOptions(suite=suite, devices=("snapdragon8gen3",),
                        results_dir=tmp_path / name / "results",
                        cache_dir=tmp_path / name / "cache", **kw)


def test_a_sweep_on_two_nodes_gives_the_local_figures(cluster: Any, tiny_model: Path,
                                                       tmp_path: Path) -> None:
    suite = tiny_suite(tmp_path / "s.toml", tiny_model)
    local = _rows(run_bench(_options(tmp_path, suite, "local"), executor=LocalExecutor()))
    on_ray = _rows(run_bench(_options(tmp_path, suite, "ray", executor="ray"),
                             executor=_executor(cluster)))
    assert set(on_ray) == set(local) and len(local) == 2
    for case_id, row in on_ray.items():
        assert row["status"] == "ok", row["reason"]
        assert _deterministic(row) == _deterministic(local[case_id])
        assert row["measured"]["phases"][0]["samples"]
        assert row["provenance"]["host"]
    # two timed cases, one timing slot per node: each node measured one of them
    nodes = {row["measured"]["extra"]["ray_node"]["node_id"] for row in on_ray.values()}
    assert len(nodes) == 2


def test_a_node_lost_mid_sweep_leaves_each_case_recorded_once(
        cluster: Any, tiny_model: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.executors.ray as ray_executor

    monkeypatch.setattr(ray_executor, "RETRIES", 0)   # no second attempt: the case is lost
    suite = tiny_suite(tmp_path / "s.toml", tiny_model,
                       quant='["fp32", "int8-dynamic", "fp16"]', prune="[0, 50]",
                       measure="iterations = 3\nwarmup = 0\nmin_time_s = 3")
    suite.write_text(suite.read_text().replace("min_time_s = 0\n", ""))
    worker = next(n for n in cluster.list_all_nodes() if not n.head)
    killed = threading.Event()

    def progress(p: Progress) -> None:
        # the first timed cases start on both nodes; the worker node dies while timing
        if p.measurement is None and not killed.is_set():
            killed.set()
            threading.Timer(1.0, cluster.remove_node, args=(worker,)).start()

    run_dir = run_bench(_options(tmp_path, suite, "ray", executor="ray"), progress=progress,
                        executor=_executor(cluster))
    rows = _rows(run_dir)
    assert killed.is_set() and len(rows) == 6
    statuses = {case_id: (r["status"], r["reason"]) for case_id, r in rows.items()}
    assert all(s in ("ok", "error") for s, _ in statuses.values()), statuses
    lost = [reason for s, reason in statuses.values() if s == "error"]
    assert lost and all(reason.startswith("node lost") for reason in lost), statuses
    assert sum(s == "ok" for s, _ in statuses.values()) >= 6 - len(lost)
