"""``harness baseline promote RUN``: keep a run as the baseline later gates compare against.

The baseline is a copy of the run's manifest, sessions and rows plus the artifacts its rows
name, content-addressed as in the cache (``<baseline>/artifacts/<key>/<file>``), so that
``harness gate`` can re-time the baseline's models on a machine whose cache never held them
(a fresh CI runner that restored only ``results/baselines/``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.errors import InputError

DEFAULT_NAME = "nightly"
BASELINES = Path("results") / "baselines"


def promote(run_dir: Path, *, name: str = DEFAULT_NAME, baselines_dir: Path = BASELINES,
            cache_dir: Path | None = None) -> Path:
    """Copy ``run_dir`` to ``baselines_dir/name`` with the artifacts of its rows; an existing
    baseline of that name is replaced only once the new one is complete. Every artifact of a
    row must be found (beside the run, in the cache, at the row's path), else InputError
    naming each missing one, and nothing is written."""
    from harness.cache import default_cache_dir
    from harness.gate import find_artifact
    from harness.results import MANIFEST, ROWS, load_run

    if not name or "/" in name or name.startswith("."):
        raise InputError(f"expected a plain baseline name, got {name!r}", field="--name")
    run = load_run(run_dir)
    cache = cache_dir or default_cache_dir()
    found: dict[str, Path] = {}
    missing = []
    for m in run.measurements:
        if m.artifact is None or not m.artifact.key:
            continue
        path, looked = find_artifact(m, run_dir=run.path, cache_dir=cache)
        if path is None:
            if m.status == "ok":
                missing.append(f"{m.case_id} (artifact {m.artifact.key}): looked at "
                               + "; ".join(looked))
            continue
        found[m.artifact.key] = path
    if missing:
        raise InputError("cannot promote: artifacts not found:\n  " + "\n  ".join(missing),
                         file=run_dir)
    final = baselines_dir / name
    if final.resolve() == run.path.resolve():
        raise InputError("the run is already this baseline", file=run_dir)
    baselines_dir.mkdir(parents=True, exist_ok=True)
    staging = baselines_dir / f".tmp-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name_ in (MANIFEST, ROWS, "sessions.jsonl"):
        if (run.path / name_).is_file():
            shutil.copy2(run.path / name_, staging / name_)
    from harness.cache import model_files

    for key, path in found.items():
        # the model file and its external data files
        (staging / "artifacts" / key).mkdir(parents=True)
        for f in model_files(path):
            shutil.copy2(f, staging / "artifacts" / key / f.name)
    old = baselines_dir / f".old-{name}"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final
