"""harness gate / harness baseline promote: statistics with known shifts, the gate end to end
on tiny ONNX models where one does more work, exit codes, missing artifacts, a moved
yardstick."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_fixtures import make_run, measurement, row

from harness.cache import artifact_sha256
from harness.cli import main
from harness.gate import (
    GateOptions,
    Measure,
    deterministic_changes,
    gate_runs,
    judge_case,
    matmul_chain_onnx,
)
from harness.report.stats import PairedTest, holm, holm_adjusted, paired_median_test

# --------------------------------------------------------------------------- statistics


def _alarm_rate(shift: float, *, threshold: float, sims: int = 400, n: int = 20,
                sigma: float = 0.02, alpha: float = 0.05, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for k in range(sims):
        x = rng.normal(shift, sigma, n)
        t = paired_median_test(x, threshold=threshold, resamples=500, seed=k)
        hits += t.p_value <= alpha and t.direction == "slower"
    return hits / sims


def test_no_shift_false_alarms_near_the_nominal_level() -> None:
    # no noise band: "slower" one-sided at alpha/2 = 2.5% in theory; the bootstrap of a median
    # of 20 is a little liberal
    assert _alarm_rate(0.0, threshold=0.0) <= 0.06
    # with a 2% band and 2% noise per round, no shift almost never clears it
    assert _alarm_rate(0.0, threshold=0.02) == 0.0


def test_power_follows_the_theory() -> None:
    # median of n normal values: standard error ~ 1.2533 sigma / sqrt(n); a shift of
    # 1.96 SE + band is detected about half the time, 1.96 SE + 3 SE + band ~ 99.9%
    se = 1.2533 * 0.02 / np.sqrt(20)
    half = _alarm_rate(0.02 + 1.96 * se, threshold=0.02)
    assert 0.3 <= half <= 0.7
    assert _alarm_rate(0.02 + 5 * se, threshold=0.02) >= 0.95
    # a 5% shift against a 2% band with this noise: always
    assert _alarm_rate(np.log(1.05), threshold=0.02) == 1.0


def test_paired_test_is_seeded_and_symmetric() -> None:
    x = np.random.default_rng(3).normal(-0.05, 0.01, 20)
    t = paired_median_test(x, threshold=0.02)
    assert t == paired_median_test(x, threshold=0.02)
    assert t.direction == "faster" and t.high < 1 and t.p_value < 0.01
    assert t.low < t.ratio < t.high
    with pytest.raises(ValueError):
        paired_median_test([], threshold=0.02)


def test_holm() -> None:
    assert holm([0.01, 0.04, 0.03], alpha=0.05) == [True, False, False]
    assert holm([0.01, 0.02, 0.04], alpha=0.05) == [True, True, True]
    assert holm([0.2, 0.001], alpha=0.05) == [False, True]
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # rejections agree with the adjusted values
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = list(rng.uniform(0, 0.1, 6))
        assert holm(p, alpha=0.05) == [q <= 0.05 for q in holm_adjusted(p)]


def test_holm_keeps_the_family_wise_error() -> None:
    # 8 null cases per family, uniform p-values: P(any rejection) <= alpha
    rng = np.random.default_rng(2)
    fams = [any(holm(list(rng.uniform(0, 1, 8)), alpha=0.05)) for _ in range(4000)]
    assert np.mean(fams) <= 0.06


# --------------------------------------------------------------------------- judging


def _sampler(shift: float, *, sigma: float = 0.02, threshold: float = 0.02, seed: int = 0,
             calls: list[tuple[int, str]] | None = None) -> Measure:
    """Follow-up measurements drawn from N(shift, sigma) per round (seeded), logging each
    call's (rounds, stage) in ``calls``."""
    rng = np.random.default_rng(seed)

    def measure(rounds: int, stage: str) -> tuple[PairedTest | None, str]:
        if calls is not None:
            calls.append((rounds, stage))
        return paired_median_test(rng.normal(shift, sigma, rounds), threshold=threshold,
                                  resamples=500), ""

    return measure


def _first(shift: float, *, sigma: float = 0.02, seed: int = 1) -> PairedTest:
    return paired_median_test(np.random.default_rng(seed).normal(shift, sigma, 20),
                              threshold=0.02)


def _inconclusive(ratio: float) -> PairedTest:
    """A first pass of 20 rounds whose median ratio is exactly ``ratio`` but spread ±10%:
    not significant against a 2% band."""
    return paired_median_test(np.log(ratio) + np.linspace(-0.1, 0.1, 20), threshold=0.02)


def test_judge_a_known_shift_is_confirmed_by_a_longer_rerun() -> None:
    calls: list[tuple[int, str]] = []
    first = _first(np.log(1.05))
    j = judge_case(first, p_first=first.p_value, opts=GateOptions(),
                   measure=_sampler(np.log(1.05), calls=calls))
    assert j.verdict == "regression" and j.suspected and j.confirmed is True
    assert not j.extended
    assert calls == [(40, "confirm")]           # 2R rounds, no extension
    assert j.rounds_total == 60
    # the re-run is judged on its own data: a re-run that sees nothing clears the case
    j = judge_case(first, p_first=first.p_value, opts=GateOptions(), measure=_sampler(0.0))
    assert j.verdict == "same" and j.suspected and j.confirmed is False


def test_judge_no_shift_takes_no_follow_up() -> None:
    calls: list[tuple[int, str]] = []
    first = _first(0.0)
    j = judge_case(first, p_first=first.p_value, opts=GateOptions(),
                   measure=_sampler(0.0, calls=calls))
    assert j.verdict == "same" and not j.suspected and not j.extended
    assert j.confirmed is None and calls == [] and j.rounds_total == 20
    # an improvement is not re-measured either
    first = _first(np.log(0.95))
    j = judge_case(first, p_first=first.p_value, opts=GateOptions(),
                   measure=_sampler(0.0, calls=calls))
    assert j.verdict == "improvement" and calls == []


def test_judge_extends_an_inconclusive_first_pass_beyond_the_band() -> None:
    first = _inconclusive(1.035)
    assert first.p_value > 0.05 and first.ratio == pytest.approx(1.035)   # the premise
    calls: list[tuple[int, str]] = []
    j = judge_case(first, p_first=first.p_value, opts=GateOptions(),
                   measure=_sampler(np.log(1.05), calls=calls))
    assert j.extended and j.suspected and j.verdict == "regression" and j.confirmed is True
    assert calls == [(40, "extend"), (40, "confirm")] and j.rounds_total == 100
    # an extension that sees nothing ends it, without a confirming re-run
    calls.clear()
    j = judge_case(first, p_first=first.p_value, opts=GateOptions(),
                   measure=_sampler(0.0, calls=calls))
    assert j.extended and not j.suspected and j.verdict == "same" and j.confirmed is None
    assert calls == [(40, "extend")]
    # within the band, or with extension off: not extended
    for first, opts in ((_inconclusive(1.01), GateOptions()),
                        (_inconclusive(1.035), GateOptions(extend=False))):
        calls.clear()
        j = judge_case(first, p_first=first.p_value, opts=opts,
                       measure=_sampler(np.log(1.05), calls=calls))
        assert j.verdict == "same" and not j.extended and calls == []


def test_judge_extension_is_bonferroni_over_the_cases() -> None:
    # a two-sided p of 0.008: significant alone, not among 10 timed cases (0.005)
    ext = PairedTest(n=40, ratio=1.04, low=1.021, high=1.06, p_slower=0.004, p_faster=1.0,
                     confidence=0.95)
    stages: list[str] = []

    def measure(rounds: int, stage: str) -> tuple[PairedTest | None, str]:
        stages.append(stage)
        return ext, ""

    first = _inconclusive(1.035)
    assert judge_case(first, p_first=first.p_value, opts=GateOptions(), measure=measure,
                      family=1).verdict == "regression"
    assert stages == ["extend", "confirm"]
    stages.clear()
    j = judge_case(first, p_first=first.p_value, opts=GateOptions(), measure=measure,
                   family=10)
    assert j.verdict == "same" and j.extended and stages == ["extend"]


def test_judge_failed_follow_up_and_no_confirm() -> None:
    first = _first(np.log(1.05))
    j = judge_case(first, p_first=first.p_value, opts=GateOptions(),
                   measure=lambda rounds, stage: (None, "worker crashed"))
    assert j.verdict == "regression" and j.failure == "worker crashed"
    calls: list[tuple[int, str]] = []
    j = judge_case(first, p_first=first.p_value, opts=GateOptions(confirm=False),
                   measure=_sampler(0.0, calls=calls))
    assert j.verdict == "regression" and j.confirmed is None and calls == []
    assert GateOptions(rounds=10).followup == 20
    assert GateOptions(rounds=10, followup_rounds=30).followup == 30


def _judged_rates(shift: float, *, sigma: float, threshold: float, sims: int,
                  opts: GateOptions, seed: int = 5) -> tuple[float, float]:
    """(first-pass alarm rate, regression rate after judge_case) over ``sims`` simulated
    cases with per-round log ratios N(shift, sigma)."""
    rng = np.random.default_rng(seed)

    def measure(rounds: int, stage: str) -> tuple[PairedTest | None, str]:
        return paired_median_test(rng.normal(shift, sigma, rounds), threshold=threshold,
                                  resamples=500), ""

    first = final = 0
    for _ in range(sims):
        t = paired_median_test(rng.normal(shift, sigma, opts.rounds), threshold=threshold,
                               resamples=500)
        first += t.p_value <= opts.alpha and t.direction == "slower"
        final += judge_case(t, p_first=t.p_value, opts=opts, measure=measure
                            ).verdict == "regression"
    return first / sims, final / sims


def test_judge_false_alarms_are_about_alpha_squared() -> None:
    # no noise band, so the first pass alone alarms at about alpha / 2 and about half the
    # first passes lie "beyond the band" and get extended: two independent significant
    # measurements bring it to <= 2 alpha^2 = 0.5% in theory (1000 cases: a few at most)
    opts = GateOptions(threshold=0.0)
    first, final = _judged_rates(0.0, sigma=0.02, threshold=0.0, sims=1000, opts=opts)
    assert first >= 0.02
    assert final <= 0.01


def test_judge_power_beats_a_same_length_confirmation() -> None:
    # +4.7% against a 2% band with 3% noise per round: the first pass alone finds ~88%; the
    # old rule (confirmation of R rounds, no extension) ~0.88^2; the sequential rule more
    old = GateOptions(followup_rounds=20, extend=False)
    first, before = _judged_rates(np.log(1.047), sigma=0.03, threshold=0.02, sims=400,
                                  opts=old)
    _, after = _judged_rates(np.log(1.047), sigma=0.03, threshold=0.02, sims=400,
                             opts=GateOptions())
    assert 0.75 <= first <= 0.95
    assert before <= first
    assert after >= 0.95 and after >= before + 0.1


# --------------------------------------------------------------------------- fixtures


def _store(cache: Path, model: Path, key: str) -> Path:
    d = cache / "artifacts" / key
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, d / "model.onnx")
    return d / "model.onnx"


def _row(case_quant: str, path: Path, **kw: Any) -> dict[str, Any]:
    """A version-2 row whose artifact is ``path`` (in a store directory)."""
    prov = kw.pop("provenance", {"emulator_version": "1", "profile_sha256": "p" * 8})
    r = measurement(row("chain", case_quant, "0", "phone", **kw)).to_row()
    r["artifact"] = {**r["artifact"], "key": path.parent.name, "path": str(path),
                     "sha256": artifact_sha256(path), "format": "onnx",
                     "size_bytes": path.stat().st_size}
    r["provenance"] = prov
    return r


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "models"
    return {"base": matmul_chain_onnx(d / "base.onnx", layers=10, seed=0),
            "twin": matmul_chain_onnx(d / "twin.onnx", layers=10, seed=1),  # same work
            "slow": matmul_chain_onnx(d / "slow.onnx", layers=14, seed=0)}  # 40% more work


def _pair(tmp_path: Path, cache: Path, models: dict[str, Path], cases: dict[str, tuple[str, str]],
          **b_kw: Any) -> tuple[Path, Path]:
    """Baseline and candidate runs, case quant -> (baseline model, candidate model)."""
    rows_a, rows_b = [], []
    for q, (ma, mb) in cases.items():
        pa = _store(cache, models[ma], f"{ma}-key")
        pb = _store(cache, models[mb], f"{mb}-key")
        rows_a.append(_row(q, pa))
        rows_b.append(_row(q, pb, **b_kw))
    return (make_run(tmp_path / "res", rows_a, label="base"),
            make_run(tmp_path / "res", rows_b, label="cand"))


FAST = ["--rounds", "8", "--block", "3"]


# --------------------------------------------------------------------------- end to end


def test_gate_end_to_end(tmp_path: Path, cache_dir: Path, models: dict[str, Path],
                         capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _pair(tmp_path, cache_dir, models,
                 {"same": ("base", "twin"), "slower": ("base", "slow"),
                  "ident": ("base", "base")})
    code = main(["gate", str(a), str(b), "--format", "json", *FAST])
    out = json.loads(capsys.readouterr().out)
    by = {c["case_id"].split("/")[1]: c for c in out}
    assert code == 1
    assert by["slower"]["verdict"] == "regression" and by["slower"]["confirmed"] is True
    assert by["slower"]["ratio"] > 1.2 and by["slower"]["ci_low"] > 1.02
    # confirmed by a re-run of twice the rounds (8 -> 16), judged on its own
    assert by["slower"]["rerun_rounds"] == 16 and by["slower"]["rerun_ratio"] > 1.2
    assert by["slower"]["rounds_total"] == 24 and by["slower"]["extended"] is False
    assert by["same"]["verdict"] == "same" and not by["same"]["regressions"]
    assert 0.95 < by["same"]["ratio"] < 1.05
    assert by["ident"]["identical"] and by["ident"]["verdict"] == "same"
    for c in out:
        assert {"case_id", "verdict", "ratio", "ci_low", "ci_high", "changes"} <= set(c)
    # the reverse direction is an improvement, and not a failure
    code = main(["gate", str(b), str(a), *FAST])
    text = capsys.readouterr().out
    assert code == 0 and "**improvement**" in text


def test_gate_records_an_extension(tmp_path: Path, cache_dir: Path, models: dict[str, Path],
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The gate's wiring of judge_case, with the measurements replaced by fixed tests: an
    inconclusive first pass beyond the band, a significant extension, a confirming re-run;
    the JSON and the Markdown say so."""
    import harness.gate as gate

    def fixed(ratio: float, n: int, p_slower: float) -> PairedTest:
        return PairedTest(n=n, ratio=ratio, low=ratio - 0.03, high=ratio + 0.03,
                          p_slower=p_slower, p_faster=1.0, confidence=0.95)

    tests = {"": fixed(1.035, 8, 0.2), "-extend": fixed(1.045, 16, 0.001),
             "-rerun": fixed(1.048, 16, 0.001)}
    seen: list[tuple[str, int]] = []

    def remeasure(a: Path, b: Path, opts: GateOptions, *, threads: int, log: Path,
                  shapes: Any) -> tuple[PairedTest | None, dict[str, Any], str]:
        stage = log.stem.removeprefix("gate-0000")
        seen.append((stage, opts.rounds))
        return tests[stage], {"host_a_ms": 1.0, "host_b_ms": 1.04}, ""

    monkeypatch.setattr(gate, "_remeasure", remeasure)
    a, b = _pair(tmp_path, cache_dir, models, {"one": ("base", "twin")})
    code = main(["gate", str(a), str(b), "--format", "json", *FAST])
    (case,) = json.loads(capsys.readouterr().out)
    assert code == 1 and seen == [("", 8), ("-extend", 16), ("-rerun", 16)]
    assert case["verdict"] == "regression" and case["extended"] is True
    assert case["extension_rounds"] == 16 and case["extension_ratio"] == 1.045
    assert case["confirmed"] is True and case["rerun_rounds"] == 16
    assert case["rounds_total"] == 40 and case["rounds"] == 8
    assert main(["gate", str(a), str(b), *FAST]) == 1
    text = capsys.readouterr().out
    assert "extended x1.045 (16 rounds); confirmed x1.048 (16 rounds)" in text


def test_promoted_baseline_gates_without_the_cache(tmp_path: Path, cache_dir: Path,
                                                    models: dict[str, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _pair(tmp_path, cache_dir, models, {"same": ("base", "twin")})
    baselines = tmp_path / "baselines"
    assert main(["baseline", "promote", str(a), "--name", "nightly",
                 "--baselines-dir", str(baselines)]) == 0
    promoted = baselines / "nightly"
    assert (promoted / "manifest.json").is_file() and (promoted / "cases.jsonl").is_file()
    assert (promoted / "artifacts" / "base-key" / "model.onnx").is_file()
    shutil.rmtree(cache_dir / "artifacts" / "base-key")   # a fresh machine's cache
    Path(json.loads((a / "cases.jsonl").read_text().splitlines()[0])["artifact"]["path"]
         ).unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["gate", str(promoted), str(b), *FAST]) == 0
    assert "same" in capsys.readouterr().out
    # promoting again replaces it
    assert main(["baseline", "promote", str(b), "--name", "nightly",
                 "--baselines-dir", str(baselines)]) == 0
    assert (promoted / "artifacts" / "twin-key" / "model.onnx").is_file()
    assert not (promoted / "artifacts" / "base-key").exists()


# --------------------------------------------------------------------------- bad input


def test_exit_2_for_a_run_that_does_not_exist(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", str(tmp_path / "nope"), str(tmp_path / "nope2")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["baseline", "promote", str(tmp_path / "nope")]) == 2


def test_exit_2_for_runs_with_no_case_in_common(tmp_path: Path, cache_dir: Path,
                                                models: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    pa = _store(cache_dir, models["base"], "k1")
    a = make_run(tmp_path / "res", [_row("x", pa)], label="a")
    b = make_run(tmp_path / "res", [_row("y", pa)], label="b")
    assert main(["gate", str(a), str(b)]) == 2
    assert "no case in common" in capsys.readouterr().err


def test_exit_2_names_every_missing_artifact(tmp_path: Path, cache_dir: Path,
                                             models: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _pair(tmp_path, cache_dir, models,
                 {"one": ("base", "twin"), "two": ("base", "slow")})
    shutil.rmtree(cache_dir / "artifacts" / "base-key")
    for m in models.values():
        m.unlink()
    assert main(["gate", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "chain/one/prune-0/phone (baseline, artifact base-key)" in err
    assert "chain/two/prune-0/phone (baseline, artifact base-key)" in err
    assert "twin-key" not in err
    # a file with other content under the key is not the artifact
    _store(cache_dir, models["slow"] if models["slow"].exists() else
           matmul_chain_onnx(tmp_path / "other.onnx", layers=3), "base-key")
    assert main(["gate", str(a), str(b)]) == 2
    assert "content differs" in capsys.readouterr().err
    assert main(["baseline", "promote", str(a), "--baselines-dir",
                 str(tmp_path / "bl")]) == 2
    assert not (tmp_path / "bl" / "nightly").exists()


# --------------------------------------------------------------------------- deterministic


def test_deterministic_changes_are_listed_and_judged(tmp_path: Path) -> None:
    a = measurement(row("w", "q", "0", "phone", device_ms=2.0, quality=0.95))
    same = measurement(row("w", "q", "0", "phone", device_ms=2.0, quality=0.95))
    assert deterministic_changes(a, same) == ([], [], None)
    b = measurement(row("w", "q", "0", "phone", device_ms=2.1, quality=0.949,
                        footprint_mb=2000.0, size_bytes=101_000))
    regressions, changes, yardstick = deterministic_changes(a, b)
    assert yardstick is None
    text = "; ".join(regressions)
    for what in ("predicted device latency 2 -> 2.1 ms (+5.00%)", "predicted device memory",
                 "no longer fits", "artifact size 100000 -> 101000", "top1_accuracy"):
        assert what in text
    # a few bytes more (a doc string) are listed, not judged
    b_doc = measurement(row("w", "q", "0", "phone", device_ms=2.0, quality=0.95,
                            size_bytes=100_007))
    assert deterministic_changes(a, b_doc) == (
        [], ["artifact size 100000 -> 100007 bytes (+0.01%)"], None)
    # a quality tolerance turns the small drop into a listed change
    regressions, changes, _ = deterministic_changes(a, b, quality_tolerance=0.005)
    assert not any("top1" in r for r in regressions) and any("top1" in c for c in changes)
    faster = measurement(row("w", "q", "0", "phone", device_ms=1.5))
    regressions, changes, _ = deterministic_changes(a, faster)
    assert not regressions and changes == ["predicted device latency 2 -> 1.5 ms (-25.00%)"]


def test_a_changed_yardstick_is_not_a_regression(tmp_path: Path, cache_dir: Path,
                                                 models: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _pair(tmp_path, cache_dir, models, {"ident": ("base", "base")}, device_ms=3.0,
                 provenance={"emulator_version": "2", "profile_sha256": "q" * 8})
    code = main(["gate", str(a), str(b), "--format", "json"])
    (case,) = json.loads(capsys.readouterr().out)
    assert code == 0
    assert not case["regressions"]
    assert case["yardstick"] and "emulator 1 -> 2" in case["yardstick"]
    assert any("predicted device latency" in c and "yardstick changed" in c
               for c in case["changes"])
    # the same change under the same yardstick is a regression (deterministic: no re-run)
    a2, b2 = _pair(tmp_path / "again", cache_dir, models, {"ident": ("base", "base")},
                   device_ms=3.0)
    assert main(["gate", str(a2), str(b2)]) == 1
    assert "predicted device latency" in capsys.readouterr().out


def test_status_change_and_missing_case(tmp_path: Path, cache_dir: Path,
                                        models: dict[str, Path]) -> None:
    pa = _store(cache_dir, models["base"], "base-key")
    a = make_run(tmp_path / "res", [_row("ok", pa), _row("gone", pa)], label="a")
    bad = _row("ok", pa, status="error", median_ms=None)
    b = make_run(tmp_path / "res", [bad], label="b")
    res = gate_runs(a, b, GateOptions(rounds=4, block=1), cache_dir=cache_dir)
    by = {c.case_id.split("/")[1]: c for c in res.cases}
    assert by["ok"].regressions == ("status ok -> error",)
    assert by["gone"].regressions == ("case missing from the candidate",)


def test_options_are_validated() -> None:
    from harness.errors import InputError

    with pytest.raises(InputError):
        GateOptions(rounds=2)
    with pytest.raises(InputError):
        GateOptions(alpha=0.9)
    assert main(["gate"]) == 2


def test_self_test_small(tmp_path: Path) -> None:
    """The self-test runs and reports (tiny numbers here; the figures in the docs come from
    the full default run)."""
    from harness.gate import self_test, selftest_markdown

    st = self_test(GateOptions(rounds=6, block=2, warmup=2), comparisons=2, workers=1,
                   workdir=tmp_path)
    assert set(st.rates) == {"A/A", "+5%", "+10%"}
    assert st.rates["A/A"]["n"] == 2
    assert st.median_ratio["+10%"] > st.median_ratio["A/A"]
    assert "false alarms" in selftest_markdown(st)
