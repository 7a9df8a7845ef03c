"""Knowledge distillation (Hinton et al. 2015): a student learns from a teacher's softened outputs.

    kd_loss = alpha * T^2 * KL( softmax(t / T) || softmax(s / T) )  +  (1 - alpha) * CE(s, y)

with student logits s, teacher logits t, temperature T and labels y; the KL term is averaged over the
batch ("batchmean", the true KL per sample). Dividing logits by T > 1 softens both distributions, so
the small probabilities the teacher gives wrong classes (which 7s look like 1s) carry signal. The
gradient of the soft term scales as 1/T^2, hence the T^2 factor that keeps it comparable to the
hard term when T changes.

The loss is public and pluggable: `distillation_loss(teacher, ...)` returns a loss_fn for the one
training loop, `loss_for(teacher or None, ...)` is the one place that chooses between distillation and
plain cross-entropy, and `distill` is fit with that loss plugged in.

Example:
    >>> history = distill(student, teacher, splits, kd=KDConfig(temperature=4.0, alpha=0.9), epochs=15)
    >>> training.fit(student, splits, loss_fn=distillation_loss(teacher, splits))   # the same thing
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tutorial_utils import data, evaluation, models, training, validate


def _check(temperature: float, alpha: float) -> None:
    validate.temperature("temperature", temperature)
    validate.probability("alpha", alpha)


@dataclass(frozen=True)
class KDConfig:
    """The two knobs of distillation: temperature T > 0 (finite) and alpha in [0, 1], the soft term's weight.

    T = 4 and alpha = 0.9 were checked for the 784-64-10 student on `splits.holdout()` (notebook 04,
    scripts/kd_sweep.py): no recipe of that sweep is established above them, so they stay.
    """

    temperature: float = 4.0
    alpha: float = 0.9

    def __post_init__(self) -> None:
        _check(self.temperature, self.alpha)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
            temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton's distillation loss: alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) (batch mean)
    + (1 - alpha) * CE(s, targets), with s, t the student's and teacher's logits and T the temperature
    (module docstring: why T^2). Teacher logits are detached: no gradient reaches the teacher."""
    _check(temperature, alpha)
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must both be (batch, classes)")
    if targets.shape != student_logits.shape[:1]:
        raise ValueError(f"targets must be (batch,) = ({student_logits.shape[0]},); got {tuple(targets.shape)}")
    if len(targets) == 0:   # the means below would be NaN, and training would go on with NaN weights
        raise ValueError("the batch is empty: kd_loss needs at least one image")
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits.detach() / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, targets)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def logit_matching_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The high-temperature limit of the soft term (Hinton et al. 2015, section 2.1):

        T^2 * KL(softmax(t/T) || softmax(s/T))  ->  1/(2N) * sum_i ((s_i - mean s) - (t_i - mean t))^2

    as T -> infinity, for N classes, averaged over the batch: distillation becomes matching the logits
    (up to their mean, which softmax ignores). Teacher logits are detached.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must both be (batch, classes)")
    s = student_logits - student_logits.mean(dim=1, keepdim=True)
    t = teacher_logits.detach() - teacher_logits.detach().mean(dim=1, keepdim=True)
    return ((s - t) ** 2).sum(dim=1).mean() / (2 * student_logits.shape[1])


def frozen(teacher: nn.Module, device: torch.device | str) -> nn.Module:
    """The teacher as distillation runs it, in eval mode on `device`: itself when it already is, else a copy,
    so that the caller's teacher keeps its mode and its device."""
    device, at = torch.device(device), models.device_of(teacher)
    if device.type == "cuda" and device.index is None:   # a bare "cuda" is the current GPU, not any GPU
        device = torch.device("cuda", torch.cuda.current_device())
    if not any(m.training for m in teacher.modules()) and at == device:
        return teacher
    return copy.deepcopy(teacher).to(device).eval()


def distillation_loss(teacher: nn.Module, splits: data.Splits | None = None, *, kd: KDConfig = KDConfig(),
                      device: torch.device | str | None = None) -> training.LossFn:
    """A loss_fn for training.fit: kd_loss(student logits, teacher logits, labels) with `kd`'s T and alpha.

    The teacher runs in eval mode under no_grad and gets no gradient. With `splits`, its logits on
    splits.x_train are computed once (n, classes) and looked up by batch.index, which is exact only
    when fit trains on those same splits without augmentation; without `splits`, the teacher sees
    every batch as fit feeds it (augmented inputs included). The caller's teacher is not changed (frozen).
    """
    if not isinstance(kd, KDConfig):
        raise TypeError(f"kd must be a distillation.KDConfig, got {type(kd).__name__}")
    device = torch.device(device) if device is not None else models.device_of(teacher)
    teacher = frozen(teacher, device)
    # (n, classes); remembered, since consecutive runs (pruning, then QAT) distil from the same teacher
    cached = evaluation.predict_memoized(teacher, splits.x_train).to(device) if splits is not None else None

    def loss_fn(logits: torch.Tensor, batch: training.Batch) -> torch.Tensor:
        if cached is not None:
            teacher_logits = cached[batch.index]
        else:
            with torch.no_grad():
                teacher_logits = teacher(batch.x)
        return kd_loss(logits, teacher_logits, batch.y, temperature=kd.temperature, alpha=kd.alpha)

    return loss_fn


def loss_for(teacher: nn.Module | None, splits: data.Splits | None = None, *, kd: KDConfig = KDConfig(),
             device: torch.device | str | None = None) -> training.LossFn:
    """The one place that chooses the loss: cross-entropy on labels if teacher is None, else distillation."""
    if teacher is None:
        return training.cross_entropy_loss
    return distillation_loss(teacher, splits, kd=kd, device=device)


def distill(student: nn.Module, teacher: nn.Module, splits: data.Splits, *, kd: KDConfig | None = None,
            temperature: float | None = None, alpha: float | None = None,
            augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
            masks: dict[str, torch.Tensor] | None = None, device: torch.device | str | None = None,
            progress: bool = True, **config: object) -> list[dict[str, float]]:
    """Train `student` in place with kd_loss against `teacher`, through the one loop (training.fit).

    T and alpha come from `kd` or from temperature/alpha (KDConfig's defaults otherwise). The remaining
    keywords (epochs, lr, batch_size, weight_decay, schedule, or config=TrainConfig) go to fit.
    Without augmentation the teacher's logits are computed once and looked up per batch; with
    `augment` the teacher sees each augmented batch. Returns fit's history.
    Side effect: trains the student in place (as fit does); the teacher is not changed (frozen).
    """
    kd = _kd_config(kd, temperature, alpha)
    teacher_classes, student_classes = models.layer_sizes(teacher)[-1], models.layer_sizes(student)[-1]
    if teacher_classes != student_classes:
        raise ValueError(f"the teacher predicts {teacher_classes} classes but the student {student_classes}")
    device = torch.device(device) if device is not None else models.device_of(student)
    loss_fn = distillation_loss(teacher, splits if augment is None else None, kd=kd, device=device)
    return training.fit(student, splits, loss_fn=loss_fn, masks=masks, augment=augment, device=device,
                        progress=progress, **config)


def _kd_config(kd: KDConfig | None, temperature: float | None, alpha: float | None) -> KDConfig:
    if kd is not None and (temperature is not None or alpha is not None):
        raise ValueError("give either kd= or temperature=/alpha=, not both")
    if kd is not None:
        return kd
    return KDConfig(**{k: v for k, v in (("temperature", temperature), ("alpha", alpha)) if v is not None})


# The strong teacher of notebooks 04 and 05: 784-1200-1200-10 with dropout 0.3, trained on inputs shifted by
# up to 2 pixels (as Hinton et al. jittered theirs). Recipe chosen on splits.holdout(), not on test.
BIG_TEACHER_RECIPE = {"preset": "big-teacher", "epochs": 30, "lr": 1e-3, "batch_size": 128, "max_shift": 2}


@torch.no_grad()
def match_class_prior_(model: nn.Sequential, x: torch.Tensor, class_index: int, *, prior: float = 0.1,
                       steps: int = 40) -> float:
    """Raise the output bias of one class until it is predicted for a `prior` fraction of the inputs x.

    A student that never saw a class in its transfer set learns too low a bias for it (Hinton et al.
    2015 raised it by hand). Matching the class's expected frequency on unlabeled inputs sets the bias
    without looking at any label. Bisection on the added bias b in [0, 50]: the smallest b with
    share(argmax = class_index) >= prior, to within 50 / 2^steps. Returns the added bias.
    Side effect: changes the bias of the model's last Linear layer in place (not at all when the prior
    cannot be reached with b <= 50: a ValueError).
    """
    if not 0 < prior < 1:
        raise ValueError(f"prior={prior!r} must be in (0, 1)")
    validate.positive_int("steps", steps)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    validate.integer("class_index", class_index, low=0, high=last.out_features - 1)
    validate.inputs("x", x, model)
    original, low, high = last.bias[class_index].item(), 0.0, 50.0
    try:
        last.bias[class_index] = original + high
        if (training.predict(model, x).argmax(dim=1) == class_index).float().mean().item() < prior:
            raise ValueError(f"prior={prior!r} is out of reach: even 50 added to class {class_index}'s bias makes "
                             f"it the prediction for fewer than that share of x")
        for _ in range(steps):
            middle = (low + high) / 2
            last.bias[class_index] = original + middle
            share = (training.predict(model, x).argmax(dim=1) == class_index).float().mean().item()
            low, high = (middle, high) if share < prior else (low, middle)
    except BaseException:
        last.bias[class_index] = original   # an error, or an interrupt, leaves the model as it came
        raise
    last.bias[class_index] = original + high
    return high


def train_student(splits: data.Splits, *, teacher: nn.Module | None = None, seed: int = 0,
                  sizes: tuple[int, ...] = (784, 64, 10), kd: KDConfig | None = None,
                  temperature: float | None = None, alpha: float | None = None,
                  config: training.TrainConfig | None = None, device: torch.device | str | None = None,
                  **train: object) -> nn.Sequential:
    """A fresh, seeded student MLP trained from scratch (teacher=None) or distilled from `teacher`.

    Everything but the loss is the same in both cases (initialisation, data order, optimiser, epochs,
    weight decay, learning-rate schedule), so comparing the two over several seeds isolates what
    distillation adds. How long and how fast: `config` or the keywords epochs, lr, batch_size,
    weight_decay, schedule. Side effect: reseeds the global generators with `seed` (training.setup).
    """
    kd = _kd_config(kd, temperature, alpha)
    if config is not None and train:
        raise ValueError(f"give either config= or the keywords {sorted(train)}, not both")
    config = config or training.TrainConfig(**train)
    training.setup(seed)
    student = models.mlp(list(sizes))
    device = torch.device(device) if device is not None else models.device_of(student)
    training.fit(student, splits, loss_fn=loss_for(teacher, splits, kd=kd, device=device), config=config,
                 device=device, progress=False)
    return student
