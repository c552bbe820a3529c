"""A small CNN trained on scikit-learn's ``load_digits`` (8x8 handwritten digits).

Trained deterministically at first use (a few seconds on 2 cores) and cached by fingerprint;
quality is top-1 accuracy on a held-out, stratified 25% split.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.variants import PruneSpec
from harness.workloads.base import Feeds, Quality, RunFn, Workload

if TYPE_CHECKING:
    import torch

_SEED = 0
_EPOCHS = 30
_BATCH = 64
_LR = 2e-3
_CALIBRATION_IMAGES = 128
# "+ft" pruning levels: a short fine-tune of the pruned model (same data, seed and batch; a
# lower learning rate, as the weights start from a trained point).
_FT_EPOCHS = 5
_FT_LR = 5e-4
# Bump when the architecture or training recipe changes: it invalidates cached models.
_RECIPE_VERSION = 1


@cache
def _splits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test); images scaled to [0, 1], shape (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.25, random_state=_SEED, stratify=y)
    return x_tr, y_tr, x_te, y_te


def _build_model() -> torch.nn.Module:
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 2 * 2, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


class DigitsCNN(Workload):
    name = "digits_cnn"
    metric = "top1_accuracy"
    top1_axis = 1  # logits (batch, 10)

    def fingerprint(self) -> dict[str, Any]:
        return {"workload": self.name, "recipe": _RECIPE_VERSION, "seed": _SEED,
                "epochs": _EPOCHS, "batch": _BATCH, "lr": _LR,
                "finetune": {"epochs": _FT_EPOCHS, "lr": _FT_LR}}

    def trained_model(self, cache_dir: Path) -> torch.nn.Module:
        """The trained fp32 model, from the cache or trained now (deterministically)."""
        import torch

        from harness.cache import key_of
        from harness.fsutil import atomic_path

        path = cache_dir / "models" / f"{self.name}-{key_of(self.fingerprint())[:16]}.pt"
        model = _build_model()
        if path.is_file():
            model.load_state_dict(torch.load(path, weights_only=True))
        else:
            _train(model, epochs=_EPOCHS, lr=_LR, reinitialise=True)
            with atomic_path(path) as tmp:
                torch.save(model.state_dict(), tmp)
        return model.eval()

    def torch_model(self, cache_dir: Path) -> torch.nn.Module:
        return self.trained_model(cache_dir)

    def export_fp32(self, out: Path, *, prune: PruneSpec, cache_dir: Path) -> None:
        from harness.compress.torch_export import export_onnx

        model = self.pruned_torch_model(self.trained_model(cache_dir), prune,
                                        cache_dir=cache_dir)
        export_onnx(model, self.timing_inputs(), out)

    def finetune(self, model: Any, *, cache_dir: Path) -> None:
        """A few more epochs on the training split, deterministic (seed 0, one thread)."""
        _train(model, epochs=_FT_EPOCHS, lr=_FT_LR, reinitialise=False)

    def timing_inputs(self) -> Feeds:
        x_te = _splits()[2]
        return {"input": x_te[:1].copy()}

    def calibration_inputs(self) -> list[Feeds]:
        x_tr = _splits()[0]
        return [{"input": x_tr[i:i + 1].copy()} for i in range(_CALIBRATION_IMAGES)]

    def evaluate(self, run: RunFn) -> Quality:
        _, _, x_te, y_te = _splits()
        logits = run({"input": x_te})[0]
        acc = float((np.asarray(logits).argmax(axis=1) == y_te).mean())
        return Quality(metric="top1_accuracy", value=acc, n_examples=len(y_te))


def _train(model: torch.nn.Module, *, epochs: int, lr: float, reinitialise: bool) -> None:
    import torch

    x_tr, y_tr, _, _ = _splits()
    # One thread and a seeded generator make training bit-for-bit repeatable on a given build.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(_SEED)
        if reinitialise:
            for m in model.modules():  # re-initialise under the seed
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
        gen = torch.Generator().manual_seed(_SEED)
        x, y = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), _BATCH):
                idx = perm[i:i + _BATCH]
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)
