"""An energy *estimate* per image, from operation counts and Horowitz's 45 nm per-operation energies.

M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm:
arithmetic 8-bit int mult 0.2 pJ, 32-bit int add 0.1 pJ, 32-bit float mult 3.7 pJ, add 0.9 pJ;
memory, per 64-bit read: 8 KB cache 10 pJ, 32 KB cache 20 pJ, 1 MB cache 100 pJ, DRAM 1.3-2.6 nJ
(we take the low end). The model, for each Linear layer n_in -> n_out:

    compute     = n_in * n_out MACs * (mult + add) at the width the layer really computes in
    weights     = the layer's weight and bias bytes (1 byte per int8 weight, 4 per float) * e(level)
    activations = (n_in inputs at the layer's width + n_out float32 outputs) * e(activation level)
    per image at batch 1 = compute + weights + activations;  amortized at batch B: weights / B

e(level) is the energy per byte of the smallest level in Horowitz's table that holds all the weights;
the activation level is the smallest that holds every layer's activations added up (8 KB for the small
MLPs, 32 KB for the 784-1200-1200-10 teacher's 22 KB): a simple bound, since one layer at a time needs
only its own input and output.
Layers of an int8 backend compute in int8 (an int8 MAC accumulates in 32 bits: 0.2 + 0.1 pJ); every
other layer, fake-quantized and low-bit-coded float layers included, computes in float32: they
dequantize their codes before multiplying. So the same computation costs the same whatever file stores
it; only how many weight bytes are read can differ (`weight_bytes`: ONNX Runtime's MatMulNBits reads its
codes packed). Left out: quantizing activations at run time and rescaling outputs (a pass over each
layer's input and output that int8 rows pay on every call), and the runtime's call itself. The memory
levels are steps, so two models on either side of a level's size differ by its factor: read the ratios as
orders of magnitude. It is an estimate for teaching where energy goes, not a measurement of this CPU.

Example:
    >>> energy_estimate(model)["total_nj"]           # per image, batch 1
"""

from __future__ import annotations

from torch import nn

from tutorial_utils import validate

# Energy per operation at 45 nm, in picojoules (Horowitz, ISSCC 2014).
PJ = {"int8_mult": 0.2, "int32_add": 0.1, "fp32_mult": 3.7, "fp32_add": 0.9}
# Memory levels from Horowitz's table: (name, capacity in bytes, pJ per 64-bit read); DRAM holds anything.
MEMORY_LEVELS = (("8 KB cache", 8 * 1024, 10.0), ("32 KB cache", 32 * 1024, 20.0), ("1 MB cache", 1024 * 1024, 100.0),
                 ("DRAM", None, 1300.0))
MAC_PJ = {"int8": PJ["int8_mult"] + PJ["int32_add"], "float32": PJ["fp32_mult"] + PJ["fp32_add"]}


def _linear_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(getattr(m, "in_features", None), int)
            and isinstance(getattr(m, "out_features", None), int)]


def arithmetic(layer: nn.Module) -> str:
    """'int8' if the layer multiplies int8 weights (torch.ao dynamic int8 Linear, torchao int8 weights), else 'float32'."""
    if type(layer).__module__.startswith("torch.ao.nn.quantized"):
        return "int8"
    weight = getattr(layer, "weight", None)
    codes = getattr(weight, "qdata", None)  # torchao keeps the int8 codes of a quantized weight in .qdata
    return "int8" if codes is not None and str(getattr(codes, "dtype", "")) == "torch.int8" else "float32"


def memory_level(size_bytes: float) -> tuple[str, float]:
    """(name, pJ per byte) of the smallest memory level in Horowitz's table that holds `size_bytes`:
    pJ per byte = the level's pJ per 64-bit read / 8."""
    validate.nonnegative_float("size_bytes", size_bytes)
    for name, capacity, pj_per_64_bits in MEMORY_LEVELS:
        if capacity is None or size_bytes <= capacity:
            return name, pj_per_64_bits / 8
    raise AssertionError("unreachable: DRAM holds anything")


def energy_estimate(model: nn.Module, *, batch_size: int = 1, weight_bytes: int | None = None,
                    skip_zeros: bool = False) -> dict:
    """An *estimate* of the energy per image, in the model of this module's docstring.

    batch_size: the weights are read once per batch and shared by its images (batch 1: once per image).
    weight_bytes: the bytes the weights are read as, when a kernel reads them in a form other than the
    layers' (ONNX Runtime's MatMulNBits: the packed codes and scales, deploy.held_bytes); with skip_zeros
    they describe *hypothetical* hardware (EIE, Han et al. 2016) that reads the compressed file and
    multiplies only the non-zero weights. By default the weights are read as the layers hold them and every
    weight is multiplied (dense hardware).
    Returns picojoule components, total_nj (per image), the level the weights come from and the
    assumptions as text. No side effects.
    """
    validate.positive_int("batch_size", batch_size)
    if weight_bytes is not None:
        validate.positive_int("weight_bytes", weight_bytes)
    layers = _linear_layers(model)
    if not layers:
        raise TypeError(f"model of type {type(model).__name__} has no Linear layers")
    compute = held_bytes = activation_bytes = 0.0
    for layer in layers:
        kind = arithmetic(layer)
        width = 1 if kind == "int8" else 4
        macs = layer.in_features * layer.out_features
        if skip_zeros:
            macs = _nonzero_weights(layer, macs)
        compute += macs * MAC_PJ[kind]
        held_bytes += layer.in_features * layer.out_features * width + layer.out_features * 4
        activation_bytes += layer.in_features * width + layer.out_features * 4
    weight_bytes = int(held_bytes) if weight_bytes is None else weight_bytes
    level, pj_per_byte = memory_level(weight_bytes)
    _, activation_pj_per_byte = memory_level(activation_bytes)
    weights = weight_bytes * pj_per_byte / batch_size
    activations = activation_bytes * activation_pj_per_byte
    kinds = sorted({arithmetic(layer) for layer in layers})
    return {"compute_pj": compute, "weights_pj": weights, "activations_pj": activations,
            "total_nj": (compute + weights + activations) / 1000, "weight_level": level,
            "assumptions": (f"estimate, Horowitz 45 nm; {'/'.join(kinds)} arithmetic"
                            f"{', zeros skipped' if skip_zeros else ', dense'}; {weight_bytes:,} weight bytes from the "
                            f"{level}, read once per batch of {batch_size}")}


def _nonzero_weights(layer: nn.Module, dense_macs: int) -> int:
    weight = getattr(layer, "weight", None)
    weight = getattr(weight, "qdata", weight)   # torchao's Int8Tensor cannot count its zeros; its codes can
    if weight is None or callable(weight) or not hasattr(weight, "count_nonzero"):
        return dense_macs  # the legacy int8 backend hides its weights: count them all
    return int(weight.count_nonzero())
