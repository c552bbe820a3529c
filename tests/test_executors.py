"""Choosing an executor: validation of --executor / --ray-address, and a missing extra."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.executors.base import EXECUTORS, make_executor
from harness.sweep import BenchOptions


def test_ray_address_needs_the_ray_executor() -> None:
    with pytest.raises(InputError, match="add --executor ray"):
        BenchOptions(ray_address="auto")
    for bad in ("localhost", "host:port", "host:70000", "ray://"):
        with pytest.raises(InputError, match="expected --ray-address"):
            BenchOptions(executor="ray", ray_address=bad)
    for good in ("auto", "10.0.0.5:6379", "ray://head:10001"):
        assert BenchOptions(executor="ray", ray_address=good).executor_options.ray_address \
            == good


def test_an_unknown_executor_names_the_known_ones() -> None:
    with pytest.raises(InputError, match="local"):
        BenchOptions(executor="rya")


def test_the_ray_executor_without_ray_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)   # import ray fails as if not installed
    monkeypatch.delitem(sys.modules, "harness.executors.ray", raising=False)
    monkeypatch.setattr(EXECUTORS, "_loaded", {})
    with pytest.raises(InputError, match=r"pip install 'edge-harness\[ray\]'"):
        make_executor("ray")


def test_importing_the_package_does_not_import_ray() -> None:
    import subprocess

    code = "import harness.cli, harness.sweep, sys; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_a_relative_cache_dir_is_made_absolute(tiny_model: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks carry the cache dir to processes with another working directory (the quantizer
    works in a temporary one; a Ray worker starts in its session's)."""
    from sweep_fakes import tiny_suite

    from harness.sweep import plan_sweep

    monkeypatch.chdir(tmp_path)
    plan = plan_sweep(BenchOptions(suite=tiny_suite(tmp_path / "s.toml", tiny_model),
                                   devices=("snapdragon8gen3",), cache_dir=Path("rel")))
    assert plan.cache_dir == tmp_path / "rel"


def test_the_phone_lab_takes_its_phones_from_the_cluster(tmp_path: Path) -> None:
    """With --executor ray the phones are the cluster's phone:* resources: --adb / --serial
    (one phone) are refused, --runner is still needed, and --device chooses the SoC."""
    runner = tmp_path / "onnxruntime_perf_test"
    runner.write_bytes(b"fake")
    for flag, value in (("adb", "127.0.0.1:5555"), ("serial", "R5CT1234")):
        with pytest.raises(InputError, match=f"drop --{flag}"):
            BenchOptions(backends=("adb",), executor="ray", runner=runner, **{flag: value})
    with pytest.raises(InputError, match="--runner"):
        BenchOptions(backends=("adb",), executor="ray")
    from harness.sweep import plan_sweep

    with pytest.raises(InputError, match="give the phones' --device"):
        plan_sweep(BenchOptions(backends=("adb",), executor="ray", runner=runner,
                                suite="smoke"))


def test_a_case_reported_twice_is_written_once(tiny_model: Path, tmp_path: Path) -> None:
    """Rows are keyed by case id: an executor that reports a case again (a late answer after
    a retry) does not make a second row."""
    import json

    from sweep_fakes import InlineExecutor, tiny_suite

    from harness.sweep import run_bench

    class Twice(InlineExecutor):
        def measure(self, jobs, backends, *, on_start=None):  # type: ignore[no-untyped-def]
            for job, m in super().measure(jobs, backends, on_start=on_start):
                yield job, m
                yield job, m

    run_dir = run_bench(BenchOptions(suite=tiny_suite(tmp_path / "s.toml", tiny_model),
                                     devices=("snapdragon8gen3",),
                                     results_dir=tmp_path / "results",
                                     cache_dir=tmp_path / "cache"), executor=Twice())
    ids = [json.loads(line)["case_id"]
           for line in (run_dir / "cases.jsonl").read_text().splitlines()]
    assert len(ids) == 2 == len(set(ids))


def test_a_ray_auth_token_at_hand_turns_token_mode_on_before_ray_is_imported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ray start` clusters want the token (Ray >= 2.59); a driver sends it only when
    RAY_AUTH_MODE=token is set before ray is imported."""
    from harness.executors.ray_auth import auth_token_source, prepare_token_auth

    # a copy of the environment: what prepare_token_auth sets must not outlive the test
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    monkeypatch.setattr(os, "environ", env | {"HOME": str(tmp_path)})
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    assert auth_token_source() is None and not prepare_token_auth()
    assert "RAY_AUTH_MODE" not in os.environ
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t" * 64)
    assert auth_token_source() == str(tmp_path / ".ray" / "auth_token")
    assert prepare_token_auth() and os.environ["RAY_AUTH_MODE"] == "token"
    # the user's own choice stands; a token in the environment comes first
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_AUTH_TOKEN="abc")
    assert not prepare_token_auth() and os.environ["RAY_AUTH_MODE"] == "disabled"
    assert auth_token_source() == "$RAY_AUTH_TOKEN"
    # too late once ray is imported: nothing is changed
    del os.environ["RAY_AUTH_MODE"]
    monkeypatch.setitem(sys.modules, "ray", object())
    assert not prepare_token_auth() and "RAY_AUTH_MODE" not in os.environ
