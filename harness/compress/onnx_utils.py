"""Small in-place rewrites of ONNX graphs shared by the compressors, workloads and inspector."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx


def constants_to_initializers(model: onnx.ModelProto, *,
                              only: Collection[str] | None = None) -> int:
    """Move tensor-valued ``Constant`` nodes (``value`` attribute) into graph initializers, in
    place; with ``only``, just those whose output is one of these names. Returns how many.

    Some exporters (PaddlePaddle's, for PP-OCR) store weights as Constant nodes; pruning,
    ORT's quantizers and the inspector look for weights among the initializers. A Constant node
    and an initializer are the same value, so the computation is unchanged.
    """
    keep: list[onnx.NodeProto] = []
    moved = 0
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if (node.op_type == "Constant" and not node.domain and value is not None
                and (only is None or node.output[0] in only)):
            init = model.graph.initializer.add()
            init.CopyFrom(value)
            init.name = node.output[0]
            moved += 1
        else:
            keep.append(node)
    if moved:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return moved
