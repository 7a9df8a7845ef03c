"""Quantized models: post-training quantization, quantization-aware training (QAT) and conversion.

The tensor math (QTensor, quantize, dequantize, fake_quantize, kmeans_quantize, QuantConfig) lives in
`qtensor` and is re-exported here, so `quantization.quantize(...)` works as before. This module does
the model surgery: every nn.Linear of an MLP becomes

    FakeQuantLinear   (training: forward through fake_quantize, gradient straight through), or
    QuantizedLinear   (after conversion: integer codes, scales and zero points held as buffers).

One `QuantConfig` is shared by `prepare_qat`, `quantize_model` and the file format: a model trained
through one grid and converted to another would silently compute a different function, so that is
refused.

Example:
    >>> config = QuantConfig(bits=4)
    >>> qat = prepare_qat(model, config)          # train qat with training.fit, then
    >>> quantized = quantize_model(qat)           # the same config, taken from the QAT layers
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from tutorial_utils import validate
from tutorial_utils.kmeans import kmeans_quantize  # noqa: F401  (public here: quantization.kmeans_quantize)
from tutorial_utils.qat import FakeQuantLinear, as_config, prepare_qat, qat_config, replace_linears  # noqa: F401
from tutorial_utils.qtensor import (Codebook, QTensor, QuantConfig, dequantize, fake_quantize,  # noqa: F401
                                    qrange, quantization_error, quantize)

METHODS = ("uniform", "kmeans")


class QuantizedLinear(nn.Module):
    """A Linear layer whose weight is held as integer codes (uniform or k-means), plus a float bias.

    Buffers (moved by .to(), saved in state_dict): `codes` (int32, the weight's shape), and `scale` and
    `zero_point` (uniform) or `centroids` (k-means); `bias`; with activation quantization, `act_scale`
    and `act_zero_point`. The forward pass uses the dequantized weight in float32 ("simulated"
    quantization): the codes are what a file stores and an integer kernel would use. With `act`,
    inputs are rounded to a per-tensor grid calibrated on real batches (only its scale and zero point
    are kept).
    """

    def __init__(self, weight: QTensor | Codebook, bias: torch.Tensor, *, act: QTensor | None = None,
                 scale_dtype: str | None = None) -> None:
        super().__init__()
        self.bits = weight.bits
        self.register_buffer("codes", weight.q.to(torch.int32).clone())
        if isinstance(weight, Codebook):
            self.kind, self.zero_code = "kmeans", weight.zero_code
            self.register_buffer("centroids", weight.centroids.float().clone())
        else:
            self.kind, self.symmetric, self.axis = "uniform", weight.symmetric, weight.axis
            exact_half = torch.equal(weight.scale.half().float(), weight.scale.float())
            if scale_dtype == "float16" and not exact_half:   # a file would round the scales: another model
                raise ValueError("scale_dtype='float16' but the scales are not float16 values; quantize with "
                                 "scale_dtype=torch.float16 (or QuantConfig's float16), or pass 'float32'")
            self.scale_dtype = scale_dtype or ("float16" if exact_half else "float32")
            self.register_buffer("scale", weight.scale.float().clone())
            self.register_buffer("zero_point", weight.zero_point.to(torch.int32).clone())
        self.register_buffer("bias", bias.detach().float().clone())
        self.act_bits = act.bits if act is not None else None
        if act is not None:
            self.register_buffer("act_scale", act.scale.detach().float().reshape(()).clone())
            self.register_buffer("act_zero_point", act.zero_point.detach().to(torch.int32).reshape(()).clone())
        # Derived from the codes, so not saved; dequantized once here rather than on every call.
        self.register_buffer("weight", dequantize(weight).float(), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh_weight())

    @property
    def qweight(self) -> QTensor | Codebook:
        """The weight's codes as a QTensor (uniform) or Codebook (k-means), read from the buffers."""
        if self.kind == "kmeans":
            return Codebook(self.codes, self.centroids, self.bits, self.zero_code)
        return QTensor(self.codes, self.scale, self.zero_point, self.bits, self.symmetric, self.axis)

    @property
    def config(self) -> QuantConfig | None:
        """The grid of the weight codes as a QuantConfig (None for k-means codes): what QAT trained on,
        what conversion used and what the file format stores."""
        if self.kind == "kmeans":
            return None
        return QuantConfig(bits=self.bits, symmetric=self.symmetric, per_channel=self.axis is not None,
                           scale_dtype=self.scale_dtype)

    @property
    def act(self) -> QTensor | None:
        """The activation grid (scale and zero point, no codes), or None."""
        if self.act_bits is None:
            return None
        return QTensor(torch.zeros(0, dtype=torch.int32), self.act_scale, self.act_zero_point, self.act_bits, False)

    @torch.no_grad()
    def _refresh_weight(self) -> None:
        self.weight = dequantize(self.qweight).float().to(self.codes.device)

    @property
    def in_features(self) -> int:
        return self.codes.shape[1]

    @property
    def out_features(self) -> int:
        return self.codes.shape[0]

    def round_input(self, x: torch.Tensor) -> torch.Tensor:
        """x as this layer reads it: s (clamp(round(x / s) + Z, 0, 2^act_bits - 1) - Z) with the activation
        grid fixed at calibration (scale s, zero point Z); x itself without act_bits."""
        if self.act_bits is None:
            return x
        qmin, qmax = qrange(self.act_bits, False)
        scale, zero_point = self.act_scale, self.act_zero_point
        return scale * (torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax) - zero_point)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.round_input(x), self.weight, self.bias)

    def extra_repr(self) -> str:
        acts = f", act_bits={self.act_bits}" if self.act_bits is not None else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits} ({self.kind}){acts}"


@torch.no_grad()
def dequantize_model(model: nn.Sequential) -> nn.Sequential:
    """A float copy: every QuantizedLinear becomes an nn.Linear holding its dequantized weights.

    Used to hand a quantized model to an int8 backend, whose converter expects nn.Linear layers.
    """
    def build(layer: nn.Module) -> nn.Module:
        if not isinstance(layer, QuantizedLinear):
            return copy.deepcopy(layer)
        linear = nn.utils.skip_init(nn.Linear, layer.in_features, layer.out_features, device=layer.weight.device)
        linear.weight.copy_(layer.weight)
        linear.bias.copy_(layer.bias)
        return linear

    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential MLP, got {type(model).__name__}")
    return nn.Sequential(*[build(m) for m in model])


def _calibration_inputs(model: nn.Sequential, calibration: torch.Tensor) -> list[torch.Tensor]:
    """Each Linear's input on the calibration batch, in order."""
    inputs: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach()))
             for m in model if isinstance(m, nn.Linear)]
    was_training = model.training
    try:
        model.eval()(calibration.to(next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return inputs


@torch.no_grad()
def quantize_model(model: nn.Sequential, config: QuantConfig | int | None = None, *, per_channel: bool | None = None,
                   symmetric: bool | None = None, method: str = "uniform", act_bits: int | None = None,
                   calibration: torch.Tensor | None = None, half_precision_meta: bool | None = None) -> nn.Sequential:
    """Post-training quantization or QAT conversion: a copy of `model` whose Linear weights are integer codes.

    `config` is a QuantConfig, or a bit width with the shorthands per_channel (default True), symmetric
    (default True) and half_precision_meta (default True: float16 scales and biases). For a QAT model
    (FakeQuantLinear layers) config may be omitted: the one it was trained with is used; a different
    one is a ValueError, since the converted model would not compute what was trained.
    method="kmeans" clusters each layer's weights into 2^bits centroids instead (Deep Compression).
    With act_bits, each layer's input is quantized asymmetrically per tensor, with min and max
    calibrated by running `calibration` inputs (n, features) through the model.
    The input model is not changed.
    """
    config, trained = as_config(config, per_channel=per_channel, symmetric=symmetric,
                                half_precision_meta=half_precision_meta), qat_config(model)
    if config is None and trained is None:
        raise ValueError("config=None: give a QuantConfig or bits for a model that was not prepared with prepare_qat")
    if trained is not None and config is not None and config != trained:
        raise ValueError(f"config={config} differs from the config the QAT model was trained with ({trained}); "
                         f"convert with that one (or omit config)")
    config = config or trained
    if validate.choice("method", method, METHODS) != "uniform" and trained is not None:
        raise ValueError(f"method={method!r} would cluster weights that QAT trained on a uniform grid ({trained}); "
                         "convert a QAT model with method='uniform'")
    if act_bits is not None:
        validate.bits("act_bits", act_bits)
        validate.inputs("calibration", calibration, model)   # act_bits needs inputs (n, features) to calibrate on
    elif calibration is not None:
        raise ValueError("calibration is used only with act_bits (activation quantization); pass act_bits or drop it")
    recorded = iter(_calibration_inputs(model, calibration) if act_bits is not None else [])

    def build(linear: nn.Linear) -> QuantizedLinear:
        weight = (kmeans_quantize(linear.weight, config.bits) if method == "kmeans"
                  else quantize(linear.weight, config.bits, symmetric=config.symmetric,
                                per_channel=config.per_channel, scale_dtype=config.torch_scale_dtype))
        act = quantize(next(recorded), act_bits, symmetric=False) if act_bits is not None else None
        return QuantizedLinear(weight, linear.bias.detach().to(config.torch_scale_dtype).float(), act=act,
                               scale_dtype=None if method == "kmeans" else config.scale_dtype)

    return replace_linears(model, build).eval()
