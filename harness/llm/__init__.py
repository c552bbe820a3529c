"""Language models measured end to end: checkpoints built into ONNX Runtime GenAI decoders
(:mod:`harness.llm.build`), timed phase by phase and scored on a fixed text
(:mod:`harness.llm.measure`), predicted on device profiles from their graph
(:mod:`harness.llm.predict`). See docs/llm.md.

Nothing here is imported by ``import harness``: the modules import torch, transformers or
onnxruntime-genai and are reached through the registries' lazy entries.
"""
