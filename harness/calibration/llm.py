"""Fit the generation emulator (:mod:`harness.emulator.generation`) on published LLM rows.

Targets: the 13 rows of ``harness/calibration/data/llm_published.csv`` with the architectures in
``llm_configs/``. Per unit kind (cpu, gpu, npu) three figures, shared by every device (the
device enters through its profile's bandwidth and peaks):

* ``decode_bw_eff`` and ``decode_overhead_ms``: decode ms/token = x / eff + overhead, where
  x = bytes read per token / peak bandwidth (weights + KV cache at the mean position). A
  weighted linear least squares on the *relative* error (each equation divided by the
  published time). The two are told apart only when the unit's rows span bytes per token
  (x differs by at least 1.5x between rows) and there are at least 4 of them; otherwise
  the overhead is not fitted but shared: the median of the units that have their own
  (said in the provenance).
* ``prefill_eff``: prefill time = prefill work / (peak at the compute precision x eff); one
  figure per unit, the weighted geometric mean of the rows' implied efficiencies.

Rows the data README calls weaker (a knowledge-base summary, a table its own notes doubt, a
low-reliability mirror) weigh half. Leave-one-out: every row predicted by a fit without it.

``python -m harness.calibration.llm`` prints the tables; ``--write`` stores the fit with its
provenance and errors in ``devices/fitted/llm.toml``.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from harness.emulator.generation import (
    LlmConfig,
    UnitFit,
    compute_precision,
    kv_cache_bytes,
    load_config,
    precision,
    prefill_flops,
    prefill_ms,
)
from harness.profiles import DeviceProfile, load_profile

UNITS = ("cpu", "gpu", "npu")
WEAK_WEIGHT = 0.5
MIN_SPAN = 1.5        # x max / x min for a unit's own decode overhead
MIN_ROWS_OWN_OVERHEAD = 4

# The CSV's precision cells that are not one of our names, and what they are costed as.
PRECISION_AS = {
    "quantized, scheme not stated": "w4a16",   # ExecuTorch Vulkan: 4-bit weight-only (notes)
    "w4 (AI Hub 'w4' entry)": "w4a16",          # 4-bit weights; activations not stated
}


@dataclass(frozen=True)
class Row:
    index: int                  # 1-based data row of the CSV
    label: str
    config: LlmConfig
    profile: DeviceProfile
    unit: str
    precision: str
    prompt: int
    gen: int
    decode_tps: float | None
    prefill_tps: float | None   # published, or prompt / TTFT when only TTFT is published
    weight: float

    @property
    def decode_position(self) -> float:
        return self.prompt + self.gen / 2


def _weak(notes: str) -> bool:
    n = notes.lower()
    return any(s in n for s in ("low reliability", "use with caution", "approximate (~)",
                                "secondary"))


def load_rows(data_dir: Path | None = None) -> list[Row]:
    from harness.calibration.published import calibration_dir

    base = data_dir or calibration_dir()
    configs: dict[str, LlmConfig] = {}
    profiles: dict[str, DeviceProfile] = {}
    rows = []
    with (base / "llm_published.csv").open(newline="", encoding="utf-8") as fh:
        for i, r in enumerate(csv.DictReader(fh), start=1):
            if r["config"] not in configs:
                configs[r["config"]] = load_config(base / "llm_configs" / f"{r['config']}.json")
            if r["device_profile"] not in profiles:
                profiles[r["device_profile"]] = load_profile(r["device_profile"])
            prec = PRECISION_AS.get(r["precision"], r["precision"])
            prompt = int(r["prompt_tokens"] or 128)
            gen = int(r["gen_tokens"] or 128)
            pre = float(r["prefill_tokens_per_s"]) if r["prefill_tokens_per_s"] else None
            if pre is None and r["ttft_ms"] and r["prompt_tokens"]:
                pre = prompt / float(r["ttft_ms"]) * 1e3
            dec = float(r["decode_tokens_per_s"]) if r["decode_tokens_per_s"] else None
            label = f"{r['config']} {r['device_profile']} {r['unit']} {prec} ({r['runtime']}"
            label += f", {r['backend']})" if "flash-attn" in r["backend"] else ")"
            rows.append(Row(index=i, label=label, config=configs[r["config"]],
                            profile=profiles[r["device_profile"]], unit=r["unit"],
                            precision=prec, prompt=prompt, gen=gen, decode_tps=dec,
                            prefill_tps=pre, weight=WEAK_WEIGHT if _weak(r["notes"]) else 1.0))
    return rows


def decode_x_ms(row: Row) -> float:
    """Bytes read per token / peak bandwidth, in ms: the decode time at efficiency 1."""
    from harness.emulator.generation import decode_weight_bytes

    read = decode_weight_bytes(row.config, row.precision) \
        + kv_cache_bytes(row.config, round(row.decode_position))
    return read / (row.profile.memory.bandwidth_gb_s.value * 1e9) * 1e3


def prefill_eff_implied(row: Row) -> float:
    assert row.prefill_tps is not None
    cu = row.profile.unit(row.unit)
    prec = precision(row.precision)
    peak = cu.peak_gops[compute_precision(prec, cu)].value * 1e9
    t_s = row.prompt / row.prefill_tps
    return prefill_flops(row.config, row.prompt) / (peak * t_s)


def _fit_decode(rows: list[Row]) -> tuple[float, float | None, str]:
    """(1/eff, overhead ms or None when not fitted on these rows, why)."""
    import numpy as np

    xs = [decode_x_ms(r) for r in rows]
    ts = [1e3 / (r.decode_tps or math.nan) for r in rows]
    ws = [math.sqrt(r.weight) for r in rows]
    if len(rows) < MIN_ROWS_OWN_OVERHEAD or max(xs) / min(xs) < MIN_SPAN:
        return 1.0, None, (f"overhead shared: {len(rows)} rows spanning {max(xs) / min(xs):.2f}x "
                           "in bytes per token cannot tell it from the efficiency")
    a = np.array([[w * x / t, w / t] for x, t, w in zip(xs, ts, ws, strict=True)])
    (inv, c), *_ = np.linalg.lstsq(a, np.array(ws), rcond=None)
    if c < 0:
        return _fit_inv_only(xs, ts, ws, 0.0), 0.0, "own fit gave a negative overhead: set to 0"
    if inv < 1:
        return 1.0, None, (f"overhead shared: the unit's own fit is unphysical (bandwidth "
                           f"efficiency {1 / inv:.2f} > 1, overhead {c:.1f} ms): its rows do not "
                           "scale with bytes per token (kernel-bound, not bandwidth-bound)")
    return float(inv), float(c), "fitted on its rows"


def _fit_inv_only(xs: list[float], ts: list[float], ws: list[float], overhead: float) -> float:
    """1/eff (at least 1) fitted by weighted least squares for a known per-token overhead."""
    c = overhead
    num = sum(w * w * x / t * (1 - c / t) for x, t, w in zip(xs, ts, ws, strict=True))
    den = sum(w * w * (x / t) ** 2 for x, t, w in zip(xs, ts, ws, strict=True))
    return max(1.0, num / den)


def fit(rows: list[Row]) -> dict[str, UnitFit]:
    """The three figures per unit kind from ``rows`` (see the module docstring)."""
    dec: dict[str, tuple[float, float | None, str]] = {}
    by_unit = {u: [r for r in rows if r.unit == u] for u in UNITS}
    for u, rs in by_unit.items():
        drs = [r for r in rs if r.decode_tps]
        if drs:
            dec[u] = _fit_decode(drs)
    owned = [c for _, c, _ in dec.values() if c is not None]
    shared = float(median(owned)) if owned else 0.0
    out = {}
    for u, rs in by_unit.items():
        drs = [r for r in rs if r.decode_tps]
        prs = [r for r in rs if r.prefill_tps]
        if not drs or not prs:
            continue
        inv, c, how = dec[u]
        if c is None:
            c = shared
            xs = [decode_x_ms(r) for r in drs]
            ts = [1e3 / (r.decode_tps or math.nan) for r in drs]
            inv = _fit_inv_only(xs, ts, [math.sqrt(r.weight) for r in drs], c)
            how += f" (median of the units fitted on their own rows: {c:.3g} ms)"
        logs = [(r.weight, math.log(prefill_eff_implied(r))) for r in prs]
        pe = math.exp(sum(w * v for w, v in logs) / sum(w for w, _ in logs))
        out[u] = UnitFit(decode_bw_eff=1 / inv, decode_overhead_ms=c, prefill_eff=pe,
                         source=f"{len(drs)} decode rows, {len(prs)} prefill rows; {how}")
    return out


def predict_row(row: Row, fits: dict[str, UnitFit]) -> tuple[float | None, float | None]:
    """(decode tokens/s, prefill tokens/s) the fit predicts for the row's setting."""
    uf = fits[row.unit]
    dec = 1e3 / (decode_x_ms(row) / uf.decode_bw_eff + uf.decode_overhead_ms)
    cu = row.profile.unit(row.unit)
    pre = row.prompt / prefill_ms(row.config, cu, precision(row.precision), row.prompt, uf) * 1e3
    return dec, pre


def _err(pred: float | None, obs: float | None) -> float | None:
    return None if pred is None or obs is None else (pred / obs - 1) * 100


def evaluate(rows: list[Row]) -> dict[str, Any]:
    """The fit on all rows, and per row the in-sample and leave-one-out errors (%)."""
    full = fit(rows)
    table = []
    for r in rows:
        dec, pre = predict_row(r, full)
        rest = [o for o in rows if o.index != r.index]
        loo = fit(rest)
        if r.unit in loo:
            ldec, lpre = predict_row(r, loo)
        else:
            ldec = lpre = None
        table.append({"row": r.index, "label": r.label, "weight": r.weight,
                      "decode_published": r.decode_tps, "decode_predicted": dec,
                      "decode_err_pct": _err(dec, r.decode_tps),
                      "decode_loo_err_pct": _err(ldec, r.decode_tps),
                      "prefill_published": r.prefill_tps,
                      "prefill_predicted": pre if r.prefill_tps else None,
                      "prefill_err_pct": _err(pre, r.prefill_tps),
                      "prefill_loo_err_pct": _err(lpre, r.prefill_tps)})
    return {"fit": full, "rows": table, "summary": summarize(table)}


def summarize(table: list[dict[str, Any]]) -> dict[str, float]:
    out = {}
    for key in ("decode_err_pct", "decode_loo_err_pct", "prefill_err_pct",
                "prefill_loo_err_pct"):
        vals = [abs(t[key]) for t in table if t[key] is not None]
        out[key.replace("_pct", "_median_abs_pct")] = round(median(vals), 1)
        out[key.replace("_pct", "_worst_abs_pct")] = round(max(vals), 1)
    return out


def to_toml(result: dict[str, Any], *, date: str) -> str:
    s = result["summary"]
    lines = [
        "# Generated by `python -m harness.calibration.llm --write`: do not edit by hand.",
        "# Generation (LLM prefill/decode) efficiencies per unit kind for",
        "# harness/emulator/generation.py, fitted on the 13 published rows of",
        "# harness/calibration/data/llm_published.csv (with llm_configs/); docs/llm.md.",
        "schema_version = 1", "",
        "[fidelity]",
        f'date = "{date}"',
        f"rows = {len(result['rows'])}",
    ]
    lines += [f"{k} = {v}" for k, v in s.items()]
    for u, f in result["fit"].items():
        prov = (f"fitted ({date}) on harness/calibration/data/llm_published.csv {u} rows: "
                f"{f.source}; median |error| decode {s['decode_err_median_abs_pct']}% in "
                f"sample, {s['decode_loo_err_median_abs_pct']}% leave-one-out; prefill "
                f"{s['prefill_err_median_abs_pct']}% in sample, "
                f"{s['prefill_loo_err_median_abs_pct']}% leave-one-out (all units)")
        for name, val in (("decode_bw_eff", round(f.decode_bw_eff, 4)),
                          ("decode_overhead_ms", round(f.decode_overhead_ms, 3)),
                          ("prefill_eff", round(f.prefill_eff, 5))):
            lines += ["", f"[units.{u}.{name}]", f"value = {val}", 'basis = "fitted"',
                      f'source = "{prov}"']
    return "\n".join(lines) + "\n"


def format_table(result: dict[str, Any]) -> str:
    from tabulate import tabulate

    def f(v: float | None, spec: str = ".1f") -> str:
        return "" if v is None else format(v, spec)

    rows = [[t["row"], t["label"], f(t["weight"], "g"), f(t["decode_published"], ".2f"),
             f(t["decode_predicted"], ".2f"), f(t["decode_err_pct"], "+.0f"),
             f(t["decode_loo_err_pct"], "+.0f"), f(t["prefill_published"], ".1f"),
             f(t["prefill_predicted"]), f(t["prefill_err_pct"], "+.0f"),
             f(t["prefill_loo_err_pct"], "+.0f")] for t in result["rows"]]
    out = tabulate(rows, headers=["#", "row", "w", "decode tok/s", "pred", "err %", "LOO %",
                                  "prefill tok/s", "pred", "err %", "LOO %"],
                   disable_numparse=True)
    fits = [[u, f"{x.decode_bw_eff:.3f}", f"{x.decode_overhead_ms:.2f}",
             f"{x.prefill_eff:.4f}", x.source] for u, x in result["fit"].items()]
    out += "\n\n" + tabulate(fits, headers=["unit", "decode_bw_eff", "overhead ms",
                                            "prefill_eff", "how"], disable_numparse=True)
    s = result["summary"]
    out += ("\n\nmedian (worst) |error| %: decode {decode_err_median_abs_pct} "
            "({decode_err_worst_abs_pct}) in sample, {decode_loo_err_median_abs_pct} "
            "({decode_loo_err_worst_abs_pct}) leave-one-out; prefill "
            "{prefill_err_median_abs_pct} ({prefill_err_worst_abs_pct}) in sample, "
            "{prefill_loo_err_median_abs_pct} ({prefill_loo_err_worst_abs_pct}) "
            "leave-one-out").format(**s)
    return out


def main(argv: list[str] | None = None) -> int:
    import datetime

    from harness.emulator.generation import fitted_path

    ap = argparse.ArgumentParser(prog="python -m harness.calibration.llm",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="write devices/fitted/llm.toml")
    args = ap.parse_args(argv)
    result = evaluate(load_rows())
    print(format_table(result))
    if args.write:
        path = fitted_path()
        path.write_text(to_toml(result, date=datetime.date.today().isoformat()),
                        encoding="utf-8")
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
