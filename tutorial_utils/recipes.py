"""Recipes: the stages of distil-and-compress as library functions, shared by notebook 05 and the pipeline.

    student --prune_--> masked student --quantize_aware--> integer codes --storage.save--> file

Each stage trains through the one loop (`training.fit`) with the loss chosen in one place
(`distillation.loss_for`: the teacher's soft targets, or labels when teacher is None), a typed
`training.TrainConfig` for how long and how fast, and an optional `seed` that reseeds the global
generators when the stage starts, so that a stage gives the same result whether it is run from a
notebook or from the pipeline, and whatever was measured or loaded before it.

Example:
    >>> masks = prune_(model, splits, sparsity=0.9, teacher=teacher, seed=0)
    >>> final = quantize_aware(model, splits, quant=4, teacher=teacher, masks=masks, seed=0)
"""

from __future__ import annotations

import copy
import importlib.util
import pathlib
from dataclasses import dataclass

import torch
from torch import nn

from tutorial_utils import (data, distillation, int8, measure, models, pruning, quantization, storage, training,
                            validate)

FINETUNE = training.TrainConfig(epochs=5)            # after pruning: the rate the student was trained with
QAT = training.TrainConfig(epochs=5, lr=5e-4)        # through the quantizer: half the rate, the grid is coarse
DEPLOY = ("none", "onnx")                            # the pipeline's --deploy choices


def _seed(seed: int | None) -> None:
    if seed is not None:
        training.setup(seed)


def train_(model: nn.Module, splits: data.Splits, *, teacher: nn.Module | None = None,
           kd: distillation.KDConfig = distillation.KDConfig(), config: training.TrainConfig = FINETUNE,
           masks: dict[str, torch.Tensor] | None = None, device: torch.device | str | None = None) -> None:
    """Train `model` in place with distillation from `teacher`, or cross-entropy if teacher is None."""
    device = torch.device(device) if device is not None else models.device_of(model)
    training.fit(model, splits, loss_fn=distillation.loss_for(teacher, splits, kd=kd, device=device),
                 config=config, masks=masks, device=device, progress=False)


def prune_(model: nn.Module, splits: data.Splits, *, sparsity: float, teacher: nn.Module | None = None,
           kd: distillation.KDConfig = distillation.KDConfig(), config: training.TrainConfig = FINETUNE,
           seed: int | None = None, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Global magnitude pruning to `sparsity`, then fine-tuning with the masks held. Returns the masks.

    Side effects: prunes and trains the model in place; reseeds the generators if `seed` is given.
    """
    validate.fraction("sparsity", sparsity)
    _seed(seed)
    masks = pruning.magnitude_masks(model, sparsity, scope="global")
    pruning.apply_masks_(model, masks)
    train_(model, splits, teacher=teacher, kd=kd, config=config, masks=masks, device=device)
    return masks


def narrow(model: nn.Sequential, splits: data.Splits, *, amount: float, teacher: nn.Module | None = None,
           kd: distillation.KDConfig = distillation.KDConfig(), config: training.TrainConfig = FINETUNE,
           seed: int | None = None, device: torch.device | str | None = None) -> nn.Sequential:
    """Structured pruning: a physically narrower copy without round(amount * width) units per hidden layer
    (the lowest pruning.neuron_scores: incoming times outgoing weight norms; pruning.prune_neurons),
    fine-tuned with the same loss.

    Unlike magnitude pruning, this removes whole rows and columns, so a dense kernel does less work.
    The input model is not changed; reseeds the generators if `seed` is given.
    """
    validate.fraction("amount", amount)
    _seed(seed)
    smaller = pruning.prune_neurons(model, amount)
    train_(smaller, splits, teacher=teacher, kd=kd, config=config, device=device)
    return smaller


def quantize_aware(model: nn.Module, splits: data.Splits, *, quant: quantization.QuantConfig | int,
                   teacher: nn.Module | None = None, kd: distillation.KDConfig = distillation.KDConfig(),
                   config: training.TrainConfig = QAT, masks: dict[str, torch.Tensor] | None = None,
                   seed: int | None = None, device: torch.device | str | None = None) -> nn.Sequential:
    """Quantization-aware training on `quant`'s grid (pruned weights held at zero), then conversion to codes.

    1-bit codes are +-1 and cannot hold a zero, so quant.bits == 1 with masks is refused: the
    "pruned" model would come back dense. The input model is not changed.
    """
    quant = quantization.as_config(quant)
    if quant.bits == 1 and masks is not None:
        raise ValueError("bits=1 cannot keep pruned weights at zero (1-bit codes are +-1); use bits >= 2 "
                         "with pruning")
    _seed(seed)
    qat = quantization.prepare_qat(model, quant)
    train_(qat, splits, teacher=teacher, kd=kd, config=config, masks=masks, device=device)
    return quantization.quantize_model(qat)


def compress(student: nn.Module, splits: data.Splits, *, sparsity: float, quant: quantization.QuantConfig | int,
             teacher: nn.Module | None = None, kd: distillation.KDConfig = distillation.KDConfig(),
             finetune: training.TrainConfig = FINETUNE, qat: training.TrainConfig = QAT, seed: int | None = None,
             device: torch.device | str | None = None) -> nn.Sequential:
    """A pruned, quantized copy of a trained student: prune_ then quantize_aware, both with the same loss.

    With `seed`, each stage reseeds when it starts (as the pipeline does). The student is not changed.
    """
    model = copy.deepcopy(student)
    masks = prune_(model, splits, sparsity=sparsity, teacher=teacher, kd=kd, config=finetune, seed=seed,
                   device=device)
    return quantize_aware(model, splits, quant=quant, teacher=teacher, kd=kd, config=qat, masks=masks, seed=seed,
                          device=device)


def sweep(teacher: nn.Module | None, splits: data.Splits, folder: str | pathlib.Path, *, widths: list[int],
          sparsities: list[float], bit_widths: list[int], student: training.TrainConfig = training.TrainConfig(),
          finetune: training.TrainConfig = FINETUNE, qat: training.TrainConfig = QAT,
          kd: distillation.KDConfig = distillation.KDConfig(), seed: int = 0,
          threads: int | None = None, students: dict[int, nn.Module] | None = None) -> list[dict]:
    """Accuracy, bytes (compact file with entropy coding) and latency for widths x sparsities x bits.

    Each 784-w-10 student is distilled once (or taken from `students`, by width, when the caller already
    distilled it with this recipe and seed), pruned once per sparsity, and trained through the quantizer
    once per bit width, every stage seeded with `seed`. Latency is that of the deployed int8 backend
    at batch 256: it depends on the width, not on the sparsity or the bits, since the backend
    computes densely in int8. Side effects: writes each point's file to `folder` (w*-s*-b*.dcmp); every
    stage reseeds the global generators with `seed`.
    """
    for i, value in enumerate(widths):
        validate.positive_int(f"widths[{i}]", value)
    for i, value in enumerate(sparsities):
        validate.fraction(f"sparsities[{i}]", value)
    for i, value in enumerate(bit_widths):
        validate.bits(f"bit_widths[{i}]", value)
    rows = []
    for width in widths:
        trained = (students or {}).get(width) or distillation.train_student(
            splits, teacher=teacher, seed=seed, sizes=(784, width, 10), kd=kd, config=student)
        for sparsity in sparsities:
            pruned = copy.deepcopy(trained)
            masks = prune_(pruned, splits, sparsity=sparsity, teacher=teacher, kd=kd, config=finetune, seed=seed)
            for bits in bit_widths:
                model = quantize_aware(pruned, splits, quant=bits, teacher=teacher, kd=kd, config=qat, masks=masks,
                                       seed=seed)
                path = pathlib.Path(folder) / f"w{width}-s{sparsity:g}-b{bits}.dcmp"
                deployed = int8.to_backend(quantization.dequantize_model(model), "legacy")
                rows.append({"stage": f"784-{width}-10, {sparsity:.0%}, {bits}-bit", "width": width,
                             "sparsity": sparsity, "bits": bits,
                             "accuracy": training.evaluate(model, splits.x_test, splits.y_test),
                             "bytes": storage.save(model, path, compress="auto"),
                             "latency_ms": measure.latency_ms(deployed, 256, threads=threads, repeats=100)})
    return rows


def choose(points: list[dict], *, max_bytes: int, min_accuracy: float = 0.0, key: str = "val_accuracy") -> dict | None:
    """The operating point to deploy: among points with bytes <= max_bytes and point[key] >= min_accuracy,
    the highest point[key], ties to the fewest bytes; None if no point qualifies.

    `key` should be an accuracy measured on held-out data (splits.holdout()): choosing by test accuracy
    makes the test set part of the training. Points without `bytes` or `key` are a ValueError.
    """
    validate.positive_int("max_bytes", max_bytes)
    validate.fraction("min_accuracy", min_accuracy)
    for point in points:
        if not isinstance(point.get("bytes"), int) or not isinstance(point.get(key), (int, float)):
            raise ValueError(f"point {point.get('stage', point)!r} needs integer 'bytes' and a number {key!r}")
    fits = [p for p in points if p["bytes"] <= max_bytes and p[key] >= min_accuracy]
    return min(fits, key=lambda p: (-p[key], p["bytes"]), default=None)


TEACHERS = tuple(sorted(models.PRESETS)) + ("self", "none")


@dataclass(frozen=True)
class PipelineConfig:
    """Every option of the pipeline, checked when made (so before any training starts)."""

    out: str = "runs/pipeline"
    dataset: str = "mnist-5k"
    data_dir: str | None = None
    cache_dir: str | None = None
    teacher: str = "big-teacher"
    student: str = "student"
    sparsity: float = 0.9
    narrow: float = 0.0            # fraction of each hidden layer's units removed first (structured pruning)
    bits: int = 4
    epochs: int = 15
    finetune_epochs: int = 5
    qat_epochs: int = 5
    schedule: str = "constant"
    weight_decay: float = 0.0
    temperature: float = 4.0
    alpha: float = 0.9
    seed: int = 0
    seeds: tuple[int, ...] = ()    # several seeds: the chain runs once per seed, accuracies as mean +- std
    threads: int = 2
    deploy: str = "none"           # "onnx": also write model.onnx, model-int8.onnx and model-pixels.onnx

    def __post_init__(self) -> None:
        validate.choice("dataset", self.dataset, data.DATASETS)
        validate.choice("teacher", self.teacher, TEACHERS)
        validate.choice("student", self.student, sorted(models.PRESETS))
        validate.fraction("sparsity", self.sparsity), validate.fraction("narrow", self.narrow)
        widths = models.PRESETS[self.student][0][1:-1]   # hidden layers; pruning.prune_neurons removes round(a * w)
        if self.narrow and not all(0 < round(self.narrow * w) < w for w in widths):
            raise ValueError(f"narrow={self.narrow!r} would remove no unit or every unit of a hidden layer of "
                             f"student={self.student!r} (widths {list(widths)}); it must remove some and keep some")
        validate.bits("bits", self.bits)
        if self.bits == 1 and self.sparsity > 0:
            raise ValueError("bits=1 with sparsity > 0 is refused: 1-bit codes are +-1 and cannot keep pruned "
                             "weights at zero; use bits >= 2, or sparsity 0")
        self.student_config(), self.finetune_config(), self.qat_config(), self.kd()  # validate the recipes
        for value in (self.seed, *self.seeds):
            validate.integer("seed", value, low=0, high=2**32 - 1)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={self.seeds!r} must not repeat a seed")
        validate.positive_int("threads", self.threads)
        validate.choice("deploy", self.deploy, DEPLOY)
        if self.deploy == "onnx" and not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
            raise ValueError("deploy='onnx' needs onnx and ONNX Runtime: pip install -e '.[deploy]'")
        for name in ("out", "data_dir", "cache_dir"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name}={value!r} must name a folder")

    def student_config(self) -> training.TrainConfig:
        return training.TrainConfig(epochs=self.epochs, weight_decay=self.weight_decay, schedule=self.schedule)

    def finetune_config(self) -> training.TrainConfig:
        return FINETUNE.replace(epochs=self.finetune_epochs, schedule=self.schedule)

    def qat_config(self) -> training.TrainConfig:
        return QAT.replace(epochs=self.qat_epochs, schedule=self.schedule)

    def kd(self) -> distillation.KDConfig:
        return distillation.KDConfig(temperature=self.temperature, alpha=self.alpha)
