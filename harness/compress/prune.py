"""Pruning through ``torch.nn.utils.prune``, made permanent before export.

Pruners are picked from a registry keyed by the method name of a :class:`PruneSpec`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.variants import PruneSpec

if TYPE_CHECKING:
    import torch


def _prunable(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str]]:
    from torch import nn

    return [(m, "weight") for m in model.modules()
            if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)]


def _magnitude(model: torch.nn.Module, amount: float) -> None:
    """Global unstructured L1 pruning over every conv and linear weight, then made permanent.

    Global (rather than per layer) lets small, sensitive layers keep more of their weights.
    """
    from torch.nn.utils import prune

    params = _prunable(model)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in params:
        prune.remove(module, name)  # bake the mask into the weight: no reparametrisation left


PRUNERS: dict[str, Callable[[torch.nn.Module, float], None]] = {
    "magnitude": _magnitude,
}


def prune_model(model: torch.nn.Module, spec: PruneSpec) -> torch.nn.Module:
    """A pruned copy of ``model`` (the input is left untouched)."""
    if spec.is_dense:
        return model
    pruned = copy.deepcopy(model)
    PRUNERS[spec.method](pruned, spec.amount)
    return pruned
