"""Files shipped inside installed packages (model weights, photos), found without importing them.

Several of those packages' ``__init__`` modules import OpenCV or other heavy dependencies, so
the package directory is located with ``importlib.util.find_spec`` instead of an import.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness.errors import Unsupported

INSTALL_HINT = "pip install 'edge-harness[build]'"


def package_file(package: str, *relative: str, dist: str | None = None) -> Path:
    """``relative`` inside the installed package ``package`` (a module name); the package
    directory itself when ``relative`` is empty.

    ``dist`` is what to install as users name it (``rapidocr-onnxruntime==1.4.4``; defaults to
    ``package``). A missing package or file is :class:`harness.errors.Unsupported` naming it,
    so the sweep records the workload as unsupported with what to install.
    """
    dist = dist or package
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise Unsupported(f"package {dist} is not installed ({INSTALL_HINT})")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*relative)
    if not path.exists():
        raise Unsupported(f"{path} is missing from the {dist} package")
    return path
