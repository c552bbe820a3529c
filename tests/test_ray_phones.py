"""A phone lab on a local two-node Ray cluster: each node declares one fake phone.

The phones are tests/fake_phone.py instances on loopback TCP ports, speaking the real ADB
protocol; each node carries ``phone:127.0.0.1:PORT`` and ``soc:SM8650``, so the adb backend
runs in an actor on that node and reaches its phone over TCP, as a lab host reaches a phone
after ``adb tcpip 5555``. Skipped without Ray or adb-shell; ``nox -s ray_tests`` runs these.
"""

from __future__ import annotations

import json
import threading
import time
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

pytest.importorskip("adb_shell")

from conftest import tiny_conv_onnx
from fake_phone import FakeAndroid

from harness.executors.base import ExecutorOptions
from harness.sweep import BenchOptions, run_bench

pytestmark = pytest.mark.ray

NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024**2}
# a lost phone or node must never stall the sweep: the whole sweep, builds included
BOUND_S = 240.0


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model, its suite (6 cases) and an artifact cache shared by these tests, so
    the artifacts are built once (by the first test's sweep)."""
    d = tmp_path_factory.mktemp("phonelab")
    model = tiny_conv_onnx(d / "tiny.onnx")
    suite = d / "s.toml"
    suite.write_text(
        'schema_version = 1\ndescription = "phone lab"\n'
        f'workloads = [{{ name = "tiny", onnx = "{model}", '
        'shapes = { input = [1, 4, 8, 8] } }]\n'
        'quant = ["fp32", "int8-dynamic", "fp16"]\nprune = [0, 50]\n'
        '[measure]\nwarmup = 1\niterations = 20\ntimeout_s = 20\nthreads = 1\n'
        'min_time_s = 0\nsustained_s = 10\n')
    runner = d / "onnxruntime_perf_test"
    runner.write_bytes(b"\x7fELF fake runner")
    return {"suite": suite, "runner": runner, "cache": d / "cache"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $HOME, inherited by the Ray nodes, with this computer's adb key made once
    here (as `adb` would have made it on a lab host)."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    from harness.backends.adb.device import adb_key_path

    adb_key_path()
    return h


def _lab(phones: list[FakeAndroid]) -> Cluster:
    """A head and one worker node; node i declares phone i (over TCP) and its SoC."""
    def resources(p: FakeAndroid) -> dict[str, Any]:
        return {**NODE, "resources": {"harness_timing": 1, f"phone:{p.address}": 1,
                                      "soc:SM8650": 1}}

    c = Cluster(initialize_head=True,
                head_node_args={**resources(phones[0]), "include_dashboard": False})
    for p in phones[1:]:
        c.add_node(**resources(p))
    c.wait_for_nodes()
    return c


@pytest.fixture
def phones(home: Path) -> Iterator[list[FakeAndroid]]:
    ps = [FakeAndroid(), FakeAndroid()]
    ps[1].props["ro.serialno"] = "FAKE0002"
    try:
        yield ps
    finally:
        for p in ps:
            p.close()


def _sweep(tmp_path: Path, shared: dict[str, Path], cluster: Cluster,
           progress: Any = None) -> tuple[dict[str, dict[str, Any]], float]:
    """The suite on the lab's phones: its rows by case id (each exactly once) and the time."""
    from harness.executors.ray import RayExecutor

    options = BenchOptions(suite=shared["suite"], devices=("snapdragon8gen3",),
                           backends=("adb",), executor="ray", runner=shared["runner"],
                           results_dir=tmp_path / "results", cache_dir=shared["cache"],
                           command_line=("test",))
    t0 = time.monotonic()
    try:
        run_dir = run_bench(options, progress=progress,
                            executor=RayExecutor(ExecutorOptions(ray_address=cluster.address)))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    took = time.monotonic() - t0
    rows = [json.loads(line) for line in (run_dir / "cases.jsonl").read_text().splitlines()]
    ids = [r["case_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 6, f"each case recorded once: {ids}"
    assert took < BOUND_S
    return {r["case_id"]: r for r in rows}, took


def test_a_phone_resource_names_how_its_host_reaches_it() -> None:
    from harness.backends.base import BackendOptions
    from harness.executors.ray_phones import PhoneAddress

    usb = PhoneAddress.parse("phone:R5CT1234")
    tcp = PhoneAddress.parse("phone:192.168.1.20:5555")
    assert (usb.serial, usb.adb) == ("R5CT1234", None)
    assert (tcp.serial, tcp.adb) == (None, "192.168.1.20:5555")
    o = tcp.options(BackendOptions(serial="other", cooldown_c=5.0))
    assert (o.adb, o.serial, o.cooldown_c) == ("192.168.1.20:5555", None, 5.0)
    for bad in ("phone:", "soc:SM8650"):
        with pytest.raises(ValueError, match="phone:SERIAL"):
            PhoneAddress.parse(bad)


def _phone_of(row: dict[str, Any]) -> str:
    return str(row["measured"]["extra"]["phone"])


def test_a_sweep_is_spread_over_the_phones_of_its_soc(
        tmp_path: Path, shared: dict[str, Path], phones: list[FakeAndroid]) -> None:
    rows, _ = _sweep(tmp_path, shared, _lab(phones))
    assert all(r["status"] == "ok" for r in rows.values()), \
        {k: r["reason"] for k, r in rows.items()}
    # each row says which phone and which node measured it, and the phones agree
    by_phone: dict[str, list[str]] = {}
    for case_id, r in rows.items():
        by_phone.setdefault(_phone_of(r), []).append(case_id)
        assert r["measured"]["where"] == _phone_of(r).removeprefix("phone:")
        assert r["measured"]["extra"]["soc_model"] == "SM8650"
        assert r["measured"]["extra"]["ray_node"]["node_id"]
        assert r["provenance"]["host"]
        assert "soc_idle_c" in r["measured"]["extra"]    # the cooldown gate ran
    assert set(by_phone) == {f"phone:{p.address}" for p in phones}
    for p in phones:
        assert len(p.runs) == len(by_phone[f"phone:{p.address}"]) >= 1
    serials = {r["measured"]["extra"]["serialno"] for r in rows.values()}
    assert serials == {"FAKE0001", "FAKE0002"}
    nodes = {r["measured"]["extra"]["ray_node"]["node_id"] for r in rows.values()}
    assert len(nodes) == 2


def test_a_phone_that_vanishes_mid_case_loses_that_case_and_the_rest_move(
        tmp_path: Path, shared: dict[str, Path], phones: list[FakeAndroid]) -> None:
    # the second phone's socket closes for real during its second runner run
    phones[1].vanish_after_runs = 1
    rows, _ = _sweep(tmp_path, shared, _lab(phones))
    lost = {k: r for k, r in rows.items() if r["status"] == "device_lost"}
    ok = {k: r for k, r in rows.items() if r["status"] == "ok"}
    assert len(lost) == 1 and len(ok) == 5, {k: (r["status"], r["reason"])
                                             for k, r in rows.items()}
    (row,) = lost.values()
    assert row["reason"].startswith("device lost: phone:" + phones[1].address)
    assert _phone_of(row) == f"phone:{phones[1].address}"
    # the first phone took every case after the loss: 4 of them, the other phone 1
    first = [r for r in ok.values() if _phone_of(r) == f"phone:{phones[0].address}"]
    assert len(first) == 4 == len(phones[0].runs) and len(phones[1].runs) == 1


def test_with_every_phone_gone_the_cases_left_are_recorded_as_not_run(
        tmp_path: Path, shared: dict[str, Path], phones: list[FakeAndroid]) -> None:
    for p in phones:
        p.vanish_after_runs = 1
    rows, _ = _sweep(tmp_path, shared, _lab(phones))
    statuses = sorted((r["status"], r["reason"].split(":")[0]) for r in rows.values())
    assert statuses == [("device_lost", "device lost")] * 2 + \
        [("device_lost", "not run")] * 2 + [("ok", "")] * 2, statuses
    not_run = [r["reason"] for r in rows.values() if r["reason"].startswith("not run")]
    assert all("no phone with SoC SM8650 is left" in why for why in not_run)


def test_a_phone_of_another_soc_is_never_given_these_cases(
        tmp_path: Path, shared: dict[str, Path], phones: list[FakeAndroid]) -> None:
    # its node declares soc:SM8650, but the phone says it is a Snapdragon 8 Gen 2
    phones[1].props["ro.soc.model"] = "SM8550"
    rows, _ = _sweep(tmp_path, shared, _lab(phones))
    assert all(r["status"] == "ok" for r in rows.values())
    assert {_phone_of(r) for r in rows.values()} == {f"phone:{phones[0].address}"}
    assert phones[1].runs == []


def test_a_node_lost_mid_case_gives_device_lost_and_the_other_phone_finishes(
        tmp_path: Path, shared: dict[str, Path], phones: list[FakeAndroid]) -> None:
    # the worker node's phone hangs in its first run; the node dies while it runs
    phones[1].runner_mode, phones[1].hang_s = "hang", 60.0
    cluster = _lab(phones)
    worker = next(n for n in cluster.list_all_nodes() if not n.head)
    removed = threading.Event()

    def watch() -> None:
        """Remove the worker node a second into its phone's (hanging) first run."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if phones[1].runs:
                time.sleep(1.0)
                cluster.remove_node(worker)
                removed.set()
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rows, took = _sweep(tmp_path, shared, cluster)
    watcher.join(timeout=5)
    assert removed.is_set()
    lost = [r for r in rows.values() if r["status"] == "device_lost"]
    assert len(lost) == 1, {k: (r["status"], r["reason"]) for k, r in rows.items()}
    assert lost[0]["reason"].startswith(f"device lost: phone:{phones[1].address}")
    assert "actor died" in lost[0]["reason"]
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == 5 and {_phone_of(r) for r in ok} == {f"phone:{phones[0].address}"}
    # the hung run would have taken 20 s (the runner timeout) and more: the node's death ended it
    assert took < BOUND_S


def test_a_phone_silent_past_the_deadline_is_lost_and_its_actor_killed(
        tmp_path: Path, shared: dict[str, Path], phones: list[FakeAndroid],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the second phone hangs in its first run (the socket stays open: silence, not an error);
    # the driver's deadline (here 8 s, in real runs the runner's timeout, the cooldown and a
    # grace) ends the wait
    import harness.executors.ray_phones as lab

    monkeypatch.setattr(lab, "case_deadline_s", lambda job, options: 8.0)
    phones[1].runner_mode, phones[1].hang_s = "hang", 60.0
    rows, _ = _sweep(tmp_path, shared, _lab(phones))
    lost = [r for r in rows.values() if r["status"] == "device_lost"]
    assert len(lost) == 1 and "within 8 s" in lost[0]["reason"], \
        {k: (r["status"], r["reason"]) for k, r in rows.items()}
    assert _phone_of(lost[0]) == f"phone:{phones[1].address}"
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == 5 and {_phone_of(r) for r in ok} == {f"phone:{phones[0].address}"}
    # settled at the deadline, before the runner's own 20 s timeout, let alone the 60 s hang
    assert lost[0]["duration_s"] < 20
