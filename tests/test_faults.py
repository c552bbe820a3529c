"""Faults a real machine produces, injected for real: a torn row, a full disk (a file-size
limit set on a real process), a second writer, a killed case to retry, bad paths and broken
models. Each must leave every finished case readable exactly once, with the right status, and
an error message instead of a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from sweep_fakes import FakePhone, InlineExecutor, tiny_suite

from harness import results
from harness.errors import InputError
from harness.sweep import BenchOptions, run_bench


@pytest.fixture
def suite(tmp_path: Path, tiny_model: Path) -> Path:
    # levels repeated on purpose
    return tiny_suite(tmp_path / "s.toml", tiny_model, quant='["fp32", "int8-dynamic", "fp32"]',
                      prune='[0, "0"]')


def _options(tmp_path: Path, suite: Path, **kw: Any) -> BenchOptions:
    base: dict[str, Any] = {"devices": ("snapdragon8gen3",), "backends": ("fakephone",),
                            "suite": suite, "results_dir": tmp_path / "results",
                            "cache_dir": tmp_path / "cache"}
    base.update(kw)
    return BenchOptions(**base)


def _ids(run_dir: Path) -> list[str]:
    return [json.loads(line)["case_id"]
            for line in (run_dir / "cases.jsonl").read_text().splitlines()]


def test_repeated_levels_run_once(tmp_path: Path, suite: Path,
                                  fake_phone: type[FakePhone]) -> None:
    notes: list[str] = []
    run_dir = run_bench(_options(tmp_path, suite), executor=InlineExecutor(),
                        note=notes.append)
    assert sorted(_ids(run_dir)) == ["tiny/fp32/prune-0/snapdragon8gen3@fakephone",
                                     "tiny/int8-dynamic/prune-0/snapdragon8gen3@fakephone"]
    assert any("'fp32' is listed more than once" in n for n in notes)
    assert any("'0' is listed more than once" in n for n in notes)


def test_a_torn_last_row_is_repaired_before_appending(tmp_path: Path, suite: Path,
                                                      fake_phone: type[FakePhone],
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """A crash mid-write leaves half a line; resuming must not glue the next row onto it."""
    run_dir = run_bench(_options(tmp_path, suite), executor=InlineExecutor())
    rows_file = run_dir / "cases.jsonl"
    lines = rows_file.read_text().splitlines(keepends=True)
    # the second row was being written when the machine died: keep 40 of its bytes
    rows_file.write_text(lines[0] + lines[1][:40])
    assert len(results.load_run(run_dir).rows) == 1      # readable, torn row skipped
    fake_phone.seen = []
    run_bench(BenchOptions(resume=run_dir, cache_dir=tmp_path / "cache"),
              executor=InlineExecutor())
    assert "removed a torn last line" in capsys.readouterr().err
    assert fake_phone.seen == ["tiny/int8-dynamic/prune-0/snapdragon8gen3@fakephone"]
    ids = _ids(run_dir)                                  # every line parses again
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 2


FULL_DISK = textwrap.dedent("""
    import json, resource, signal, sys
    from pathlib import Path
    from harness import results
    from harness.errors import HarnessError

    run_dir = Path(sys.argv[1])
    size = (run_dir / "cases.jsonl").stat().st_size
    # The file may not grow past 100 more bytes: the kernel refuses the write (EFBIG), as a
    # full disk does (ENOSPC). SIGXFSZ would kill the process instead: ignore it.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, size + 100))
    row = json.loads((run_dir / "cases.jsonl").read_text().splitlines()[0])
    row["case_id"] = "x/fp32/prune-0/snapdragon8gen3@fakephone"
    row["reason"] = "a" * 500
    try:
        results.append_row(run_dir, row)
    except HarnessError as exc:
        print("ERROR", exc)
        sys.exit(3)
""")


def test_a_full_disk_leaves_a_readable_run_and_says_what_to_do(
        tmp_path: Path, suite: Path, fake_phone: type[FakePhone]) -> None:
    run_dir = run_bench(_options(tmp_path, suite), executor=InlineExecutor())
    before = (run_dir / "cases.jsonl").read_bytes()
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(run_dir)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 3, proc.stderr
    assert "could not write the row" in proc.stdout and "--resume" in proc.stdout
    assert "Traceback" not in proc.stderr
    # the half-written row was cut back off: the file is exactly what it was
    assert (run_dir / "cases.jsonl").read_bytes() == before
    assert len(results.load_run(run_dir).rows) == 2


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness import results

    with results.open_run(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_one_writer_per_run(tmp_path: Path, suite: Path, fake_phone: type[FakePhone]) -> None:
    run_dir = run_bench(_options(tmp_path, suite), executor=InlineExecutor())
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=r"being written by harness pid \d+"):
            run_bench(BenchOptions(resume=run_dir, cache_dir=tmp_path / "cache"),
                      executor=InlineExecutor())
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    # the lock dies with its process: resuming works again
    time.sleep(0.1)
    run_bench(BenchOptions(resume=run_dir, cache_dir=tmp_path / "cache"),
              executor=InlineExecutor())


def test_retry_reruns_failed_cases_and_the_last_row_wins(tmp_path: Path, suite: Path,
                                                        fake_phone: type[FakePhone]) -> None:
    broken = "tiny/int8-dynamic/prune-0/snapdragon8gen3@fakephone"
    fake_phone.crash_on = {broken}
    run_dir = run_bench(_options(tmp_path, suite), executor=InlineExecutor())
    assert {m.case_id: m.status for m in results.load_run(run_dir).measurements}[broken] \
        == "error"
    fake_phone.crash_on, fake_phone.seen = set(), []
    run_bench(BenchOptions(resume=run_dir, cache_dir=tmp_path / "cache"),
              executor=InlineExecutor())
    assert fake_phone.seen == []                       # a plain resume keeps the error row
    run_bench(BenchOptions(resume=run_dir, cache_dir=tmp_path / "cache", retry=("error",)),
              executor=InlineExecutor())
    assert fake_phone.seen == [broken]
    ms = {m.case_id: m for m in results.load_run(run_dir).measurements}
    assert len(ms) == 2 and ms[broken].status == "ok"
    with pytest.raises(InputError, match="--resume"):
        BenchOptions(retry=("error",))


def test_bad_paths_and_models_are_errors_before_any_work(tmp_path: Path, suite: Path,
                                                         fake_phone: type[FakePhone]) -> None:
    (tmp_path / "afile").write_text("not a directory")
    with pytest.raises(InputError, match="expected a directory"):
        run_bench(_options(tmp_path, suite, results_dir=tmp_path / "afile"),
                  executor=InlineExecutor())
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    bad_suite = tmp_path / "bad.toml"
    bad_suite.write_text(f'schema_version = 1\nworkloads = [{{ name = "e", onnx = "{empty}" }}]'
                         '\nquant = ["fp32"]\nprune = [0]\n')
    with pytest.raises(InputError, match="not a valid ONNX model"):
        run_bench(_options(tmp_path, bad_suite), executor=InlineExecutor())
    assert not (tmp_path / "results").exists()


def _external_model(tmp_path: Path, weights: float, location: str = "m.onnx.data") -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((4, 4), weights, np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location=location,
              size_threshold=0)
    return path


def test_new_external_weights_are_a_new_artifact(tmp_path: Path) -> None:
    import numpy as np

    from harness.workloads.onnxfile import OnnxFileWorkload

    path = _external_model(tmp_path, 1.0)
    before = OnnxFileWorkload(name="m", path=path).fingerprint()
    # same .onnx bytes, new weights beside it (same size and offsets)
    (tmp_path / "m.onnx.data").write_bytes(np.full((4, 4), 2.0, np.float32).tobytes())
    after = OnnxFileWorkload(name="m", path=path).fingerprint()
    assert before["sha256"] == after["sha256"] and before != after
    OnnxFileWorkload(name="m", path=path).check()
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(InputError, match=r"external data file 'm\.onnx\.data' is missing"):
        OnnxFileWorkload(name="m", path=path).check()
