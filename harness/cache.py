"""Content-addressed cache for trained models and compressed artifacts.

An artifact's key hashes everything it is made from (the input model's bytes or the workload's
fingerprint, the compression spec, the versions of the tools that build it), so a cache hit is
always the same artifact and a changed input never reuses a stale one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import tempfile
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
        """A fresh, uniquely named directory to build ``key`` in; :meth:`commit` moves it into
        place. Staging directories of this key left by a killed build (their process is gone)
        are removed first; readers never look at them (:meth:`get` reads ``<root>/<key>``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_orphans(key)
        return Path(tempfile.mkdtemp(prefix=f"{_STAGING}{key}-{os.getpid()}@{_host()}-",
                                     dir=self.root))

    def commit(self, key: str, staging: Path, filename: str = "model.onnx") -> Path:
        """Move ``staging`` to ``<root>/<key>`` in one rename. If another process committed
        the same key meanwhile (the rename fails because the target exists), its artifact is
        kept (the key names the same content) and ``staging`` is removed."""
        final = self.root / key
        try:
            staging.rename(final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)
        return self.path_for(key, filename)

    def discard(self, staging: Path) -> None:
        """Remove a staging directory whose build failed."""
        shutil.rmtree(staging, ignore_errors=True)

    def _remove_orphans(self, key: str) -> None:
        """Remove this key's staging directories whose building process (on this host) is
        gone. A live builder's directory is left alone, whoever it is."""
        for d in self.root.glob(f"{_STAGING}{key}-*"):
            owner = d.name[len(f"{_STAGING}{key}-"):]
            pid_text, _, rest = owner.partition("@")
            host = rest.rpartition("-")[0] if rest else _host()
            if host != _host() or not pid_text.isdigit() or _alive(int(pid_text)):
                continue
            shutil.rmtree(d, ignore_errors=True)


_STAGING = ".tmp-"


def _host() -> str:
    return socket.gethostname().replace("/", "_")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
