"""The one training loop (with a pluggable loss), evaluation, seeding and the teacher checkpoint cache.

Every model in the tutorial is trained by `fit`. Distillation, pruning and quantization-aware
training change only what they plug in: a `loss_fn(logits, batch)`, `masks`, or the model itself.

Example:
    >>> device = setup(seed=0)
    >>> splits = data.load("mnist-5k")
    >>> model = models.teacher()
    >>> history = fit(model, splits, epochs=2, lr=1e-3, batch_size=32, progress=False)
    >>> evaluate(model, splits.x_test, splits.y_test) > 0.8
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import random
import sys
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tutorial_utils import data, models, pruning, storage

CACHE_DIR = data.DATA_DIR / "cache" / "checkpoints"


class Batch(NamedTuple):
    """One minibatch as the loss sees it: inputs (batch, 784), labels (batch,), row indices into the split."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor


SCHEDULES = ("constant", "cosine")
LossFn = Callable[[torch.Tensor, Batch], torch.Tensor]


def cross_entropy_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The default loss: mean cross-entropy -log softmax(logits)[y] over the batch."""
    return F.cross_entropy(logits, batch.y)


def setup(seed: int = 0, threads: int | None = None) -> torch.device:
    """Seed Python, NumPy and torch, optionally fix the number of CPU threads; return the device to use.

    Side effects: reseeds the global random generators; `threads` calls torch.set_num_threads.
    Returns cuda if a GPU is visible, else cpu.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed={seed!r} must be an integer in [0, 2**32)")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads={threads!r} must be a positive integer or None (keep torch's default)")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_positive(name: str, value: float, kind: type = int) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok or (kind is int and not float(value).is_integer()):
        raise ValueError(f"{name}={value!r} must be a positive {'integer' if kind is int else 'finite number'}")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 2048) -> torch.Tensor:
    """Logits of `model` for every row of x, in eval mode; the model's train/eval mode is restored after."""
    _check_positive("batch_size", batch_size)
    was_training = model.training
    model.eval()
    device = models.device_of(model)
    try:
        return torch.cat([model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2048) -> float:
    """Accuracy in [0, 1]: mean of argmax(logits) == y."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty with the same length; got {len(x)} and {len(y)}")
    return (predict(model, x, batch_size=batch_size).argmax(dim=1) == y.cpu()).float().mean().item()


def confusion_matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, classes: int = 10) -> torch.Tensor:
    """(classes, classes) counts: entry [i, j] is the number of samples of class i predicted as j."""
    predicted = predict(model, x).argmax(dim=1)
    return torch.bincount(y.cpu() * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def fit(model: nn.Module, splits: data.Splits, *, epochs: int = 15, lr: float = 1e-3, batch_size: int = 32,
        loss_fn: LossFn | None = None, masks: dict[str, torch.Tensor] | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        weight_decay: float = 0.0, schedule: str = "constant", device: torch.device | str | None = None,
        progress: bool = True) -> list[dict[str, float]]:
    """Train `model` in place with Adam; return one dict per epoch (loss, train/test accuracy, seconds).

    Each step minimises loss_fn(model(x), batch) (cross-entropy by default). With `masks`
    ({parameter name: 0/1 tensor}) the masked weights are zeroed before training and after every
    optimiser step, so they stay exactly zero. `augment(x, generator)` transforms each batch's inputs.
    `weight_decay` adds the L2 penalty's gradient weight_decay * w to every parameter's (Adam's coupled
    form). schedule="cosine" lowers the learning rate after every step,
    lr_t = lr * (1 + cos(pi * t / steps)) / 2, from lr to 0 at the end of the last epoch; "constant" keeps lr.
    Shuffling draws from torch's global generator, so `setup(seed)` makes a run repeatable.
    With `progress`, prints one summary line per epoch (and a batch bar in a terminal).
    Side effects: changes the model's weights; moves the model to `device`; leaves it in eval mode.
    The test accuracy in the history is for plotting curves only, never for choosing a recipe.
    """
    _check_positive("epochs", epochs)
    _check_positive("lr", lr, float)
    _check_positive("batch_size", batch_size)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) \
            or not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay={weight_decay!r} must be a finite number >= 0")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} must be one of {SCHEDULES}")
    loss_fn = loss_fn or cross_entropy_loss
    device = torch.device(device) if device is not None else models.device_of(model)
    model.to(device)
    if masks is not None:
        pruning.apply_masks_(model, masks)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,)).item()))
    x_train, y_train = splits.x_train.to(device), splits.y_train.to(device)
    history = []
    steps = math.ceil(len(x_train) / batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
                 if schedule == "cosine" else None)
    for epoch in range(1, epochs + 1):
        start, total_loss, correct = time.perf_counter(), 0.0, 0
        model.train()
        # A live bar only in a terminal: in notebooks and CI logs its redraws would be noise.
        bar = tqdm(data.batches(x_train, y_train, batch_size=batch_size, generator=generator), total=steps,
                   desc=f"epoch {epoch}/{epochs}", leave=False, disable=not (progress and sys.stderr.isatty()))
        for x, y, index in bar:
            if augment is not None:
                x = augment(x, generator)
            logits = model(x)  # (batch, classes)
            loss = loss_fn(logits, Batch(x, y, index))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if masks is not None:
                pruning.apply_masks_(model, masks)
            total_loss += loss.item() * len(y)
            correct += (logits.argmax(dim=1) == y).sum().item()
        row = {"epoch": epoch, "loss": total_loss / len(y_train), "train_accuracy": correct / len(y_train),
               "test_accuracy": evaluate(model, splits.x_test, splits.y_test),
               "seconds": time.perf_counter() - start}
        history.append(row)
        if progress:
            print(f"epoch {epoch:>3}/{epochs}  loss {row['loss']:.4f}  train {row['train_accuracy']:.2%}"
                  f"  test {row['test_accuracy']:.2%}  ({row['seconds']:.1f} s)", flush=True)
    model.eval()
    return history


def _fingerprint(splits: data.Splits) -> str:
    digest = hashlib.sha256()
    for t in (splits.x_train, splits.y_train):
        digest.update(t.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict) -> int:
    """Write {"meta", "state_dict"} with torch.save, atomically; return the bytes written."""
    state = {"meta": meta, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    return storage.atomic_write(path, lambda f: torch.save(state, f))


def load_or_train_teacher(splits: data.Splits, *, preset: str = "teacher", epochs: int = 15, lr: float = 1e-3,
                          batch_size: int = 32, max_shift: int = 0, seed: int = 0,
                          cache_dir: str | os.PathLike | None = None, device: torch.device | str | None = None,
                          progress: bool = False) -> nn.Sequential:
    """Load a trained teacher from the checkpoint cache, or train it deterministically and cache it.

    The cache key is the preset's architecture, a fingerprint of the training data and the recipe
    (epochs, lr, batch_size, max_shift, seed); a missing, stale or unreadable checkpoint is retrained.
    The default recipe (15 epochs of Adam, lr 1e-3, batch 32) was chosen on `splits.holdout()`, never on test.
    Training runs under a forked RNG, so the caller's random stream is the same whether or not the
    cache hit. Checkpoints are loaded with weights_only=True (no pickle code runs) and written atomically.
    """
    model = models.preset(preset)  # validates the name
    meta = {"preset": preset, "sizes": models.layer_sizes(model), "data": splits.name,
            "fingerprint": _fingerprint(splits), "epochs": epochs, "lr": lr, "batch_size": batch_size,
            "max_shift": max_shift, "seed": seed}
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
    path = pathlib.Path(cache_dir or CACHE_DIR) / f"{preset}-{splits.name}-{key}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved["meta"] == meta:
                model.load_state_dict(saved["state_dict"])
                return model.to(device or "cpu").eval()
        except Exception as exc:  # truncated, corrupt or foreign file: retrain rather than fail the notebook
            warnings.warn(f"ignoring unreadable checkpoint {path.name} ({type(exc).__name__}); retraining")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.preset(preset)
        augment = (lambda x, g: data.random_shift(x, max_shift=max_shift, generator=g)) if max_shift else None
        fit(model, splits, epochs=epochs, lr=lr, batch_size=batch_size, augment=augment, device=device,
            progress=progress)
    save_checkpoint(model, path, meta)
    return model
