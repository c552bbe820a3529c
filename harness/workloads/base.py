"""The workload protocol shared by every model the harness benchmarks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import Unsupported
from harness.variants import PruneSpec

if TYPE_CHECKING:
    import torch

Feeds = dict[str, np.ndarray]
RunFn = Callable[[Feeds], list[np.ndarray]]

# How much evaluation data a workload uses: "small" keeps the default sweep within its time
# budget; "full" is for a release comparison (see each workload's docstring for the sizes).
EVAL_SIZES: tuple[str, ...] = ("small", "full")


@dataclass(frozen=True)
class Quality:
    """A quality measurement: the metric's value and how many examples it was computed on.

    ``extra`` holds secondary metrics of the same evaluation (e.g. MRR beside recall@1).
    """

    metric: str
    value: float
    n_examples: int
    higher_is_better: bool = True
    extra: dict[str, float] = field(default_factory=dict)


class Workload(ABC):
    """A real model plus its inputs, its calibration and evaluation data and its metric.

    Methods that need torch import it themselves, so the measuring worker (which runs
    :meth:`timing_inputs` and :meth:`evaluate`) does not pay for it.
    """

    name: str
    metric: str | None = None
    # Set by :func:`harness.workloads.get_workload`; one of EVAL_SIZES.
    eval_size: str = "small"
    # Axis of the outputs that holds class scores, for the top-1 agreement fidelity figure;
    # None when the outputs are not class scores (embeddings, maps, raw box regressions).
    top1_axis: int | None = None
    # What the fp32 reference is when it is not a full-precision original (a language model
    # dequantized from a shipped 4-bit file): said in the report beside every Δ against it.
    reference_note: str | None = None
    # A text generator (harness.llm): measured as prefill and decode phases, scored on text,
    # built from a Hugging Face checkpoint by ONNX Runtime GenAI (genai-* levels).
    generative: bool = False

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Everything that determines the fp32 model: changes invalidate cached artifacts."""

    @abstractmethod
    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        """Write the (pruned) fp32 ONNX model to ``out``.

        Raises :class:`harness.errors.Unsupported` when the workload cannot take ``prune``.
        """

    def export_checkpoint(self, out_dir: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        """Write the (pruned) fp32 Hugging Face decoder checkpoint (``config.json``,
        ``model.safetensors``, tokenizer files) into ``out_dir``, for the levels ONNX Runtime
        GenAI's model builder builds (``genai-*``). Only language-model workloads have one."""
        raise Unsupported(f"workload {self.name!r} is not a language model: the genai-* "
                          "levels build Hugging Face decoder checkpoints only")

    def torch_model(self, cache_dir: Path) -> torch.nn.Module:
        """The fp32 PyTorch model (eval mode, unpruned) for the levels PyTorch runs.

        Its positional inputs are the :meth:`timing_inputs` in order. Workloads that ship as
        ONNX only have none: they raise :class:`harness.errors.Unsupported`.
        """
        raise Unsupported(f"workload {self.name!r} ships as ONNX, no PyTorch model")

    def tflite_file(self) -> Path:
        """The ``.tflite`` file the ``as-is`` level measures as given; only a workload given as
        one (a suite's ``tflite = ...``) has it."""
        raise Unsupported(f"level 'as-is' measures a .tflite file as given; workload "
                          f"{self.name!r} is not one (give a model as tflite = \"...\" in "
                          "the suite)")

    @abstractmethod
    def timing_inputs(self) -> Feeds:
        """One batch-1 input, as a deployed app would feed it, for latency measurement."""

    @abstractmethod
    def calibration_inputs(self) -> list[Feeds]:
        """Inputs for static quantization calibration (from the training split, never eval)."""

    def finetune(self, model: Any, *, cache_dir: Path) -> None:
        """Fine-tune a structurally pruned torch ``model`` in place ("+ft" pruning levels).

        Deterministic and on the training split only. The default has nothing to train on:
        the build then records the level as unsupported for this workload.
        """
        from harness.errors import Unsupported

        raise Unsupported(f"workload {self.name!r} has no fine-tuning recipe for '+ft' levels")

    def can_finetune(self) -> bool:
        """Whether this workload overrides :meth:`finetune`."""
        return type(self).finetune is not Workload.finetune

    def pruned_torch_model(self, model: torch.nn.Module, prune: PruneSpec, *,
                           cache_dir: Path) -> torch.nn.Module:
        """``model`` pruned as this workload's artifacts are: the timing inputs serve as the
        trace example, and "+ft" levels get :meth:`finetune`. Every path that builds a pruned
        torch model for a workload (its ONNX export, the PyTorch-run levels) goes through
        here, so they all agree."""
        from harness.compress.prune import prune_model

        pruned = prune_model(model, prune, example=self.timing_inputs())
        if prune.finetune and not prune.is_dense:
            self.finetune(pruned, cache_dir=cache_dir)
        return pruned

    def evaluate(self, run: RunFn) -> Quality | None:
        """Quality on the held-out split through ``run``; None when there is no metric."""
        return None
