"""Physical limits on device-profile figures, injected for real: a profile file with an
efficiency of 5e-324, a peak of 1e-308 GOPS or an ambient of 1e300 C is refused naming the file,
the field and the accepted range; a profile at the edges of every range still predicts finite
figures."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.errors import InputError
from harness.profiles import list_profiles, load_profile

DEVICES = Path(__file__).resolve().parents[1] / "devices"


@pytest.fixture(autouse=True)
def _default_devices_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_DEVICES_DIR", raising=False)


# --------------------------------------------------------------------------- physical ranges


def test_every_shipped_profile_and_the_fitted_overlay_lie_within_the_ranges() -> None:
    for name in list_profiles():
        load_profile(name)
        load_profile(name, fitted=False)


def _write_profile(tmp_path: Path, edit: Any) -> Path:
    """raspberrypi5.toml rewritten with one figure changed by ``edit(doc)``, as a file."""
    import shutil

    text = (DEVICES / "raspberrypi5.toml").read_text()
    shutil.copytree(DEVICES / "opsets", tmp_path / "opsets", dirs_exist_ok=True)
    doc = tomllib.loads(text)
    edit(doc)
    path = tmp_path / "raspberrypi5.toml"
    path.write_text(_to_toml(doc))
    return path


def _to_toml(doc: dict[str, Any]) -> str:
    """Just enough TOML for a profile document (inline tables, arrays, scalars)."""
    import json

    def val(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return repr(v)
        return json.dumps(v)

    lines = [f"{k} = {val(v)}" for k, v in doc.items() if k != "units"]
    for u in doc["units"]:
        lines.append("[[units]]")
        lines.extend(f"{k} = {val(v)}" for k, v in u.items())
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("section", "key", "value", "accepted"), [
    ("units", "efficiency", 5e-324, "[0.0001, 1]"),
    ("units", "peak_gops.fp32", 1e-308, "[0.001, 1e+07]"),
    ("units", "peak_gops.fp32", 1e300, "[0.001, 1e+07]"),
    ("thermal", "ambient_c", 1e300, "[-40, 60]"),
    ("thermal", "ambient_c", -273.0, "[-40, 60]"),
    ("thermal", "throttle_start_c", 500.0, "[0, 150]"),
    ("memory", "bandwidth_gb_s", 1e-9, "[0.001, 1e+07]"),
    ("power", "idle_w", -1.0, "[0, 10000]"),
    ("units", "active_power_w", 1e9, "[0, 10000]"),
    ("thermal", "time_constant_s", 1e-300, "[0.001, 1e+06]"),
])
def test_figures_outside_their_physical_range_are_rejected(
        tmp_path: Path, section: str, key: str, value: float, accepted: str) -> None:
    def edit(doc: dict[str, Any]) -> None:
        table = doc["units"][0] if section == "units" else doc[section]
        *parents, last = key.split(".")
        for p in parents:
            table = table[p]
        table[last]["value"] = value
    path = _write_profile(tmp_path, edit)
    with pytest.raises(InputError) as exc_info:
        load_profile(path)
    message = str(exc_info.value)
    field = (f"units[0].{key}" if section == "units" else f"{section}.{key}") + ".value"
    assert str(path) in message and exc_info.value.field == field
    assert accepted in message and repr(value) in message


def test_the_extremes_of_every_range_still_predict_finite_figures(tmp_path: Path,
                                                                  tiny_model: Path) -> None:
    """A profile at the edges of the ranges gives finite predictions (or a named error),
    never a NaN or an Infinity that strict JSON rows cannot hold."""
    import json

    from harness.predict import predict_on

    def edit(doc: dict[str, Any]) -> None:
        unit = doc["units"][0]
        unit["efficiency"]["value"] = 1e-4
        for fig in unit["peak_gops"].values():
            fig["value"] = 1e-3
        unit["dispatch_us"]["value"] = 1e7
        unit["active_power_w"]["value"] = 1e4
        doc["memory"]["bandwidth_gb_s"]["value"] = 1e-3
        doc["thermal"]["thermal_resistance_c_per_w"]["value"] = 1e4
        doc["thermal"]["time_constant_s"]["value"] = 1e-3
        doc["thermal"]["ambient_c"]["value"] = 60.0
    path = _write_profile(tmp_path, edit)
    out = predict_on(tiny_model, str(path), sustained_s=5.0, period_ms=None,
                     breakdown_dir=None, artifact_key="k" * 64)
    json.dumps(out, allow_nan=False)      # raises on NaN / Infinity
    pred = out["prediction"]
    assert "error" not in pred, pred
    assert math.isfinite(pred["latency_ms"]) and pred["latency_ms"] > 1e6


def test_a_non_finite_emulator_figure_is_named() -> None:
    from harness.predict import _require_finite

    _require_finite({"a": [1.0, 2], "b": {"c": "x"}}, "prediction")
    with pytest.raises(ValueError, match=r"prediction on d: trace\[1\] is nan"):
        _require_finite({"trace": [1.0, math.nan]}, "prediction on d")
