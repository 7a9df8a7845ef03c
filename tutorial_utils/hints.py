"""Hint distillation (Romero et al. 2015, "FitNets"): the student's hidden layer also learns the teacher's.

Logit distillation (module `distillation`) shows the student only the teacher's outputs. A hint adds
what the teacher computes inside: a learned linear regressor r maps the student's hidden activations
h_s (batch, m) to the width n of a teacher hidden layer h_t (batch, n), and

    hint_loss  = mean over the batch and the n units of ( r(h_s) - h_t )^2
    total loss = kd_loss(s, t, y; T, alpha) + beta * hint_loss

The regressor exists because the widths differ (64 against 1200); it is trained with the student and
thrown away afterwards, so the deployed student is unchanged in size. beta = 0 is logit distillation.

Example:
    >>> history = distill_with_hints(student, teacher, splits, beta=1.0, epochs=15)
    >>> student = train_student(splits, teacher=teacher, seed=0, beta=1.0, epochs=15)   # seeded, fresh
"""

from __future__ import annotations

import torch
from torch import nn

from tutorial_utils import data, distillation, models, training, validate


def _relu_positions(model: nn.Module) -> list[int]:
    if not isinstance(model, nn.Sequential) or not all(isinstance(m, (nn.Linear, nn.ReLU, nn.Dropout)) for m in model):
        raise TypeError(f"model must be an nn.Sequential of Linear, ReLU and Dropout layers (an MLP of models.mlp), "
                        f"got {type(model).__name__}")
    return [i for i, m in enumerate(model) if isinstance(m, nn.ReLU)]


def _hidden_index(model: nn.Module, layer: int, name: str) -> int:
    positions = _relu_positions(model)
    if not positions:
        raise ValueError(f"{name}: the model {models.layer_sizes(model)} has no hidden layer")
    layer = validate.integer(name, layer, low=-len(positions), high=len(positions) - 1)
    return positions[layer]


def hidden(model: nn.Sequential, x: torch.Tensor, *, layer: int = -1, name: str = "layer") -> torch.Tensor:
    """The activations of one hidden layer: model's modules up to and including its `layer`-th ReLU.

    layer counts hidden layers from 0 (negative from the last, -1 = the one before the logits). The model
    runs in the mode it is in (eval for a teacher's features, so dropout is off). Returns (batch, width).
    `name` is the argument an error names (a caller's teacher_layer, say).
    """
    return model[:_hidden_index(model, layer, name) + 1](x)


def hint_loss(regressed: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """mean((r(h_s) - h_t)^2) over the batch and the units, the same value as F.mse_loss. Teacher features
    are detached: no gradient reaches the teacher."""
    if regressed.shape != teacher_hidden.shape or regressed.ndim != 2:
        raise ValueError(f"regressed {tuple(regressed.shape)} and teacher_hidden {tuple(teacher_hidden.shape)} "
                         f"must both be (batch, teacher width)")
    return ((regressed - teacher_hidden.detach()) ** 2).mean()


class HintStudent(nn.Module):
    """A student with a regressor on one hidden layer: forward returns the student's logits and keeps
    `regressed` = r(h_s) (batch, teacher_width) of the same call for the hint loss.

    The student's own modules are shared, not copied: training the wrapper trains the student in place.
    The regressor is initialised from a forked random stream, so wrapping a student does not change the
    data order that follows (a hint student and a logit-distilled student of one seed stay paired).
    """

    def __init__(self, student: nn.Sequential, teacher_width: int, *, layer: int = -1) -> None:
        super().__init__()
        cut = _hidden_index(student, layer, "student_layer") + 1
        self.head, self.tail = student[:cut], student[cut:]
        width = self.head[cut - 2].out_features  # the Linear feeding that ReLU
        with torch.random.fork_rng(devices=[]):
            self.regressor = nn.Linear(width, validate.positive_int("teacher_width", teacher_width))
        self.regressed: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)                  # (batch, m)
        self.regressed = self.regressor(h)  # (batch, n)
        return self.tail(h)               # (batch, classes)


def hint_distillation_loss(wrapper: HintStudent, teacher: nn.Sequential, splits: data.Splits, *,
                           kd: distillation.KDConfig = distillation.KDConfig(), beta: float = 1.0,
                           teacher_layer: int = -1) -> training.LossFn:
    """A loss_fn for training.fit on `wrapper`: kd_loss + beta * hint_loss (module docstring).

    The soft term is distillation.distillation_loss (the teacher's logits computed once and looked up by
    batch.index); the teacher's features on splits.x_train are computed once the same way, in eval mode
    under no_grad (exact when fit trains on those splits without augmentation). The caller's teacher is
    not changed (distillation.frozen).
    """
    beta = validate.nonnegative_float("beta", beta)
    device = models.device_of(wrapper)
    teacher = distillation.frozen(teacher, device)                   # in eval mode, on the student's device
    soft_loss = distillation.distillation_loss(teacher, splits, kd=kd, device=device)
    with torch.no_grad():
        teacher_hidden = hidden(teacher, splits.x_train.to(device), layer=teacher_layer, name="teacher_layer")
    if teacher_hidden.shape[1] != wrapper.regressor.out_features:
        raise ValueError(f"teacher_layer={teacher_layer} has {teacher_hidden.shape[1]} units but the regressor "
                         f"predicts {wrapper.regressor.out_features}")

    def loss_fn(logits: torch.Tensor, batch: training.Batch) -> torch.Tensor:
        soft = soft_loss(logits, batch)
        return soft + beta * hint_loss(wrapper.regressed, teacher_hidden[batch.index]) if beta else soft

    return loss_fn


def distill_with_hints(student: nn.Sequential, teacher: nn.Sequential, splits: data.Splits, *,
                       kd: distillation.KDConfig = distillation.KDConfig(), beta: float = 1.0,
                       student_layer: int = -1, teacher_layer: int = -1, progress: bool = True,
                       **config: object) -> list[dict[str, float]]:
    """Train `student` in place with kd_loss + beta * hint_loss through the one loop (training.fit).

    The keywords epochs, lr, batch_size, weight_decay, schedule (or config=TrainConfig) go to fit; the
    regressor trains with the student and is discarded. Returns fit's history. No augment or masks: the
    teacher's features and logits are computed once, on the training rows as they are.
    """
    for refused in ("augment", "masks"):
        if config.get(refused) is not None:
            raise ValueError(f"{refused} is not supported by distill_with_hints: the teacher's targets are computed "
                             "once on the unaugmented, unmasked training rows")
    width = hidden(teacher, splits.x_train[:1].to(models.device_of(teacher)), layer=teacher_layer,
                   name="teacher_layer").shape[1]
    wrapper = HintStudent(student, width, layer=student_layer).to(models.device_of(student))
    loss_fn = hint_distillation_loss(wrapper, teacher, splits, kd=kd, beta=beta, teacher_layer=teacher_layer)
    history = training.fit(wrapper, splits, loss_fn=loss_fn, progress=progress, **config)
    student.eval()
    return history


def train_student(splits: data.Splits, *, teacher: nn.Sequential, seed: int = 0,
                  sizes: tuple[int, ...] = (784, 64, 10), kd: distillation.KDConfig = distillation.KDConfig(),
                  beta: float = 1.0, teacher_layer: int = -1, **train: object) -> nn.Sequential:
    """A fresh, seeded student trained with hints: the same initialisation and data order as
    distillation.train_student(splits, teacher=teacher, seed=seed, ...), so the two pair by seed.
    Side effect: reseeds the global generators with `seed` (training.setup)."""
    config = training.TrainConfig(**train)  # checked before the seed is set
    training.setup(seed)
    student = models.mlp(list(sizes))
    distill_with_hints(student, teacher, splits, kd=kd, beta=beta, teacher_layer=teacher_layer, config=config,
                       progress=False)
    return student
