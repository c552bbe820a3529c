"""The published JSON Schemas (schemas/) describe what the harness really reads and writes:
rows of a real sweep and of an upgraded old run, and every shipped suite."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
from sweep_fakes import InlineExecutor, tiny_suite

from harness.results import load_run
from harness.suites import default_suites_dir, parse_suite

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
ROW = json.loads((SCHEMAS / "result-row.v2.schema.json").read_text())
SUITE = json.loads((SCHEMAS / "suite.v1.schema.json").read_text())
PROFILE = json.loads((SCHEMAS / "device-profile.v2.schema.json").read_text())


def test_the_schemas_are_valid_schemas() -> None:
    jsonschema.Draft202012Validator.check_schema(ROW)
    jsonschema.Draft202012Validator.check_schema(SUITE)
    jsonschema.Draft202012Validator.check_schema(PROFILE)


def test_rows_of_a_real_sweep_and_of_an_old_run_match(tmp_path: Path, tiny_model: Path) -> None:
    from harness.sweep import BenchOptions, run_bench

    suite = tiny_suite(tmp_path / "s.toml", tiny_model, prune='[0, "head-l2-25"]')
    run_dir = run_bench(BenchOptions(devices=("snapdragon8gen3",),
                                     backends=("emulated", "host"), suite=suite,
                                     results_dir=tmp_path / "r", cache_dir=tmp_path / "c"),
                        executor=InlineExecutor())
    rows = [json.loads(line) for line in (run_dir / "cases.jsonl").read_text().splitlines()]
    assert {r["status"] for r in rows} == {"ok", "unsupported"}
    old = load_run(Path(__file__).parent / "data" / "run_v1")
    for row in rows + [m.to_row() for m in old.measurements]:
        jsonschema.validate(row, ROW)


def test_a_row_breaking_the_schema_is_caught() -> None:
    bad = {"schema_version": 2, "case_id": "a", "workload": "w", "quant": "q", "prune": "0",
           "device": None, "backend": "host", "status": "fine", "reason": ""}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, ROW)


@pytest.mark.parametrize("name", sorted(p.stem for p in default_suites_dir().glob("*.toml")))
def test_shipped_suites_match(name: str) -> None:
    doc = tomllib.loads((default_suites_dir() / f"{name}.toml").read_text())
    jsonschema.validate(doc, SUITE)
    parse_suite(doc)


def test_what_the_schema_refuses_the_parser_refuses_too() -> None:
    from harness.errors import InputError

    for doc in ({"schema_version": 1, "workloads": [], "quant": ["fp32"], "prune": [0]},
                {"schema_version": 1, "workloads": ["digits_cnn"], "quant": ["fp32"],
                 "prune": [0], "measure": {"iterations": 0}},
                {"schema_version": 1, "workloads": ["digits_cnn"], "quant": ["fp32"],
                 "prune": [0], "extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, SUITE)
        with pytest.raises(InputError):
            parse_suite(doc)


def test_shipped_profiles_match() -> None:
    from harness.profiles import default_devices_dir, list_profiles

    names = list_profiles()
    assert len(names) >= 10
    for name in names:
        doc = tomllib.loads((default_devices_dir() / f"{name}.toml").read_text())
        jsonschema.validate(doc, PROFILE)
    bad = tomllib.loads((default_devices_dir() / "snapdragon8gen3.toml").read_text())
    bad["memory"]["ram_mb"]["basis"] = "guessed"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, PROFILE)
