"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

The data go to a temporary file in the target's directory (so the rename stays on one file
system), are flushed and fsynced, then ``os.replace`` puts them under the final name. A crash
or a concurrent writer therefore never leaves a truncated file behind the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (with any library: ``np.savez``,
    ``torch.save``, an exporter); on a clean exit it is fsynced and renamed to ``path``, on an
    exception it is removed. The temporary name keeps ``path``'s suffix, which some writers
    (``np.savez``) would otherwise append."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                                suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()


def atomic_write_text(path: Path, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see the module docstring)."""
    atomic_write_bytes(path, text.encode(encoding))
