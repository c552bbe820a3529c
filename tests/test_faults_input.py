"""Hostile input, for real: broken profiles among good ones, corrupted run files, random
bytes and random documents fed to every parser, paths that cannot be written. Each must end
as a :class:`harness.errors.InputError` (exit status 2 at the command line, or 1 where the
good part is still printed) that names the file, never as a traceback."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import results
from harness.cli import main
from harness.errors import HarnessError, InputError
from harness.profiles import load_profile, parse_profile
from harness.suites import parse_suite

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped devices/ (with its fitted overlay and op sets) to break."""
    d = tmp_path / "devices"
    shutil.copytree(REPO / "devices", d)
    monkeypatch.setenv("HARNESS_DEVICES_DIR", str(d))
    return d


def test_devices_lists_the_good_profiles_and_reports_every_bad_one(
        devices: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pi = devices / "raspberrypi5.toml"
    pi.write_text(pi.read_text().replace("[power.idle_w]\nvalue = ", "[power.idle_w]\nvalue = -"))
    (devices / "snapdragon855.toml").write_bytes(b"\xff\xfe not toml [[[")
    assert main(["devices"]) == 1
    out, err = capsys.readouterr()
    assert "snapdragon8gen3" in out and "jetsonorinnano" in out
    assert "raspberrypi5" not in out and "snapdragon855" not in out
    assert f"{pi}: field 'power.idle_w.value'" in err
    assert str(devices / "snapdragon855.toml") in err and "not valid TOML" in err
    assert "2 of 12 device profiles are invalid" in err
    assert "Traceback" not in err


def test_devices_json_lists_the_good_ones_too(devices: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import json

    (devices / "tensorg3.toml").write_text("schema_version = 2\n")
    assert main(["devices", "--format", "json"]) == 1
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 11 and "tensorg3.toml" in err


# --------------------------------------------------------------------------- property tests

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)
# TOML has no null; its floats include nan and inf
TOML = st.recursive(
    st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a nested document (dict keys and list indexes)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    target = doc
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    return doc


def _damaged(doc: dict[str, Any], values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``doc`` with one place replaced by a random value, or removed."""
    places = _paths(doc)[1:]                       # not the root: files hold tables

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        path = draw(st.sampled_from(places))
        if path and draw(st.booleans()) and isinstance(path[-1], str):
            out = copy.deepcopy(doc)
            target = out
            for p in path[:-1]:
                target = target[p]
            del target[path[-1]]
            return out
        return _replace(doc, path, draw(values))
    return build()


PI = tomllib.loads((REPO / "devices" / "raspberrypi5.toml").read_text())
PHONE = tomllib.loads((REPO / "devices" / "snapdragon8gen3.toml").read_text())


@PROPERTY
@given(st.one_of(_damaged(PI, TOML), _damaged(PHONE, TOML),
                 st.dictionaries(st.text(max_size=10), TOML, max_size=6)))
def test_a_damaged_profile_is_an_input_error(doc: Any) -> None:
    with contextlib.suppress(InputError):
        parse_profile(doc)


@PROPERTY
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_bytes_as_a_profile_file_are_an_input_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.toml"
        path.write_bytes(data)
        try:
            load_profile(path)
        except InputError as exc:
            assert str(path) in str(exc)


SUITE = tomllib.loads((REPO / "suites" / "smoke.toml").read_text())


@PROPERTY
@given(st.one_of(_damaged(SUITE, TOML),
                 st.dictionaries(st.text(max_size=10), TOML, max_size=6)))
def test_a_damaged_suite_is_an_input_error(doc: Any) -> None:
    with contextlib.suppress(HarnessError):
        parse_suite(doc, file=REPO / "suites" / "smoke.toml")


ROWS = (REPO / "tests" / "data" / "run_v1" / "cases.jsonl").read_text().splitlines()
ROW = json.loads(ROWS[0])
ROW_V2 = results._row(copy.deepcopy(ROW), file=Path("x"), line=1)


def _load(lines: list[bytes]) -> results.Run | None:
    with tempfile.TemporaryDirectory() as d:
        run_dir = Path(d)
        (run_dir / "manifest.json").write_text(json.dumps({"schema_version": 2}))
        (run_dir / "cases.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
        try:
            run = results.load_run(run_dir)
        except InputError as exc:
            assert str(run_dir / "cases.jsonl") in str(exc)
            return None
        run.measurements  # noqa: B018 -- every reader goes through these: must not raise
        return run


@PROPERTY
@given(st.lists(st.binary(max_size=80), max_size=5))
def test_random_bytes_in_cases_jsonl_are_an_input_error(lines: list[bytes]) -> None:
    _load(lines)


@PROPERTY
@given(st.integers(0, len(ROWS) - 2), st.data())
def test_a_row_cut_short_in_the_middle_names_its_line(i: int, data: st.DataObject) -> None:
    raw = [line.encode() for line in ROWS]
    raw[i] = raw[i][:data.draw(st.integers(0, len(raw[i]) - 1))]
    if not raw[i].strip():
        return                                    # an empty line is skipped, not damage
    with pytest.raises(AssertionError):           # _load returns None on an InputError
        assert _load(raw) is not None
    with tempfile.TemporaryDirectory() as d:
        run_dir = Path(d)
        (run_dir / "manifest.json").write_text(json.dumps({"schema_version": 2}))
        (run_dir / "cases.jsonl").write_bytes(b"\n".join(raw) + b"\n")
        with pytest.raises(InputError, match=rf"cases.jsonl: line {i + 1} is not"):
            results.load_run(run_dir)


@PROPERTY
@given(st.one_of(_damaged(ROW, JSON), _damaged(ROW_V2, JSON)))
def test_a_row_with_fields_of_the_wrong_type_is_an_input_error(row: Any) -> None:
    good = ROWS[1].encode()
    _load([good, json.dumps(row).encode(), good])


def test_a_hand_damaged_row_names_file_line_and_field(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """The same at the command line: `harness report` on a run with a damaged middle row."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(REPO / "tests" / "data" / "run_v1", run_dir)
    lines = (run_dir / "cases.jsonl").read_text().splitlines()
    row = json.loads(lines[3])
    row["workload"] = 42
    lines[3] = json.dumps(row)
    (run_dir / "cases.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"{run_dir / 'cases.jsonl'}: field 'line 4.workload': expected a string, got 42" \
        in err
    lines[3] = lines[3][:50]                       # torn in the middle
    (run_dir / "cases.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["report", str(run_dir)]) == 2
    assert "cases.jsonl: line 4 is not valid JSON" in capsys.readouterr().err


# --------------------------------------------------------------------------- unwritable paths


def test_export_into_a_missing_directory_names_it(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "missing_dir" / "file.json"
    assert main(["export", str(REPO / "tests" / "data" / "run_v1"), "--format", "gab-smaller",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out.parent}: field '--output': no such directory" in err and not out.exists()
    out.parent.mkdir()
    assert main(["export", str(REPO / "tests" / "data" / "run_v1"), "--format", "gab-smaller",
                 "-o", str(out)]) == 0
    assert json.loads(out.read_text())


def _read_only_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create anything in, for real: root ignores file
    modes, so as root a directory of sysfs (which refuses new entries) stands in."""
    import os

    if os.geteuid() == 0:
        d = Path("/sys/kernel")
        try:
            (d / "harness-probe").mkdir()
        except OSError:
            return d
        (d / "harness-probe").rmdir()
        pytest.skip("no read-only directory available to root here")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    return d


def test_bench_into_a_read_only_results_dir_is_an_error(tmp_path: Path, tiny_model: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    ro = _read_only_dir(tmp_path)
    suite = tmp_path / "s.toml"
    suite.write_text('schema_version = 1\n'
                     f'workloads = [{{ name = "tiny", onnx = "{tiny_model}", '
                     'shapes = { input = [1, 4, 8, 8] } }]\n'
                     'quant = ["fp32"]\nprune = [0]\n')
    code = main(["bench", "--suite", str(suite), "--device", "snapdragon8gen3",
                 "--results-dir", str(ro), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{ro}: field '--results-dir': cannot write a run into the results directory" in err
    assert "Traceback" not in err
