"""A user's own ONNX file as a workload: latency, size and device figures, no quality metric."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.variants import PruneSpec
from harness.workloads.base import Feeds, Workload

_CALIBRATION_BATCHES = 16


class OnnxFileWorkload(Workload):
    """Benchmarks an ONNX model as given; inputs are seeded random data of the right shape."""

    def __init__(self, *, name: str, path: Path,
                 shapes: Mapping[str, Sequence[int]] | None = None):
        self.name = name
        self.path = path
        self.shapes = {k: [int(d) for d in v] for k, v in (shapes or {}).items()}

    def fingerprint(self) -> dict[str, Any]:
        # Every file the model consists of: new weights in model.onnx.data must not reuse the
        # artifact built from the old ones. A model without external data keeps the key it
        # always had (the .onnx file's hash).
        from harness.cache import model_files

        files = model_files(self.path)
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        out: dict[str, Any] = {"workload": "onnx-file", "sha256": digest}
        if len(files) > 1:
            out["external_data"] = {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
                                    for f in files[1:] if f.is_file()}
        if self.shapes:  # only when given, so a static model's cached artifacts stay valid
            out["shapes"] = dict(sorted(self.shapes.items()))
        return out

    def check(self) -> None:
        """Refuse a broken model, shapes it cannot take, and dynamic inputs without a shape.

        The host times exactly the inputs it feeds and the emulator costs exactly those, so a
        dynamic dimension must be given: costing it as 1 silently predicted a 1-token sentence
        for a model timed at 128 tokens.
        """
        import onnx

        from harness.errors import InputError, unknown_name

        # A broken file is bad input, refused before the sweep: an empty file even parses as
        # an empty model and was cached as a built artifact.
        try:
            model = onnx.load(str(self.path), load_external_data=False)
            missing_data = [f for f in _external_files(model, self.path.parent)
                            if not f.is_file()]
            if not missing_data:
                # by path: external data is checked beside the model, not in the cwd
                onnx.checker.check_model(str(self.path))
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"not a valid ONNX model: {type(exc).__name__}: {exc}",
                             file=self.path) from None
        if not model.graph.node:
            raise InputError("not a valid ONNX model: the graph has no nodes", file=self.path)
        if missing_data:
            raise InputError(f"external data file {missing_data[0].name!r} is missing (it must "
                             "lie beside the model)", file=self.path)
        inits = {i.name for i in model.graph.initializer}
        inputs = {i.name: i for i in model.graph.input if i.name not in inits}
        for name, want in self.shapes.items():
            if name not in inputs:
                raise unknown_name(f"input of {self.path.name}", name, inputs,
                                   field=f"workloads.{self.name}.shapes")
            tt = inputs[name].type.tensor_type
            if tt.HasField("shape"):
                dims = tt.shape.dim
                if len(dims) != len(want):
                    raise InputError(f"input {name!r} has rank {len(dims)}, got shape {want}",
                                     file=self.path, field=f"shapes.{name}")
                for axis, (d, v) in enumerate(zip(dims, want, strict=True)):
                    if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != v:
                        raise InputError(f"input {name!r} dimension {axis} is fixed at "
                                         f"{d.dim_value} in the model, got {v}",
                                         file=self.path, field=f"shapes.{name}")
        missing = self.dynamic_inputs()
        if missing:
            listed = "; ".join(f"{n} {dims}" for n, dims in missing.items())
            example = ", ".join(
                f"{n} = [{', '.join(str(d) if isinstance(d, int) else 'N' for d in dims)}]"
                for n, dims in missing.items())
            first = next(iter(missing))
            raise InputError(
                f"inputs with dynamic dimensions need a shape: {listed}. Give it in the suite "
                f"(shapes = {{ {example} }}, each N a real size) or with --shape "
                f"{first}=D1,D2,...", file=self.path)

    def dynamic_inputs(self) -> dict[str, list[int | str]]:
        """Inputs with a dimension that is not fixed in the model and not given in
        :attr:`shapes`: each with its dims (names or '?' where dynamic)."""
        import onnx

        model = onnx.load(str(self.path), load_external_data=False)
        inits = {i.name for i in model.graph.initializer}
        out: dict[str, list[int | str]] = {}
        for inp in model.graph.input:
            if inp.name in inits or inp.name in self.shapes:
                continue
            dims: list[int | str] = [
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                else (d.dim_param or "?") for d in inp.type.tensor_type.shape.dim]
            if not inp.type.tensor_type.HasField("shape") or any(
                    isinstance(d, str) for d in dims):
                out[inp.name] = dims
        return out

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        import onnx

        from harness.compress.prune import prune_onnx

        # load + save (rather than copy) pulls any external data files in with the model;
        # protobuf cannot hold more than 2 GiB, so big models keep their weights outside.
        model = prune_onnx(onnx.load(str(self.path)), prune)
        big = model.ByteSize() > 1_800_000_000
        onnx.save(model, str(out), save_as_external_data=big,
                  location=out.name + ".data" if big else None)

    def _random_feeds(self, seed: int) -> Feeds:
        import onnx

        rng = np.random.default_rng(seed)
        model = onnx.load(str(self.path), load_external_data=False)
        feeds: Feeds = {}
        inits = {i.name for i in model.graph.initializer}
        for inp in model.graph.input:
            if inp.name in inits:
                continue
            t = inp.type.tensor_type
            if inp.name in self.shapes:
                shape = self.shapes[inp.name]
            else:
                # The sweep refuses models whose dynamic dims were not given (see
                # dynamic_inputs); `1` is left for direct library use only.
                shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                         for d in t.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
            if np.issubdtype(dtype, np.floating):
                feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
            else:
                feeds[inp.name] = rng.integers(0, 2, size=shape).astype(dtype)
        return feeds

    def timing_inputs(self) -> Feeds:
        return self._random_feeds(0)

    def calibration_inputs(self) -> list[Feeds]:
        return [self._random_feeds(1 + i) for i in range(_CALIBRATION_BATCHES)]


def _external_files(model: Any, base: Path) -> list[Path]:
    """The external data files ``model`` names, resolved beside it; a location that leaves the
    model's directory (``../../etc/passwd``) is refused."""
    from harness.errors import InputError

    out = []
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                path = (base / entry.value).resolve()
                if base.resolve() not in path.parents:
                    raise InputError(f"external data location {entry.value!r} points outside "
                                     "the model's directory", file=base)
                out.append(path)
    return sorted(set(out))
