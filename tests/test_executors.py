"""Choosing an executor: validation of --executor / --ray-address, and a missing extra."""

from __future__ import annotations

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
