from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import results
from harness.errors import InputError


def _row(case_id: str, status: str = "ok") -> dict:
    return {"case_id": case_id, "workload": "w", "quant": "fp32", "prune": "0",
            "device": "d", "backend": "emulated", "status": status, "reason": ""}


def test_runs_never_overwrite_each_other(tmp_path: Path) -> None:
    a = results.create_run(tmp_path, label="x", manifest={"suite": {"name": "x"}})
    b = results.create_run(tmp_path, label="x", manifest={"suite": {"name": "x"}})
    assert a != b and (a / "manifest.json").is_file() and (b / "manifest.json").is_file()


def test_rows_append_and_latest_wins(tmp_path: Path) -> None:
    run_dir = results.create_run(tmp_path, label="x", manifest={})
    results.append_row(run_dir, _row("a", "error"))
    results.append_row(run_dir, _row("b"))
    results.append_row(run_dir, _row("a"))
    run = results.load_run(run_dir)
    assert run.finished_case_ids() == {"a", "b"}
    assert {r["case_id"]: r["status"] for r in run.rows} == {"a": "ok", "b": "ok"}
    assert run.manifest["schema_version"] == results.SCHEMA_VERSION


def test_bad_status_is_refused(tmp_path: Path) -> None:
    run_dir = results.create_run(tmp_path, label="x", manifest={})
    with pytest.raises(ValueError, match="status"):
        results.append_row(run_dir, _row("a", "fine"))


def test_truncated_last_row_is_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = results.create_run(tmp_path, label="x", manifest={})
    results.append_row(run_dir, _row("a"))
    with (run_dir / results.ROWS).open("a") as fh:
        fh.write('{"schema_version": 1, "case_id": "b", "sta')
    assert results.load_run(run_dir).finished_case_ids() == {"a"}
    assert "truncated" in capsys.readouterr().err


def test_newer_schema_is_an_error(tmp_path: Path) -> None:
    run_dir = results.create_run(tmp_path, label="x", manifest={})
    with (run_dir / results.ROWS).open("a") as fh:
        fh.write(json.dumps({"schema_version": 99, "case_id": "a", "status": "ok"}) + "\n")
    with pytest.raises(InputError, match="newer"):
        results.load_run(run_dir)


def test_old_rows_are_upgraded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = results.create_run(tmp_path, label="x", manifest={})
    with (run_dir / results.ROWS).open("a") as fh:
        fh.write(json.dumps({**_row("a"), "schema_version": 0, "id": "a"}) + "\n")

    def v0_to_v1(row: dict) -> dict:
        row = dict(row)
        row["case_id"] = row.pop("id")
        row["schema_version"] = 1
        return row

    monkeypatch.setitem(results.ROW_UPGRADES, 0, v0_to_v1)
    assert results.load_run(run_dir).finished_case_ids() == {"a"}


def test_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a run directory"):
        results.load_run(tmp_path)
