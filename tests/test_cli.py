from __future__ import annotations

import subprocess
import sys

import pytest

from harness.cli import build_parser, main


def test_import_and_help_do_not_load_heavy_runtimes() -> None:
    code = ("import sys, contextlib, io\n"
            "from harness.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'onnxruntime', 'onnx', 'pandas') if m in sys.modules]\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("command", ["bench", "emulate", "calibrate", "devices", "report",
                                     "history", "suites"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert len(capsys.readouterr().out) > 200


def test_devices_lists_key_figures(capsys: pytest.CaptureFixture) -> None:
    assert main(["devices", "--wide"]) == 0   # headers on one line
    out = capsys.readouterr().out
    for name in ("snapdragon8gen3", "snapdragon8gen2", "raspberrypi5"):
        assert name in out
    assert "bandwidth (GB/s)" in out and "npu int8 (GOPS)" in out


def test_unknown_device_is_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["devices", "raspberrypi"]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'raspberrypi'" in err and "raspberrypi5" in err


def test_report_on_a_non_run_is_a_clear_error(tmp_path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_python_dash_m_works() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "--version"], capture_output=True,
                          text=True, check=True)
    assert proc.stdout.startswith("harness ")


def test_exit_status_tells_ci_what_happened(tmp_path, capsys: pytest.CaptureFixture) -> None:
    from report_fixtures import make_run, row

    from harness.cli import _bench_status

    ok = make_run(tmp_path, [row("w", "fp32", "0", "phone"),
                             row("w", "int8", "0", "phone", status="oom")], label="ok")
    assert _bench_status(ok, fail_on=[]) == 0
    assert _bench_status(ok, fail_on=["error"]) == 0
    assert _bench_status(ok, fail_on=["oom"]) == 1
    assert "--fail-on: 1 oom" in capsys.readouterr().err
    bad = make_run(tmp_path, [row("w", "fp32", "0", "phone", status="error")], label="bad")
    assert _bench_status(bad, fail_on=[]) == 1
    assert "no case is ok" in capsys.readouterr().err
    # recommend: 1 when nothing meets the budgets
    assert main(["recommend", str(ok), "--device", "phone"]) == 0
    assert main(["recommend", str(ok), "--device", "phone", "--max-latency-ms", "0.001"]) == 1
