"""Errors for bad input, and the small validation helpers every file loader shares.

Bad input stops before any work with a message that names the file, the field and what was
expected, and for unknown names the close matches. A failure inside one case is different: it
becomes that case's status and the sweep goes on (docs/running.md, "What a run prints").
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


class HarnessError(Exception):
    """Base class of every error the harness raises on purpose."""


class InputError(HarnessError):
    """Bad user input: a malformed file, an unknown name, an invalid option value."""

    def __init__(self, message: str, *, file: Path | str | None = None, field: str | None = None):
        self.file = str(file) if file is not None else None
        self.field = field
        where = ""
        if self.file and field:
            where = f"{self.file}: field '{field}': "
        elif self.file:
            where = f"{self.file}: "
        elif field:
            where = f"field '{field}': "
        super().__init__(where + message)


def close_matches(name: str, choices: Iterable[str], *, n: int = 3) -> list[str]:
    """Names among ``choices`` that look like ``name`` (for 'did you mean' hints)."""
    choices = list(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    # Prefixes and substrings help with abbreviations ("8gen3" for "snapdragon8gen3").
    for c in choices:
        if c not in found and (name.lower() in c.lower() or c.lower() in name.lower()):
            found.append(c)
    return found[:n]


def unknown_name(kind: str, name: str, choices: Iterable[str], **where: Any) -> InputError:
    """An InputError for an unknown ``name`` of ``kind``, listing close matches and all choices."""
    choices = sorted(choices)
    near = close_matches(name, choices)
    hint = f" Did you mean {', '.join(repr(c) for c in near)}?" if near else ""
    return InputError(
        f"unknown {kind} {name!r}.{hint} Known: {', '.join(choices) or '(none)'}.", **where
    )


def check_keys(
    data: Mapping[str, Any],
    *,
    allowed: Iterable[str],
    required: Iterable[str] = (),
    file: Path | str | None,
    prefix: str = "",
) -> None:
    """Reject unknown keys (with close matches) and missing required keys in a table."""
    allowed = set(allowed)
    for key in data:
        if key not in allowed:
            raise unknown_name("key", key, allowed, file=file, field=prefix + key)
    for key in required:
        if key not in data:
            raise InputError("required field is missing", file=file, field=prefix + key)


def expect_type(value: Any, typ: type | tuple[type, ...], what: str, *, file: Any,
                field: str) -> Any:
    """Return ``value`` if it is a ``typ`` (bools are not numbers), else raise an InputError."""
    ok = isinstance(value, typ) and not (isinstance(value, bool) and bool not in _as_tuple(typ))
    if not ok:
        raise InputError(f"expected {what}, got {value!r}", file=file, field=field)
    return value


def _as_tuple(typ: type | tuple[type, ...]) -> tuple[type, ...]:
    return typ if isinstance(typ, tuple) else (typ,)


class Unsupported(HarnessError):
    """A case the runtime, device or workload cannot take (recorded as an ``unsupported`` row)."""
