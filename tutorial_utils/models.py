"""The one model family of the tutorial: multi-layer perceptrons on flat 28x28 images.

`mlp([784, 128, 10])` is Linear(784, 128) -> ReLU -> Linear(128, 10); a Linear layer of
n_in -> n_out holds n_in * n_out weights and n_out biases, so the 784-128-10 teacher has
784*128 + 128 + 128*10 + 10 = 101,770 parameters.

Example:
    >>> model = teacher()
    >>> model(torch.zeros(2, 784)).shape     # logits, (batch, 10)
    torch.Size([2, 10])
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence

import torch
from torch import nn

from tutorial_utils import validate

PRESETS: dict[str, tuple[list[int], float]] = {
    # name: (layer sizes, dropout after each hidden ReLU)
    "teacher": ([784, 128, 10], 0.0),
    "student": ([784, 64, 10], 0.0),
    "lenet-300-100": ([784, 300, 100, 10], 0.0),
    "big-teacher": ([784, 1200, 1200, 10], 0.3),
}


def mlp(sizes: Sequence[int], *, dropout: float = 0.0, init: bool = True) -> nn.Sequential:
    """Build Linear -> ReLU (-> Dropout) ... -> Linear for consecutive `sizes` (input first, classes last).

    Layers are numbered as nn.Sequential numbers them, so parameter names read "0.weight", "2.weight", ...
    init=True draws the weights from torch's global generator (PyTorch's default initialisation);
    init=False leaves them uninitialised and draws nothing, for code that copies weights in.
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(s, numbers.Integral) or isinstance(s, bool) or s <= 0 for s in sizes):
        raise ValueError(f"sizes={sizes} must list at least two positive integers (input, ..., classes)")
    sizes = [int(s) for s in sizes]
    validate.fraction("dropout", dropout)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        # init=False leaves the weights uninitialised (for loaders that copy weights in): no random draws.
        layers.append(nn.Linear(n_in, n_out) if init else nn.utils.skip_init(nn.Linear, n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def layer_sizes(model: nn.Module) -> list[int]:
    """The sizes list of an MLP: [in_features of the first Linear, out_features of every Linear].

    Any layer with in_features and out_features counts (nn.Linear, quantized Linear layers).
    """
    linears = [m for m in model.modules() if hasattr(m, "in_features") and hasattr(m, "out_features")]
    if not linears:
        raise TypeError(f"model of type {type(model).__name__} has no nn.Linear layers")
    return [linears[0].in_features] + [m.out_features for m in linears]


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer; cpu for a model with neither (e.g. int8 backends)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


DEVICES = ("cpu", "cuda")


def default_device() -> torch.device:
    """Where the package trains when not told (training.setup): the CPU, or CUDA if DC_DEVICE=cuda.

    The CPU by default even where a GPU is visible: it is the path the tutorial's numbers were measured
    and tested on, and float sums on a GPU run in another order (other weights, other accuracies). A
    GPU is asked for by name; DC_DEVICE=cuda where PyTorch sees none is a ValueError.
    """
    name = validate.env("DC_DEVICE", "cpu")
    validate.choice("environment variable DC_DEVICE", name, DEVICES)
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("environment variable DC_DEVICE='cuda': PyTorch sees no CUDA GPU here "
                         "(torch.cuda.is_available() is False); unset it to run on the CPU")
    return torch.device(name)


def on_cpu(model: nn.Module) -> nn.Module:
    """`model` itself if it is on the CPU, else a copy moved there; the model is not changed.

    Every number the package measures (accuracy, bytes, latency, energy) is a CPU number, the deployment
    target's, comparable with README's: a model trained on a GPU is measured on a copy.
    """
    if device_of(model).type == "cpu":
        return model
    return copy.deepcopy(model).cpu()


def preset(name: str) -> nn.Sequential:
    """A fresh, untrained model of a named preset (see PRESETS)."""
    validate.choice("name", name, sorted(PRESETS))
    sizes, dropout = PRESETS[name]
    return mlp(sizes, dropout=dropout)


def teacher() -> nn.Sequential:
    """784-128-10, the article's teacher (101,770 parameters)."""
    return preset("teacher")


def student() -> nn.Sequential:
    """784-64-10, the article's student (50,890 parameters)."""
    return preset("student")


def lenet_300_100() -> nn.Sequential:
    """784-300-100-10, LeNet-300-100 of LeCun et al. (1998) and Deep Compression (266,610 parameters)."""
    return preset("lenet-300-100")


def big_teacher() -> nn.Sequential:
    """784-1200-1200-10 with dropout 0.3, Hinton et al.'s (2015) MNIST teacher size (2,395,210 parameters)."""
    return preset("big-teacher")
