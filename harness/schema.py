"""Versioned records (run manifests and rows, device profiles): bringing old ones up to date."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import InputError

Record = dict[str, Any]
# v -> function turning a version-v record into a version v + 1 one
Upgrades = Mapping[int, Callable[[Record], Record]]


def upgrade(record: Record, upgrades: Upgrades, *, current: int, file: Path | str | None,
            where: str | None = None) -> Record:
    """``record`` brought to schema version ``current`` through ``upgrades``, one step at a time.

    A missing or non-integer ``schema_version``, one newer than ``current`` (written by a newer
    harness) or one with no upgrade step is an :class:`InputError` naming ``file`` and the
    field (``<where>.schema_version`` when ``where`` is given, e.g. ``line 3``).
    """
    field = f"{where}.schema_version" if where else "schema_version"
    version = record.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"expected an integer schema version, got {version!r}", file=file,
                         field=field)
    if version > current:
        raise InputError(f"schema version {version} is newer than this harness reads "
                         f"({current}); upgrade the harness", file=file, field=field)
    while version < current:
        if version not in upgrades:
            raise InputError(f"no upgrade from schema version {version}", file=file,
                             field=field)
        record = upgrades[version](record)
        version = record["schema_version"]
    return record
