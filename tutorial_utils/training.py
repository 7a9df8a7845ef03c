"""The one training loop (with a pluggable loss), seeding and the teacher checkpoint cache.

Every model in the tutorial is trained by `fit`. Distillation, pruning and quantization-aware
training change only what they plug in: a `loss_fn(logits, batch)`, `masks`, or the model itself.
`evaluate`, `predict` and `confusion_matrix` come from `evaluation` and are available here too.

Example:
    >>> device = setup(seed=0)
    >>> splits = data.load("mnist-5k")
    >>> model = models.teacher()
    >>> history = fit(model, splits, epochs=2, lr=1e-3, batch_size=32, progress=False)
    >>> evaluate(model, splits.x_test, splits.y_test) > 0.8
    True
"""

from __future__ import annotations

import dataclasses
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
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tutorial_utils import checkpoints, data, files, machine, masks as masking, models, validate
from tutorial_utils.evaluation import confusion_matrix, correct, evaluate, predict  # noqa: F401  (public here: training.evaluate)


class Batch(NamedTuple):
    """One minibatch as the loss sees it: inputs (batch, 784), labels (batch,), row indices into the split."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor


SCHEDULES = ("constant", "cosine")
LossFn = Callable[[torch.Tensor, Batch], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """How long and how fast to train: what `fit` needs besides the model, the data and the loss.

    Checked when made, so a bad value is refused before any training starts. The defaults (15 epochs
    of Adam at lr 1e-3, batch 32) were chosen for the 784-128-10 teacher on `splits.holdout()`.

    Example:
        >>> fit(model, splits, config=TrainConfig(epochs=5, schedule="cosine"))
    """

    epochs: int = 15
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    schedule: str = "constant"

    def __post_init__(self) -> None:
        validate.positive_int("epochs", self.epochs)
        validate.positive_float("lr", self.lr)
        validate.positive_int("batch_size", self.batch_size)
        validate.nonnegative_float("weight_decay", self.weight_decay)
        validate.choice("schedule", self.schedule, SCHEDULES)

    def replace(self, **changes: object) -> TrainConfig:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)


def cross_entropy_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The default loss: mean cross-entropy -log softmax(logits)[y] over the batch."""
    return F.cross_entropy(logits, batch.y)


def setup(seed: int = 0, threads: int | None = None) -> torch.device:
    """Seed Python, NumPy and torch, optionally fix the number of CPU threads; return the device to use.

    Side effects: reseeds the global random generators; `threads` calls torch.set_num_threads.
    Returns the device to train on: the CPU, or CUDA if the environment asks for it (DC_DEVICE=cuda;
    models.default_device says why not by default).
    """
    seed = validate.integer("seed", seed, low=0, high=2**32 - 1)
    if threads is not None:
        threads = validate.positive_int("threads", threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    return models.default_device()


def fit(model: nn.Module, splits: data.Splits, *, epochs: int | None = None, lr: float | None = None,
        batch_size: int | None = None, loss_fn: LossFn | None = None, masks: dict[str, torch.Tensor] | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        weight_decay: float | None = None, schedule: str | None = None, config: TrainConfig | None = None,
        device: torch.device | str | None = None, progress: bool = True) -> list[dict[str, float]]:
    """Train `model` in place with Adam; return one dict per epoch (loss, train/test accuracy, seconds).

    How long and how fast come from `config` (a TrainConfig) or from the keywords epochs, lr,
    batch_size, weight_decay, schedule (TrainConfig's defaults for those left out), not both.
    Each step minimises loss_fn(model(x), batch) (cross-entropy by default; distillation passes
    `distillation.distillation_loss(...)`). With `masks` ({parameter name: 0/1 tensor}) the masked
    weights are zeroed before training and after every optimiser step, so they stay exactly zero.
    `augment(x, generator)` transforms each batch's inputs.
    `weight_decay` adds the L2 penalty's gradient weight_decay * w to every parameter's (Adam's coupled
    form). schedule="cosine" lowers the learning rate after every step,
    lr_t = lr * (1 + cos(pi * t / steps)) / 2, from lr to 0 at the end of the last epoch; "constant" keeps lr.
    Shuffling draws from torch's global generator, so `setup(seed)` makes a run repeatable.
    With `progress`, prints one summary line per epoch (and a batch bar in a terminal).
    Side effects: changes the model's weights; moves the model to `device`; leaves it in eval mode, with
    every .grad None.
    The test accuracy in the history is for plotting curves only, never for choosing a recipe.
    """
    given = {k: v for k, v in (("epochs", epochs), ("lr", lr), ("batch_size", batch_size),
                               ("weight_decay", weight_decay), ("schedule", schedule)) if v is not None}
    if config is not None and given:
        raise ValueError(f"give either config= or the keywords {sorted(given)}, not both")
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a training.TrainConfig, got {type(config).__name__}")
    config = config or TrainConfig(**given)
    epochs, lr, batch_size = config.epochs, config.lr, config.batch_size
    loss_fn = loss_fn or cross_entropy_loss
    device = torch.device(device) if device is not None else models.device_of(model)
    model.to(device)
    held = masking.held_masks(model, masks) if masks is not None else []   # checked once, not at every step
    masking.multiply_(held)
    # The fused kernel updates all parameters in one call: about 15% faster for these small models on a CPU.
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=config.weight_decay,
                                 fused=device.type in ("cpu", "cuda"))
    generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,)).item()))
    x_train, y_train = splits.x_train.to(device), splits.y_train.to(device)
    history = []
    steps = math.ceil(len(x_train) / batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
                 if config.schedule == "cosine" else None)
    for epoch in range(1, epochs + 1):
        start, total_loss, right = time.perf_counter(), 0.0, 0
        model.train()
        # A live bar only in a terminal: in notebooks and CI logs its redraws would be noise.
        bar = tqdm(data.batches(x_train, y_train, batch_size=batch_size, generator=generator), total=steps,
                   desc=f"epoch {epoch}/{epochs}", leave=False, disable=not (progress and sys.stderr.isatty()))
        for x, y, index in bar:
            if augment is not None:
                x = augment(x, generator)
            logits = model(x)  # (batch, classes)
            loss = loss_fn(logits, Batch(x, y, index))
            if not torch.isfinite(loss):   # stop here, not stages later on NaN weights that name no cause
                raise ValueError(f"loss {loss.item()} in epoch {epoch}: training diverged; lower lr or check the loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            masking.multiply_(held)   # pruned weights back to zero after the step (nothing without masks)
            total_loss += loss.item() * len(y)
            right += (logits.argmax(dim=1) == y).sum().item()
        row = {"epoch": epoch, "loss": total_loss / len(y_train), "train_accuracy": right / len(y_train),
               "test_accuracy": evaluate(model, splits.x_test, splits.y_test),
               "seconds": time.perf_counter() - start}
        history.append(row)
        if progress:
            print(f"epoch {epoch:>3}/{epochs}  loss {row['loss']:.4f}  train {row['train_accuracy']:.2%}"
                  f"  test {row['test_accuracy']:.2%}  ({row['seconds']:.1f} s)", flush=True)
    optimizer.zero_grad(set_to_none=True)   # no gradients left behind: trained looks like loaded from a file
    model.eval()
    return history


def fingerprint(splits: data.Splits) -> str:
    """SHA-256 (16 hex digits) of the training images and labels: part of every cache key of a trained model."""
    digest = hashlib.sha256()
    for t in (splits.x_train, splits.y_train):
        digest.update(t.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_or_train_teacher(splits: data.Splits, *, preset: str = "teacher", epochs: int = 15, lr: float = 1e-3,
                          batch_size: int = 32, max_shift: int = 0, seed: int = 0,
                          cache_dir: str | os.PathLike | None = None, device: torch.device | str | None = None,
                          progress: bool = False) -> nn.Sequential:
    """Load a trained teacher from the checkpoint cache, or train it deterministically and cache it.

    The cache key holds everything that changes the weights: the preset's architecture, the data (name
    and a fingerprint), the recipe (epochs, lr, batch_size, max_shift, seed), the CPU thread count
    and the CPU (machine.float_path: float sums in another order give other weights), the device type, the
    torch version, the preset's dropout and the source of the code that trains it (files.source_digest:
    data, models, masks, evaluation and this module). An entry that is missing, made for another key, corrupt (SHA-256 of its
    tensors) or non-finite is reported and retrained, never used. The cache folder is `cache_dir`, else
    files.cache_dir("checkpoints") ($DC_CACHE_DIR); file names are sanitised, so a dataset name cannot lead
    outside it.
    The default recipe (15 epochs of Adam, lr 1e-3, batch 32) was chosen on `splits.holdout()`, never on test.
    Training runs under a forked RNG, so the caller's random stream is the same whether or not the
    cache hit. Checkpoints are written atomically.
    """
    model = models.preset(preset)  # validates the name
    recipe = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size)  # validates the recipe
    validate.integer("max_shift", max_shift, low=0, high=27)
    validate.integer("seed", seed, low=0, high=2**32 - 1)
    device = torch.device(device) if device is not None else torch.device("cpu")
    meta = {"preset": preset, "sizes": models.layer_sizes(model), "data": splits.name,
            "fingerprint": fingerprint(splits), "epochs": epochs, "lr": lr, "batch_size": batch_size,
            "max_shift": max_shift, "seed": seed, "threads": torch.get_num_threads(), "device": device.type,
            "torch": str(torch.__version__), "dropout": models.PRESETS[preset][1], **machine.float_path(),
            "code": files.source_digest([data, models, masking, sys.modules[evaluate.__module__], sys.modules[__name__]])}
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
    folder = pathlib.Path(cache_dir) if cache_dir is not None else files.cache_dir("checkpoints")
    path = folder / files.safe_name(f"{preset}-{splits.name}-{key}.pt")
    files.remove_stale_temporaries(folder, older_than_s=600)  # left by runs killed while writing a checkpoint
    if path.is_file():
        try:
            model.load_state_dict(checkpoints.load(path, meta))
            return model.to(device).eval()
        except (ValueError, RuntimeError) as exc:  # a bad entry (or one of another shape) is retrained, not fatal
            warnings.warn(f"{exc}; retraining it")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.preset(preset)
        augment = (lambda x, g: data.random_shift(x, max_shift=max_shift, generator=g)) if max_shift else None
        fit(model, splits, config=recipe, augment=augment, device=device, progress=progress)
    checkpoints.save(model, path, meta)
    return model
