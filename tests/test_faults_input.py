"""Hostile input, for real: broken profiles among good ones, corrupted run files, random
bytes and random documents fed to every parser, paths that cannot be written. Each must end
as a :class:`harness.errors.InputError` (exit status 2 at the command line, or 1 where the
good part is still printed) that names the file, never as a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main

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
