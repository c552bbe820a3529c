"""Structured pruning of a Llama-style decoder (Hugging Face ``LlamaForCausalLM``), physically.

Two kinds, the same share in every layer (the config holds one width for all layers):

* **MLP neurons** (``neuron-l1-P`` / ``neuron-l2-P``): the intermediate neurons with the smallest
  norm of their ``gate_proj`` row + ``up_proj`` row + ``down_proj`` column are removed from all
  three matrices; ``intermediate_size`` shrinks.
* **attention heads** (``head-l1-P`` / ``head-l2-P``): query heads with the smallest norm of
  their ``q_proj`` rows + ``o_proj`` columns are removed, **the same number from every KV
  group**: grouped-query attention needs the same number of query heads per KV head. A share
  must therefore be a whole number of heads per group (SmolLM2: 3 query heads per KV head, so
  33% or 67%, not 25%); anything else is :class:`~harness.errors.Unsupported` naming the shares
  that exist. The KV heads and the head size stay; ``num_attention_heads`` shrinks.

No fine-tuning (``+ft`` levels are unsupported here): the figures show what removing the weights
costs as is. The removed counts are written to ``harness_prune.json`` beside the checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import Unsupported
from harness.variants import PRUNE_METHODS, PruneSpec

PRUNE_RECORD = "harness_prune.json"


def _norm(prune: PruneSpec) -> int:
    return 1 if prune.base_method.endswith("l1") else 2


def _linear(weight: Any, bias: Any = None) -> Any:
    import torch

    out_f, in_f = weight.shape
    layer = torch.nn.Linear(in_f, out_f, bias=bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def prune_mlp(model: Any, amount: float, *, p: int) -> dict[str, Any]:
    """Remove ``amount`` of every layer's MLP neurons (smallest p-norm); returns what was done."""
    import torch

    cfg = model.config
    width = int(cfg.intermediate_size)
    remove = round(width * amount)
    if not 0 < remove < width:
        raise Unsupported(f"neuron pruning of {amount:.0%} removes {remove} of {width} neurons")
    keep_n = width - remove
    for layer in model.model.layers:
        mlp = layer.mlp
        score = (mlp.gate_proj.weight.norm(p=p, dim=1) + mlp.up_proj.weight.norm(p=p, dim=1)
                 + mlp.down_proj.weight.norm(p=p, dim=0))
        keep = torch.sort(torch.topk(score, keep_n).indices).values
        mlp.gate_proj = _linear(mlp.gate_proj.weight[keep])
        mlp.up_proj = _linear(mlp.up_proj.weight[keep])
        mlp.down_proj = _linear(mlp.down_proj.weight[:, keep])
    cfg.intermediate_size = keep_n
    return {"kind": "neuron", "per_layer_before": width, "per_layer_after": keep_n,
            "removed_share": remove / width}


def prune_heads(model: Any, amount: float, *, p: int) -> dict[str, Any]:
    """Remove ``amount`` of every layer's query heads, the same number per KV group."""
    import torch

    cfg = model.config
    heads, kv = int(cfg.num_attention_heads), int(cfg.num_key_value_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    group = heads // kv
    exact = group * amount
    per_group = round(exact)
    if abs(exact - per_group) > 0.1 or not 0 < per_group < group:
        shares = ", ".join(f"{100 * k / group:.0f}%" for k in range(1, group))
        raise Unsupported(f"head pruning of {amount:.0%}: grouped-query attention keeps the "
                          f"same query heads per KV head ({group} per group here, {heads} heads, "
                          f"{kv} KV heads), so only whole heads per group can go: "
                          f"{shares or 'none'}")
    new_group = group - per_group
    for layer in model.model.layers:
        attn = layer.self_attn
        q = attn.q_proj.weight.view(heads, head_dim, -1)
        o = attn.o_proj.weight.view(-1, heads, head_dim)
        score = q.norm(p=p, dim=(1, 2)) + o.norm(p=p, dim=(0, 2))
        keep: list[int] = []
        for g in range(kv):
            ids = torch.arange(g * group, (g + 1) * group)
            top = torch.topk(score[ids], new_group).indices
            keep += sorted(int(i) for i in ids[top])
        idx = torch.tensor(keep)
        q_bias = attn.q_proj.bias
        attn.q_proj = _linear(q[idx].reshape(len(keep) * head_dim, -1),
                              None if q_bias is None else
                              q_bias.view(heads, head_dim)[idx].reshape(-1))
        attn.o_proj = _linear(o[:, idx].reshape(o.shape[0], len(keep) * head_dim),
                              attn.o_proj.bias)
        # the attention module reads these from the config and its own attributes
        if hasattr(attn, "num_key_value_groups"):
            attn.num_key_value_groups = new_group
    cfg.num_attention_heads = kv * new_group
    cfg.head_dim = head_dim  # no longer hidden_size // heads: keep it explicit
    return {"kind": "head", "per_layer_before": heads, "per_layer_after": kv * new_group,
            "removed_share": per_group / group}


def prune_decoder(model: Any, prune: PruneSpec) -> Any:
    """``model`` with the structured level ``prune`` applied in place (see the module)."""
    if prune.is_dense:
        return model
    pattern = PRUNE_METHODS[prune.method].pattern
    if prune.finetune:
        raise Unsupported(f"pruning level {prune.name!r}: no fine-tuning recipe for language "
                          "models")
    if pattern == "neuron":
        record = prune_mlp(model, prune.amount, p=_norm(prune))
    elif pattern == "head":
        record = prune_heads(model, prune.amount, p=_norm(prune))
    else:
        raise Unsupported(f"pruning level {prune.name!r}: language models take structured "
                          "levels only (neuron-l1/l2-P: MLP neurons, head-l1/l2-P: attention "
                          "heads), physically removed")
    model.harness_prune_record = {"level": prune.name, **record}
    return model


def write_record(model: Any, out_dir: Path) -> None:
    """Write what :func:`prune_decoder` removed beside the checkpoint (nothing when dense)."""
    record = getattr(model, "harness_prune_record", None)
    if record is not None:
        (out_dir / PRUNE_RECORD).write_text(json.dumps(record, indent=1) + "\n")
