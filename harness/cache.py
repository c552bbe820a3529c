"""Content-addressed cache for trained models and compressed artifacts.

An artifact's key hashes everything it is made from (the input model's bytes or the workload's
fingerprint, the compression spec, the versions of the tools that build it), so a cache hit is
always the same artifact and a changed input never reuses a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    """$HARNESS_CACHE_DIR, else ~/.cache/edge-harness."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-harness"


def key_of(obj: Any) -> str:
    """A stable sha256 of a JSON-able object."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_files(model: Path) -> list[Path]:
    """The model file plus the data files its format keeps beside it (an ONNX model's
    external data; a PyTorch ``model.pt`` is one file), in a fixed order."""
    from harness.artifacts.formats import format_of

    return format_of(model).files(model)


def artifact_sha256(model: Path) -> str:
    """sha256 over the model file and its external data files, in a fixed order."""
    h = hashlib.sha256()
    for f in model_files(model):
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def artifact_size_bytes(model: Path) -> int:
    """On-disk size of the model: the .onnx file plus its external data files."""
    return sum(f.stat().st_size for f in model_files(model))


class ArtifactStore:
    """``<cache>/artifacts/<key>/model.onnx`` (or another ``filename``, e.g. ``model.pt``),
    written atomically (build in a temp dir, rename)."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = cache_dir
        self.root = cache_dir / "artifacts"

    def path_for(self, key: str, filename: str = "model.onnx") -> Path:
        return self.root / key / filename

    def get(self, key: str, filename: str = "model.onnx") -> Path | None:
        p = self.path_for(key, filename)
        return p if p.is_file() else None

    def staging(self, key: str) -> Path:
        """A fresh directory to build ``key`` in; :meth:`commit` moves it into place."""
        d = self.root / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def commit(self, key: str, staging: Path, filename: str = "model.onnx") -> Path:
        final = self.root / key
        if final.exists():  # built meanwhile by another run: keep that one
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.rename(final)
        return self.path_for(key, filename)
