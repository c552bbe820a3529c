"""Finding and reading the project's TOML data files (device profiles, suites).

Both kinds live in a folder of the checkout (``devices/``, ``suites/``), can be moved with an
environment variable, and ship inside the wheel as package data; both are named on the command
line either by name or by path. Errors name the file and list close matches.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from harness.errors import InputError, unknown_name


def data_dir(folder: str, env: str) -> Path:
    """``$env``, the checkout's ``folder/``, or the copy packaged in the wheel."""
    override = os.environ.get(env)
    if override:
        return Path(override)
    repo = Path(__file__).resolve().parents[1] / folder
    if repo.is_dir():
        return repo
    return Path(__file__).resolve().parent / "_data" / folder


def names_in(directory: Path) -> list[str]:
    """Stems of the TOML files directly in ``directory``."""
    return sorted(p.stem for p in directory.glob("*.toml"))


def find_toml(name_or_path: str | Path, directory: Path, *, kind: str) -> Path:
    """A path as given (``x.toml`` or an existing file), else ``directory/<name>.toml``."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.is_file():
        return p
    path = directory / f"{name_or_path}.toml"
    if not path.is_file():
        raise unknown_name(kind, str(name_or_path), names_in(directory), file=directory)
    return path


def read_toml(path: Path, *, kind: str) -> dict[str, Any]:
    """Parse ``path``; unreadable or invalid files are :class:`InputError` naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise InputError(f"no such {kind} file", file=path) from exc
    except OSError as exc:
        raise InputError(f"cannot read the {kind} file: {exc.strerror}", file=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", file=path) from exc
    except UnicodeDecodeError as exc:  # TOML is UTF-8; a binary or Latin-1 file is not TOML
        raise InputError(f"not valid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})",
                         file=path) from exc
