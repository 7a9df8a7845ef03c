"""Knowledge distillation (Hinton et al. 2015): a student learns from a teacher's softened outputs.

    kd_loss = alpha * T^2 * KL( softmax(t / T) || softmax(s / T) )  +  (1 - alpha) * CE(s, y)

with student logits s, teacher logits t, temperature T and labels y; the KL term is averaged over the
batch ("batchmean", the true KL per sample). Dividing logits by T > 1 softens both distributions, so
the small probabilities the teacher gives wrong classes (which 7s look like 1s) carry signal. The
gradient of the soft term scales as 1/T^2, hence the T^2 factor that keeps it comparable to the
hard term when T changes.

Example:
    >>> history = distill(student, teacher, splits, temperature=4.0, alpha=0.9, epochs=15)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tutorial_utils import data, models, training


def _check(temperature: float, alpha: float) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature <= 0:
        raise ValueError(f"temperature={temperature!r} must be a finite number > 0")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha={alpha!r} must be a number in [0, 1]")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
            temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton's distillation loss (see the module docstring). Teacher logits are detached: no gradient
    reaches the teacher."""
    _check(temperature, alpha)
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must both be (batch, classes)")
    if targets.shape != student_logits.shape[:1]:
        raise ValueError(f"targets must be (batch,) = ({student_logits.shape[0]},); got {tuple(targets.shape)}")
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits.detach() / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, targets)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def distill(student: nn.Module, teacher: nn.Module, splits: data.Splits, *, temperature: float = 4.0,
            alpha: float = 0.9, epochs: int = 15, lr: float = 1e-3, batch_size: int = 32,
            augment=None, masks: dict[str, torch.Tensor] | None = None, weight_decay: float = 0.0,
            schedule: str = "constant", device: torch.device | str | None = None,
            progress: bool = True) -> list[dict[str, float]]:
    """Train `student` in place with kd_loss against `teacher`, through the one loop (training.fit).

    The teacher runs in eval mode under no_grad. Without augmentation its logits on the training set
    are computed once and looked up per batch (batch.index); with `augment`, the inputs change every
    batch, so the teacher sees each augmented batch. Returns fit's history.
    """
    _check(temperature, alpha)
    teacher_classes, student_classes = models.layer_sizes(teacher)[-1], models.layer_sizes(student)[-1]
    if teacher_classes != student_classes:
        raise ValueError(f"the teacher predicts {teacher_classes} classes but the student {student_classes}")
    device = torch.device(device) if device is not None else models.device_of(student)
    teacher = teacher.to(device).eval()
    cached = training.predict(teacher, splits.x_train).to(device) if augment is None else None  # (n, classes)

    def loss_fn(logits: torch.Tensor, batch: training.Batch) -> torch.Tensor:
        if cached is not None:
            teacher_logits = cached[batch.index]
        else:
            with torch.no_grad():
                teacher_logits = teacher(batch.x)
        return kd_loss(logits, teacher_logits, batch.y, temperature=temperature, alpha=alpha)

    return training.fit(student, splits, epochs=epochs, lr=lr, batch_size=batch_size, loss_fn=loss_fn,
                        masks=masks, augment=augment, weight_decay=weight_decay, schedule=schedule, device=device,
                        progress=progress)


# The strong teacher of notebooks 04 and 05: 784-1200-1200-10 with dropout 0.3, trained on inputs shifted by
# up to 2 pixels (as Hinton et al. jittered theirs). Recipe chosen on splits.holdout(), not on test.
BIG_TEACHER_RECIPE = {"preset": "big-teacher", "epochs": 30, "lr": 1e-3, "batch_size": 128, "max_shift": 2}


@torch.no_grad()
def match_class_prior_(model: nn.Sequential, x: torch.Tensor, class_index: int, *, prior: float = 0.1,
                       steps: int = 40) -> float:
    """Raise the output bias of one class until it is predicted for a `prior` fraction of the inputs x.

    A student that never saw a class in its transfer set learns too low a bias for it (Hinton et al.
    2015 raised it by hand). Matching the class's expected frequency on unlabeled inputs sets the bias
    without looking at any label. Bisection on the added bias in [0, 50]. Returns the added bias.
    Side effect: changes the bias of the model's last Linear layer in place.
    """
    if not 0 < prior < 1:
        raise ValueError(f"prior={prior!r} must be in (0, 1)")
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    if not 0 <= class_index < last.out_features:
        raise ValueError(f"class_index={class_index!r} must be in [0, {last.out_features - 1}]")
    original, low, high = last.bias[class_index].item(), 0.0, 50.0
    for _ in range(steps):
        middle = (low + high) / 2
        last.bias[class_index] = original + middle
        share = (training.predict(model, x).argmax(dim=1) == class_index).float().mean().item()
        low, high = (middle, high) if share < prior else (low, middle)
    last.bias[class_index] = original + high
    return high


def train_student(splits: data.Splits, *, teacher: nn.Module | None = None, seed: int = 0,
                  sizes: tuple[int, ...] = (784, 64, 10), temperature: float = 4.0, alpha: float = 0.9,
                  epochs: int = 15, lr: float = 1e-3, batch_size: int = 32, weight_decay: float = 0.0,
                  schedule: str = "constant", device: torch.device | str | None = None) -> nn.Sequential:
    """A fresh, seeded student MLP trained from scratch (teacher=None) or distilled from `teacher`.

    Everything but the loss is the same in both cases (initialisation, data order, optimiser, epochs,
    weight decay, learning-rate schedule), so comparing the two over several seeds isolates what
    distillation adds.
    """
    training.setup(seed)
    student = models.mlp(list(sizes))
    if teacher is None:
        training.fit(student, splits, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                     schedule=schedule, device=device, progress=False)
    else:
        distill(student, teacher, splits, temperature=temperature, alpha=alpha, epochs=epochs, lr=lr,
                batch_size=batch_size, weight_decay=weight_decay, schedule=schedule, device=device,
                progress=False)
    return student
