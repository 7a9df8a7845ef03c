"""int8 ONNX files from a float32 one, by ONNX Runtime's own quantizers.

    quantize(float_path, out_path, "int8-dynamic")               weights int8 per output channel;
                                                                  activations rounded per batch at run time
    quantize(float_path, out_path, "int8-static", calibration=x)  QDQ graph: activation ranges fixed on x

Weights get 7-bit codes (-64..64, `reduce_range`): ONNX Runtime multiplies uint8 activations by int8
weights, and on CPUs without VNNI its kernel adds each pair of products in 16 bits, where 2 x 255 x 127
= 64,770 overflows 32,767 but 2 x 255 x 64 = 32,640 does not (int8.kernel_saturates probes the same
problem in PyTorch's kernel). The file then computes the same on every CPU, at the price of a weight step
twice as coarse where VNNI would have been exact with 8 bits.

Static quantization stores a range per activation, measured on calibration images (training images,
never test ones); dynamic quantization measures the input's range on every call, which costs a pass
over the input (min, max, round) but needs no calibration set.

Example:
    >>> quantize(folder / "float32.onnx", folder / "int8.onnx", "int8-static", calibration=splits.x_train[:1000])
"""

from __future__ import annotations

import logging
import os
import pathlib
import tempfile

import torch

from tutorial_utils import validate

KINDS = ("int8-dynamic", "int8-static")


class Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over a tensor of images x (n, features), in batches of 256."""

    def __init__(self, x: torch.Tensor) -> None:
        self.batches = iter(x.detach().float().cpu().numpy()[i:i + 256] for i in range(0, len(x), 256))

    def get_next(self) -> dict | None:
        batch = next(self.batches, None)
        return None if batch is None else {"x": batch}


def check_calibration(kind: str, calibration: object, in_features: int) -> None:
    """Raise ValueError unless `calibration` suits `kind`: finite images (n >= 1, in_features) for int8-static
    (ONNX Runtime's own check says only 'scale issue'), None for every other kind."""
    if kind != "int8-static":
        if calibration is not None:
            raise ValueError(f"calibration is used only with kind='int8-static', not kind={kind!r}")
        return
    if not isinstance(calibration, torch.Tensor) or calibration.ndim != 2 or len(calibration) == 0 \
            or calibration.shape[1] != in_features:
        got = tuple(calibration.shape) if isinstance(calibration, torch.Tensor) else type(calibration).__name__
        raise ValueError(f"calibration must be a tensor of shape (n >= 1, {in_features}) of training images "
                         f"for kind='int8-static'; got {got}")
    validate.finite("calibration", calibration)


def quantize(float_path: str | os.PathLike, out_path: str | os.PathLike, kind: str, *,
             calibration: torch.Tensor | None = None) -> None:
    """Write the int8 version (`kind`, see KINDS) of the float32 ONNX file at float_path to out_path.

    int8-static needs `calibration` (images of the model's input shape; check_calibration). Side effects:
    writes out_path, whole or not at all (ONNX Runtime writes into a scratch folder beside it; the file is
    renamed into place).
    """
    kind = validate.choice("kind", kind, KINDS)
    import onnx
    graph_input = onnx.load(str(float_path), load_external_data=False).graph.input[0]
    check_calibration(kind, calibration, graph_input.type.tensor_type.shape.dim[1].dim_value)
    out_path = pathlib.Path(out_path)
    from onnxruntime import quantization as q
    # The quantizers log a suggestion to run their shape-inference pre-processing on the root logger; our
    # graphs declare every shape, so it is noise here. The root logger's level is restored after.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quantize-") as scratch:
            partial = pathlib.Path(scratch) / out_path.name
            if kind == "int8-dynamic":
                q.quantize_dynamic(str(float_path), str(partial), weight_type=q.QuantType.QInt8, per_channel=True,
                                   reduce_range=True)
            else:
                q.quantize_static(str(float_path), str(partial), Calibration(calibration),
                                  quant_format=q.QuantFormat.QDQ, activation_type=q.QuantType.QUInt8,
                                  weight_type=q.QuantType.QInt8, per_channel=True, reduce_range=True)
            os.replace(partial, out_path)
    finally:
        root.setLevel(level)
