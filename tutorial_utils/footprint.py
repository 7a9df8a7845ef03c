"""What a model costs, counted honestly: parameters, non-zeros, bytes of a real file, multiply-accumulates.

Bytes are the size of a file actually written, never a formula alone; MACs come from torch's own FLOP
counter; a pruned (zero) weight is still a parameter, stored and multiplied by dense hardware.
`measure` re-exports every function here (measure.macs, measure.storage_bytes, ...); `deploy` the bytes of
ONNX files (deploy.onnx_bytes, deploy.held_bytes).

Example:
    >>> footprint.count_parameters(models.teacher())        # 784*128 + 128 + 128*10 + 10
    101770
    >>> footprint.macs(models.teacher())                    # 784*128 + 128*10
    101632
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import warnings

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tutorial_utils import files, models, validate


def _refuse_int8_backends(model: nn.Module, what: str) -> None:
    """TypeError for PyTorch's int8 backends (int8.to_backend): torch's FLOP counter does not see their
    kernels, the legacy backend hides its weights in packed parameters, and torchao's Int8Tensor cannot
    count its zeros, so a count would be 0 or a crash deep inside torchao."""
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)   # legacy backends: a method; torchao: a Parameter of Int8Tensor
        tensor = isinstance(weight, torch.Tensor)
        if type(module).__module__.startswith("torch.ao.nn.quantized") or (tensor and type(weight.data) is not torch.Tensor):
            held = f" holding a {type(weight.data).__name__} weight" if tensor else ""
            raise TypeError(f"{what} cannot count an int8 backend's layer (model.{name or 'root'} is a "
                            f"{type(module).__module__}.{type(module).__name__}{held}); count the float or QAT model "
                            f"it came from, and pass the value (Ledger.measure(..., {what}=...))")


def _weights_and_biases(model: nn.Module, what: str) -> list[torch.Tensor]:
    """Parameters, plus weight/bias buffers of layers that keep them as buffers (quantized layers)."""
    _refuse_int8_backends(model, what)
    tensors = [p for p in model.parameters()]
    tensors += [b for name, b in model.named_buffers() if name.rsplit(".", 1)[-1] in ("weight", "bias")]
    return tensors


def count_parameters(model: nn.Module) -> int:
    """Number of scalars in all weights and biases: sum of numel() (quantized layers included)."""
    return sum(t.numel() for t in _weights_and_biases(model, "parameters"))


def count_nonzeros(model: nn.Module) -> int:
    """Number of non-zero weights and biases (a pruned weight still counts as a parameter)."""
    return sum(int(torch.count_nonzero(t).item()) for t in _weights_and_biases(model, "nonzeros"))


def storage_bytes(model: nn.Module, path: str | os.PathLike | None = None) -> int:
    """Bytes of the model's state_dict written with torch.save: to `path` if given, else a temporary file.

    This is the fp32 baseline every compression ratio is measured against: a real file, not a formula.
    """
    state = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in model.state_dict().items()}
    if path is not None:
        return files.atomic_write(path, lambda f: torch.save(state, f))
    with tempfile.TemporaryDirectory() as tmp:
        return files.atomic_write(os.path.join(tmp, "model.pt"), lambda f: torch.save(state, f))


def csr_bytes(model: nn.Module, path: str | os.PathLike) -> int:
    """Bytes of torch.save'ing every Linear weight as `to_sparse_csr()` (int64 indices) plus biases.

    The sparse format most people reach for first. The format needs 8 bytes of column index + 4 of value
    per non-zero (larger than dense float32 until a layer is more than two-thirds zeros), but this file
    holds about 20: to_sparse_csr's column indices are a view into a (2, nnz) int64 tensor, and torch.save
    writes a view's whole storage. That is what saving it as most people do costs, so it is what is measured.
    Side effects: writes `path` (atomically).
    """
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            with warnings.catch_warnings():  # "sparse CSR support is in beta": true, and not the point here
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                state[f"{name}.weight"] = module.weight.detach().cpu().to_sparse_csr()
            state[f"{name}.bias"] = module.bias.detach().cpu()
    return files.atomic_write(path, lambda f: torch.save(state, f))


def macs(model: nn.Module, *, in_features: int = 784) -> int:
    """Multiply-accumulates of one sample's forward pass, counted by torch.utils.flop_counter (MACs = FLOPs / 2).

    For a Linear layer n_in -> n_out this is n_in * n_out. Zeros are counted: dense hardware
    multiplies by a pruned weight all the same.
    """
    validate.in_features(model, in_features)
    _refuse_int8_backends(model, "macs")
    counter = FlopCounterMode(display=False)
    device = models.device_of(model)
    with counter, torch.no_grad():
        model(torch.zeros(1, in_features, device=device))
    return counter.get_total_flops() // 2


def onnx_bytes(path: str | os.PathLike) -> int:
    """Bytes on disk of an ONNX model: the .onnx file plus every external data file it names."""
    import onnx
    path = pathlib.Path(path)
    proto = onnx.load(str(path), load_external_data=False)
    locations = {entry.value for tensor in proto.graph.initializer for entry in tensor.external_data
                 if entry.key == "location"}
    return path.stat().st_size + sum((path.parent / location).stat().st_size for location in locations)


def held_bytes(path: str | os.PathLike) -> int:
    """Bytes of the constants an ONNX model's graph holds: weights, scales, zero points, biases.

    What a kernel that computes on the stored form reads (MatMulNBits decodes its packed 4-bit codes as it
    multiplies), hence the weight bytes of its energy estimate. Packed tensors count as stored (raw_data).
    """
    import onnx
    from onnx import numpy_helper
    proto = onnx.load(str(path))
    return sum(len(t.raw_data) if t.raw_data else numpy_helper.to_array(t).nbytes for t in proto.graph.initializer)
