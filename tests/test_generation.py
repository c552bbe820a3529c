"""Text generation from an architecture: sizes, KV cache, the fit on published rows, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.calibration.llm import evaluate, format_table, load_rows
from harness.cli import main
from harness.emulator.generation import (
    GGML_BPW,
    LlmConfig,
    bits_per_weight,
    kv_cache_bytes,
    load_config,
    load_fit,
    parameter_count,
    predict,
    weight_bytes,
)
from harness.errors import InputError
from harness.profiles import load_profile

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "harness" / "calibration" / "data" / "llm_configs"
GLM = REPO / "tests" / "data" / "llm" / "glm4_9b.json"
MIB, GIB = 2 ** 20, 2 ** 30

# Llama-3-8B (Meta's published architecture), the reference model of llama-quantize's table.
LLAMA3_8B = LlmConfig.from_dict(dict(hidden_size=4096, num_hidden_layers=32,
                                     num_attention_heads=32, num_key_value_heads=8,
                                     intermediate_size=14336, vocab_size=128256,
                                     tie_word_embeddings=False))


def test_parameter_counts_match_the_published_ones() -> None:
    # Llama-3.2-1B: 1.24B (Meta's model card); TinyLlama: 1.1B; GLM-4-9B: 9.4B (THUDM).
    assert parameter_count(load_config(CONFIGS / "llama3_2_1b.json")) == 1_235_814_400
    assert round(parameter_count(load_config(CONFIGS / "tinyllama_1_1b.json")) / 1e9, 2) == 1.10
    assert round(parameter_count(load_config(GLM)) / 1e9, 1) == 9.4
    assert round(parameter_count(LLAMA3_8B) / 1e9, 2) == 8.03


def test_kv_cache_by_hand() -> None:
    # 2 (K and V) x 16 layers x 8 kv heads x 64 head_dim x 4096 positions x 2 bytes = 128 MiB.
    assert kv_cache_bytes(load_config(CONFIGS / "llama3_2_1b.json"), 4096) == 128 * MIB
    # GLM-4-9B: 2 x 40 x 2 x 128 x 4096 x 2 = 160 MiB (2 KV heads: a small cache for 9B).
    assert kv_cache_bytes(load_config(GLM), 4096) == 160 * MIB
    # TinyLlama at 2048 in fp32: 2 x 22 x 4 x 64 x 2048 x 4 = 88 MiB.
    assert kv_cache_bytes(load_config(CONFIGS / "tinyllama_1_1b.json"), 2048,
                          bytes_per_elem=4) == 88 * MIB


def test_block_bits_per_weight_by_hand() -> None:
    assert GGML_BPW["q4_0"] == (2 + 16) * 8 / 32 == 4.5
    assert GGML_BPW["q4_1"] == (4 + 16) * 8 / 32 == 5.0
    assert GGML_BPW["q8_0"] == (2 + 32) * 8 / 32 == 8.5
    assert GGML_BPW["q6_K"] == (128 + 64 + 16 + 2) * 8 / 256 == 6.5625
    assert GGML_BPW["q4_K"] == (4 + 12 + 128) * 8 / 256 == 4.5
    assert GGML_BPW["q2_K"] == (16 + 64 + 4) * 8 / 256 == 2.625


@pytest.mark.parametrize(("ftype", "gib"), [
    # `llama-quantize --help`: "<size>G ... @ Llama-3-8B" (GiB).
    ("q4_0", 4.34), ("q4_1", 4.78), ("q2_k", 2.96), ("q3_k_m", 3.74), ("q4_k_m", 4.58),
    ("q5_k_m", 5.33), ("q6_k", 6.14), ("q8_0", 7.96)])
def test_gguf_sizes_match_llama_quantize_for_llama3_8b(ftype: str, gib: float) -> None:
    assert weight_bytes(LLAMA3_8B, ftype) / GIB == pytest.approx(gib, rel=0.005)


def test_llama_1b_sizes_match_llama_bench() -> None:
    cfg = load_config(CONFIGS / "llama3_2_1b.json")
    # llm_published.csv notes: "llama 1B Q4_0 727.75 MiB", "F16 2.30 GiB". The tied embedding
    # is the output matrix, so llama.cpp stores it at Q6_K.
    assert weight_bytes(cfg, "q4_0") / MIB == pytest.approx(727.75, abs=0.5)
    assert weight_bytes(cfg, "f16") / GIB == pytest.approx(2.30, abs=0.01)
    # (1.0B layer weights x 4.5 + 0.26B embedding x 6.5625) / 1.24B = 4.94 bits per weight.
    assert bits_per_weight(cfg, "q4_0") == pytest.approx(4.94, abs=0.005)
    # Plain types: w4a8 keeps int8 embeddings (ExecuTorch's recipe).
    assert bits_per_weight(cfg, "fp16") == pytest.approx(16)


def test_fit_errors_leave_one_out_printed_and_bounded(capsys: pytest.CaptureFixture) -> None:
    result = evaluate(load_rows())
    with capsys.disabled():
        print("\n" + format_table(result))
    s = result["summary"]
    assert len(result["rows"]) == 13
    # Fewer free parameters than rows per unit: at most 3 per unit.
    assert set(result["fit"]) == {"cpu", "gpu", "npu"}
    assert s["decode_loo_err_median_abs_pct"] < 20
    assert s["prefill_loo_err_median_abs_pct"] < 80
    for f in result["fit"].values():
        assert 0 < f.decode_bw_eff <= 1 and 0 < f.prefill_eff <= 1 and f.decode_overhead_ms >= 0
    # The shipped file is this fit.
    shipped = load_fit()
    for u, f in result["fit"].items():
        assert shipped[u].decode_bw_eff == pytest.approx(f.decode_bw_eff, abs=1e-4)
        assert shipped[u].decode_overhead_ms == pytest.approx(f.decode_overhead_ms, abs=1e-3)
        assert shipped[u].prefill_eff == pytest.approx(f.prefill_eff, abs=1e-5)


def test_prediction_is_consistent() -> None:
    cfg = load_config(GLM)
    prof = load_profile("snapdragon8gen3")
    q4 = predict(cfg, prof, precision_name="q4_k_m", prompt_tokens=1024, context=4096)
    f16 = predict(cfg, prof, precision_name="fp16", prompt_tokens=1024, context=4096)
    assert q4.decode_tokens_per_s > f16.decode_tokens_per_s
    assert q4.sustained_decode_tokens_per_s <= q4.decode_tokens_per_s
    assert q4.kv_cache_mb == 160
    assert not f16.fits and f16.peak_memory_mb > 18000
    assert q4.ttft_ms == pytest.approx(1024 / q4.prefill_tokens_per_s * 1e3)
    with pytest.raises(InputError, match="context"):
        predict(cfg, prof, prompt_tokens=1024, gen_tokens=128, context=512)


def test_cli_json_fields(capsys: pytest.CaptureFixture) -> None:
    assert main(["emulate", str(GLM), "--device", "snapdragon8gen3", "--device", "raspberrypi5",
                 "--precision", "q4_k_m", "--precision", "q8_0", "--prompt-tokens", "1024",
                 "--gen-tokens", "64", "--context", "4096", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 4
    keys = {"prefill_tokens_per_s", "decode_tokens_per_s", "ttft_ms", "kv_cache_mb",
            "peak_memory_mb", "fits", "energy_mj_per_token", "sustained_decode_tokens_per_s"}
    for r in out:
        assert keys <= r.keys() and r["context"] == 4096 and r["unit"] == "cpu"
    assert main(["emulate", str(GLM), "--device", "raspberrypi5", "--unit", "npu"]) == 1
    assert "npu" in capsys.readouterr().out


def test_cli_table_and_bad_input(tiny_model: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["emulate", str(CONFIGS / "llama3_2_1b.json"), "--device", "snapdragon8elite",
                 "--unit", "gpu", "--precision", "f16", "--wide"]) == 0
    out = capsys.readouterr().out
    assert "TTFT (ms)" in out and "decode (tok/s)" in out and "after 600 s" in out
    assert main(["emulate", str(tiny_model), "--device", "snapdragon8gen3",
                 "--precision", "q4_k_m"]) == 2
    assert "config.json" in capsys.readouterr().err
    assert main(["emulate", str(tiny_model), str(GLM), "--device", "snapdragon8gen3"]) == 2
    assert "not both" in capsys.readouterr().err
