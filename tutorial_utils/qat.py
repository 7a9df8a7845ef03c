"""Quantization-aware training (QAT): Linear layers that train through the quantizer's rounding.

    forward:  y = x W_q^T + b_q,   W_q = fake_quantize(W) on the config's grid
    backward: dL/dW = dL/dW_q     (the straight-through estimator)

`prepare_qat` swaps every nn.Linear of an MLP for a FakeQuantLinear holding one `QuantConfig`;
`quantization.quantize_model` later converts them to integer codes on that same config (a different
one is refused).

Example:
    >>> qat = prepare_qat(model, QuantConfig(bits=4))
    >>> training.fit(qat, splits, epochs=3, lr=5e-4)
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from tutorial_utils import validate
from tutorial_utils.qtensor import QuantConfig, fake_quantize


class FakeQuantLinear(nn.Linear):
    """nn.Linear whose forward uses fake_quantize(weight) on its `config`'s grid: QAT through training.fit.

    Biases are rounded as the config's conversion will round them (float16 or float32), straight through.
    """

    def __init__(self, in_features: int, out_features: int, config: QuantConfig, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if not isinstance(config, QuantConfig):
            raise TypeError(f"config must be a QuantConfig, got {type(config).__name__}")
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        weight = fake_quantize(self.weight, c.bits, symmetric=c.symmetric, per_channel=c.per_channel,
                               scale_dtype=c.torch_scale_dtype)
        bias = self.bias + (self.bias.to(c.torch_scale_dtype).float() - self.bias).detach()
        return nn.functional.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", config={self.config}"


def as_config(config: QuantConfig | int | None, *, per_channel: bool | None = None, symmetric: bool | None = None,
              half_precision_meta: bool | None = None) -> QuantConfig | None:
    """A QuantConfig from a config, or from bits plus the keyword shorthands (None stays None).

    Shorthands may not be combined with a full config: which one wins would be a guess.
    """
    shorthands = {"per_channel": per_channel, "symmetric": symmetric, "half_precision_meta": half_precision_meta}
    given = {k: v for k, v in shorthands.items() if v is not None}
    if config is None or isinstance(config, QuantConfig):
        if given:
            raise ValueError(f"{sorted(given)} may only be given with bits, not with config={config!r}")
        return config
    validate.bits("bits", config)
    return QuantConfig(bits=int(config), symmetric=given.get("symmetric", True),
                       per_channel=given.get("per_channel", True),
                       scale_dtype="float16" if given.get("half_precision_meta", True) else "float32")


def replace_linears(model: nn.Module, build: Callable[[nn.Linear], nn.Module]) -> nn.Sequential:
    """A new Sequential with build(layer) for every nn.Linear of `model` and a copy of every other layer."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
    return nn.Sequential(*[build(m) if isinstance(m, nn.Linear) else copy.deepcopy(m) for m in model])


def prepare_qat(model: nn.Sequential, config: QuantConfig | int, *, per_channel: bool | None = None) -> nn.Sequential:
    """A copy of `model` with every nn.Linear replaced by a FakeQuantLinear of the same weights and `config`.

    `config` may be a bit width as a shorthand (symmetric, per channel unless per_channel=False, float16 scales).
    """
    config = as_config(config, per_channel=per_channel)

    def build(linear: nn.Linear) -> FakeQuantLinear:
        # skip_init: the weights are copied in, so building draws nothing from the global generator
        layer = nn.utils.skip_init(FakeQuantLinear, linear.in_features, linear.out_features, config,
                                   device=linear.weight.device)
        layer.load_state_dict(linear.state_dict())
        return layer

    return replace_linears(model, build)


def qat_config(model: nn.Module) -> QuantConfig | None:
    """The config a QAT model was prepared with (None for a model without FakeQuantLinear layers)."""
    configs = {m.config for m in model.modules() if isinstance(m, FakeQuantLinear)}
    if len(configs) > 1:
        raise ValueError(f"model mixes FakeQuantLinear layers of several configs: {sorted(map(str, configs))}")
    return configs.pop() if configs else None
