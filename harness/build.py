"""Variant -> Artifact: prune and export the fp32 model, then quantize it; both stages cached.

The fp32 stage is keyed by the workload's fingerprint and the pruning spec; the quantized stage
by the sha256 of the fp32 artifact and the quantization level; both by the tool versions.
Levels run by PyTorch (``torch-*``) build a ``model.pt`` from the workload's torch model under
the same pruning, keyed by that same fp32 ONNX artifact (plus an ONNX twin for the emulator).
The ``as-is`` level of a ``.tflite`` workload is the file itself, keyed by its content. A
sweep therefore exports each pruning level once and quantizes each (pruning, level) once.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata
from pathlib import Path

from harness.cache import ArtifactStore, artifact_sha256, key_of
from harness.runtimes import artifact_file
from harness.variants import PruneSpec, QuantSpec
from harness.workloads.base import Workload

# Bump to invalidate every cached artifact when the build steps change meaning.
BUILD_VERSION = 2  # 2: pruned artifacts carry harness.sparsity_pattern


@cache
def tool_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in ("torch", "onnx", "onnxruntime"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def fp32_key(workload: Workload, prune: PruneSpec) -> str:
    return key_of({"stage": "fp32", "build": BUILD_VERSION, "workload": workload.fingerprint(),
                   "prune": [prune.method, prune.amount], "tools": tool_versions()})


def quant_key(fp32_artifact: Path, quant: QuantSpec) -> str:
    return key_of({"stage": "quant", "build": BUILD_VERSION, "src": artifact_sha256(fp32_artifact),
                   "quant": quant.name, "tools": tool_versions()})


def checkpoint_key(workload: Workload, prune: PruneSpec) -> str:
    """Key of a language model's fp32 checkpoint stage (the GenAI levels' source)."""
    from harness.llm.build import tool_versions as genai_tools

    return key_of({"stage": "checkpoint", "build": BUILD_VERSION,
                   "workload": workload.fingerprint(), "prune": [prune.method, prune.amount],
                   "tools": genai_tools()})


def genai_key(checkpoint_sha: str, quant: QuantSpec) -> str:
    """Key of a GenAI model directory: the checkpoint's content and the level's recipe."""
    from harness.llm.build import tool_versions as genai_tools

    return key_of({"stage": "genai", "build": BUILD_VERSION, "src": checkpoint_sha,
                   "quant": quant.name, "tools": genai_tools()})


_CHECKPOINT_FILE = "config.json"


def as_is_key(workload: Workload) -> str:
    """Key of a model file measured as given (``as-is``): its content, nothing else (no tool
    touches it)."""
    return key_of({"stage": "as-is", "build": BUILD_VERSION, "workload": workload.fingerprint()})


def lookup_artifact(workload: Workload, *, quant: QuantSpec, prune: PruneSpec,
                    cache_dir: Path) -> Path | None:
    """The cached artifact for this variant, or None if some stage still has to be built."""
    store = ArtifactStore(cache_dir)
    if quant.runtime == "litert":
        from harness.errors import Unsupported

        try:
            workload.tflite_file()
        except Unsupported:
            return None   # the build says why not
        return store.get(as_is_key(workload), artifact_file(quant.runtime)) \
            if prune.is_dense else None
    if quant.runtime == "onnxruntime-genai":
        from harness.llm.build import dir_sha256

        ckpt = store.get(checkpoint_key(workload, prune), _CHECKPOINT_FILE)
        if ckpt is None:
            return None
        return store.get(genai_key(dir_sha256(ckpt.parent), quant), artifact_file(quant.runtime))
    fp32 = store.get(fp32_key(workload, prune))
    if fp32 is None:
        return None
    return store.get(quant_key(fp32, quant), artifact_file(quant.runtime))


def build_artifact(workload: Workload, *, quant: QuantSpec, prune: PruneSpec,
                   cache_dir: Path) -> Path:
    """Build (or fetch from the cache) the artifact for ``workload`` under this variant."""
    from harness.compress.prune import record_sparsity_pattern
    from harness.compress.quantize import quantize

    if quant.runtime == "onnxruntime-genai":
        return _build_genai(workload, quant=quant, prune=prune, cache_dir=cache_dir)
    if quant.runtime == "litert":
        return build_as_is(workload, prune=prune, cache_dir=cache_dir)
    store = ArtifactStore(cache_dir)
    key = fp32_key(workload, prune)
    fp32 = store.get(key)
    if fp32 is None:
        if prune.finetune and not workload.can_finetune():
            # checked here, so a workload that ignores the flag cannot mislabel an artifact
            from harness.errors import Unsupported

            raise Unsupported(f"pruning level {prune.name!r} fine-tunes after pruning; "
                              f"workload {workload.name!r} has no fine-tuning recipe")
        stage = store.staging(key)
        try:
            workload.export_fp32(stage / "model.onnx", prune=prune, cache_dir=cache_dir)
            record_sparsity_pattern(stage / "model.onnx", prune)
            _check_pattern(stage / "model.onnx", prune)
        except BaseException:
            store.discard(stage)
            raise
        fp32 = store.commit(key, stage)

    qkey = quant_key(fp32, quant)
    filename = artifact_file(quant.runtime)
    artifact = store.get(qkey, filename)
    if artifact is None:
        stage = store.staging(qkey)
        try:
            if quant.runtime == "torch":
                _build_torch(workload, quant, prune, fp32=fp32, stage=stage,
                             cache_dir=cache_dir)
            else:
                quantize(fp32, stage / filename, quant,
                         calibration=workload.calibration_inputs())
            # ORT's int8 quantizers keep metadata_props; re-stamping guards every other
            # converter (and the ONNX twin a torch level writes beside its model.pt).
            for onnx_file in sorted(stage.glob("*.onnx")):
                record_sparsity_pattern(onnx_file, prune)
        except BaseException:
            store.discard(stage)
            raise
        artifact = store.commit(qkey, stage, filename)
    return artifact


def build_as_is(workload: Workload, *, prune: PruneSpec, cache_dir: Path) -> Path:
    """The ``as-is`` level: the workload's ``.tflite`` file copied into the store unchanged
    (keyed by its content), so every backend names it by key like any other artifact."""
    import shutil

    from harness.errors import Unsupported

    source = workload.tflite_file()   # Unsupported for a workload that is not a .tflite file
    if not prune.is_dense:
        raise Unsupported(f"pruning level {prune.name!r}: the harness does not prune a "
                          ".tflite file; it is measured as given at pruning level 0")
    store = ArtifactStore(cache_dir)
    key = as_is_key(workload)
    filename = artifact_file("litert")
    artifact = store.get(key, filename)
    if artifact is None:
        stage = store.staging(key)
        try:
            shutil.copyfile(source, stage / filename)
        except BaseException:
            store.discard(stage)
            raise
        artifact = store.commit(key, stage, filename)
    return artifact


def _check_pattern(path: Path, prune: PruneSpec) -> None:
    """Refuse an artifact that claims 2:4 but whose stored weights do not follow it."""
    if prune.sparsity_pattern != "2:4":
        return
    from harness.compress.inspect import inspect_artifact

    stats = inspect_artifact(path)
    if not stats.is_2_4:
        raise RuntimeError(
            f"the exported model does not follow 2:4 ({stats.params_2_4} of "
            f"{stats.params_2_4_eligible} eligible weights do): the workload's export ignored "
            "the pruning level")


def _build_torch(workload: Workload, quant: QuantSpec, prune: PruneSpec, *, fp32: Path,
                 stage: Path, cache_dir: Path) -> None:
    """A level PyTorch runs: the workload's torch model, pruned as the fp32 ONNX export was
    (so the ONNX artifact of the same prune level is its fp32 source and key), quantized by
    torch, plus the ONNX twin the emulator reads."""
    from harness.compress.torch_quant import build_torch_artifact

    # The same pruning path as the export (trace example, fine-tune for +ft levels).
    model = workload.pruned_torch_model(workload.torch_model(cache_dir), prune,
                                        cache_dir=cache_dir)
    build_torch_artifact(model, quant, input_names=list(workload.timing_inputs()),
                         fp32_onnx=fp32, out_dir=stage)


def _build_genai(workload: Workload, *, quant: QuantSpec, prune: PruneSpec,
                 cache_dir: Path) -> Path:
    """A language model level: the workload's fp32 checkpoint (cached), then ONNX Runtime
    GenAI's builder at the level's recipe (cached by the checkpoint's content), probed on the
    CPU before it is committed (:mod:`harness.llm.build`)."""
    from harness.compress.prune import record_sparsity_pattern
    from harness.llm.build import dir_sha256, probe, run_builder
    from harness.plugins import load_plugin
    from harness.variants import QUANTIZERS

    recipe = load_plugin(QUANTIZERS, quant.level)
    store = ArtifactStore(cache_dir)
    key = checkpoint_key(workload, prune)
    ckpt = store.get(key, _CHECKPOINT_FILE)
    if ckpt is None:
        stage = store.staging(key)
        try:
            workload.export_checkpoint(stage, prune=prune, cache_dir=cache_dir)
        except BaseException:
            store.discard(stage)
            raise
        ckpt = store.commit(key, stage, _CHECKPOINT_FILE)
    qkey = genai_key(dir_sha256(ckpt.parent), quant)
    filename = artifact_file(quant.runtime)
    artifact = store.get(qkey, filename)
    if artifact is None:
        stage = store.staging(qkey)
        try:
            out = stage / "model"
            run_builder(ckpt.parent, out, recipe, block_size=quant.param,
                        work_dir=stage / "builder-cache")
            probe(out, quant.name)
            for onnx_file in sorted(out.glob("*.onnx")):
                record_sparsity_pattern(onnx_file, prune)
            # the model directory itself is the artifact: move its files up, drop the rest
            import shutil

            shutil.rmtree(stage / "builder-cache", ignore_errors=True)
            for f in out.iterdir():
                f.rename(stage / f.name)
            out.rmdir()
        except BaseException:
            store.discard(stage)
            raise
        artifact = store.commit(qkey, stage, filename)
    return artifact
