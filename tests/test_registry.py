"""The plugin registries: Registry itself, and the families built on it (levels, pruning
methods, workloads, runtimes). Fast: nothing here imports torch or onnxruntime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import InputError, Unsupported
from harness.plugins import PluginError, load_plugin
from harness.registry import Registry
from harness.runtimes import RUNTIMES
from harness.suites import WorkloadRef, parse_suite
from harness.variants import (
    PRUNE_METHODS,
    PRUNERS,
    QUANT_LEVELS,
    QUANTIZERS,
    PruneMethod,
    PruneSpec,
    QuantLevel,
    parse_prune,
    parse_quant,
)
from harness.workloads import WORKLOADS, get_workload, registered
from harness.workloads.base import Feeds, Workload

# ----------------------------------------------------------------------------- Registry


def test_lazy_entries_import_on_first_get_and_info_needs_no_import() -> None:
    reg: Registry[Any] = Registry("widget")
    reg.register("dumps", "json:dumps", info="serialises")
    reg.register("missing", "harness_no_such_module:thing", info="never imported")
    reg.register("direct", len)
    assert reg.names() == ["dumps", "missing", "direct"]
    assert reg.info("missing") == "never imported"  # readable without importing the target
    assert reg.items()[0] == ("dumps", "serialises")
    import json

    assert reg.get("dumps") is json.dumps
    assert reg.get("direct") is len
    assert "dumps" in reg and "nope" not in reg and len(reg) == 3


def test_registering_twice_or_a_malformed_target_is_a_programming_error() -> None:
    reg: Registry[Any] = Registry("widget")
    reg.register("a", len)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", len)
    reg.register("a", max, replace=True)
    assert reg.get("a") is max
    with pytest.raises(ValueError, match="module:attr"):
        reg.register("b", "json.dumps")
    with pytest.raises(ValueError, match="non-empty"):
        reg.register("", len)


def test_unknown_names_fail_with_close_matches() -> None:
    reg: Registry[Any] = Registry("widget")
    reg.register("int8-static", len)
    with pytest.raises(InputError, match=r"unknown widget 'int8-statc'.*Did you mean "
                                         r"'int8-static'"):
        reg.get("int8-statc")


def test_registered_is_scoped_and_restores_what_it_shadowed() -> None:
    reg: Registry[Any] = Registry("widget")
    reg.register("a", len, info="original")
    with reg.registered("a", max, info="shadow"), reg.registered("b", min):
        assert reg.get("a") is max and reg.info("a") == "shadow" and reg.get("b") is min
    assert reg.get("a") is len and reg.info("a") == "original"
    assert "b" not in reg


def test_load_plugin_names_the_entry_whose_implementation_is_missing() -> None:
    reg: Registry[Any] = Registry("widget")
    reg.register("gone", "json:no_such_function")
    reg.register("uninstalled", "harness_no_such_module:thing")
    with pytest.raises(PluginError, match=r"widget 'gone' is registered, but its implementation "
                                          r"'json:no_such_function' cannot be loaded"):
        load_plugin(reg, "gone")
    with pytest.raises(PluginError, match=r"ModuleNotFoundError.*harness_no_such_module"):
        load_plugin(reg, "uninstalled")


# ----------------------------------------------------------------------------- levels


def test_every_level_and_method_has_its_implementation() -> None:
    # What the import-time asserts used to check: one registration carries both halves.
    from harness.compress.prune import MethodPruners
    from harness.compress.torch_quant import TorchQuantizer
    from harness.llm.build import BuilderRecipe

    for name, level in QUANT_LEVELS.items():
        impl = load_plugin(QUANTIZERS, name)
        assert isinstance(impl, TorchQuantizer) == (level.runtime == "torch"), name
        # language-model levels are recipes for ONNX Runtime GenAI's model builder
        assert isinstance(impl, BuilderRecipe) == (level.runtime == "onnxruntime-genai"), name
        assert callable(impl) or isinstance(impl, TorchQuantizer | BuilderRecipe)
    for name, method in PRUNE_METHODS.items():
        pruners = load_plugin(PRUNERS, name)
        assert isinstance(pruners, MethodPruners)
        # only methods that keep the graph's shapes can run on an ONNX file's initializers
        assert (pruners.onnx is not None) == (not method.structured), name


def test_finetune_methods_share_their_base_methods_pruners() -> None:
    for name, method in PRUNE_METHODS.items():
        if method.finetune:
            base = name.removesuffix("+ft")
            assert PRUNERS.entry(name).target == PRUNERS.entry(base).target
            assert PRUNE_METHODS[base].structured and not PRUNE_METHODS[base].finetune


def test_a_level_registered_with_info_but_no_implementation_fails_clearly(
        tmp_path: Path) -> None:
    from harness.compress.quantize import quantize

    info = QuantLevel("int8", "a level whose quantizer was never written")
    with QUANTIZERS.registered("int8-ghost", "harness.compress.quantize:quantize_int8_ghost",
                               info=info):
        # what the level is stays readable (suites and --help parse it) ...
        spec = parse_quant("int8-ghost")
        assert spec.precision == "int8" and QUANT_LEVELS["int8-ghost"] is info
        # ... and building it names the level and the missing target
        with pytest.raises(PluginError, match=r"quantization level 'int8-ghost' is registered, "
                                              r"but its implementation 'harness\.compress\."
                                              r"quantize:quantize_int8_ghost' cannot be loaded"):
            quantize(tmp_path / "in.onnx", tmp_path / "out.onnx", spec, calibration=[])
    assert "int8-ghost" not in QUANT_LEVELS
    with pytest.raises(InputError, match="unknown quantization level 'int8-ghost'"):
        parse_quant("int8-ghost")


def test_a_pruning_method_registered_without_pruners_fails_clearly() -> None:
    import onnx

    from harness.compress.prune import prune_onnx

    info = PruneMethod("zeroes nothing yet", pattern="unstructured", structured=False)
    with PRUNERS.registered("ghost", "harness.compress.prune:GHOST", info=info):
        spec = PruneSpec(method="ghost", amount=0.5)
        assert spec.sparsity_pattern == "unstructured"
        with pytest.raises(PluginError, match=r"pruning method 'ghost' is registered, but its "
                                              r"implementation 'harness\.compress\.prune:GHOST'"):
            prune_onnx(onnx.ModelProto(), spec)


def test_level_views_keep_their_order_and_mapping_behaviour() -> None:
    assert list(QUANT_LEVELS)[:2] == ["fp32", "fp16"]
    assert list(PRUNE_METHODS)[:2] == ["magnitude", "2:4"]  # reports sort methods this way
    assert QUANT_LEVELS.get("nope") is None
    with pytest.raises(KeyError):
        QUANT_LEVELS["nope"]
    assert parse_prune("channel-l1-25+ft").finetune


def test_parsing_levels_imports_no_ml_library() -> None:
    code = ("import sys; import harness.variants as v, harness.suites, harness.runtimes; "
            "v.parse_quant('int4-b64'); v.parse_prune('head-l2-50+ft'); "
            "heavy = {'torch', 'onnx', 'onnxruntime'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- workloads


class _FakeWorkload(Workload):
    name = "fake"

    def fingerprint(self) -> dict[str, Any]:
        return {"workload": "fake"}

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        # only looked up through the registry here, never built
        raise Unsupported("the fake workload has no model to export")

    def timing_inputs(self) -> Feeds:
        return {}

    def calibration_inputs(self) -> list[Feeds]:
        return []


def test_a_fake_workload_injected_through_the_registry_is_found_everywhere() -> None:
    with WORKLOADS.registered("fake", _FakeWorkload):
        assert "fake" in registered()
        workload = get_workload(WorkloadRef(name="fake"), eval_size="full")
        assert isinstance(workload, _FakeWorkload) and workload.eval_size == "full"
        suite = parse_suite({"schema_version": 1, "workloads": ["fake"], "quant": ["fp32"],
                             "prune": [0]})
        assert [w.name for w in suite.workloads] == ["fake"]
    assert "fake" not in registered()
    with pytest.raises(InputError, match="unknown workload 'fake'"):
        get_workload(WorkloadRef(name="fake"))


def test_workloads_and_runtimes_are_registered_lazily() -> None:
    assert registered() == sorted(WORKLOADS.names())
    assert {"digits_cnn", "minilm", "ppocr_det", "ppocr_rec", "yolov8n_det"} <= set(registered())
    assert all(WORKLOADS.entry(n).lazy for n in WORKLOADS.names())
    assert RUNTIMES.names() == ["onnxruntime", "torch", "onnxruntime-genai", "litert"]
    assert {lv.runtime for lv in QUANT_LEVELS.values()} <= set(RUNTIMES.names())
