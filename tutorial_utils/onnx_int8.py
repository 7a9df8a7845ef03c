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


def quantize(float_path: str | os.PathLike, out_path: str | os.PathLike, kind: str, *,
             calibration: torch.Tensor | None = None) -> None:
    """Write the int8 version (`kind`, see KINDS) of the float32 ONNX file at float_path to out_path.

    int8-static needs `calibration` (images of the model's input shape). Side effects: writes out_path, whole
    or not at all (ONNX Runtime writes into a scratch folder beside it; the file is renamed into place).
    """
    kind = validate.choice("kind", kind, KINDS)
    if kind == "int8-static" and (not isinstance(calibration, torch.Tensor) or calibration.ndim != 2
                                  or len(calibration) == 0):
        got = tuple(calibration.shape) if isinstance(calibration, torch.Tensor) else calibration
        raise ValueError(f"calibration must be images of shape (n >= 1, features) for kind='int8-static'; got {got!r}")
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
