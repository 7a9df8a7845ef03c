"""onnx_int8: ONNX Runtime's quantizers on our float32 graphs; the calibration reader; clear refusals."""

import pathlib

import onnx
import onnx.numpy_helper
import pytest
import torch

from tutorial_utils import models, onnx_export, onnx_int8


@pytest.fixture()
def float_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "float32.onnx"
    path.write_bytes(onnx_export.to_onnx(models.mlp([20, 8, 3])).SerializeToString())
    return path


def test_calibration_reader_yields_batches_of_256_then_none():
    reader = onnx_int8.Calibration(torch.rand(600, 20))
    sizes = []
    while (batch := reader.get_next()) is not None:
        sizes.append(batch["x"].shape)
    assert sizes == [(256, 20), (256, 20), (88, 20)]


# dynamic: integer MatMuls replace the float ones; static QDQ: the float MatMul stays, wrapped in
# QuantizeLinear / DequantizeLinear pairs that the runtime fuses into integer kernels
@pytest.mark.parametrize("kind, present, absent", [
    ("int8-dynamic", {"DynamicQuantizeLinear", "MatMulInteger"}, "MatMul"),
    ("int8-static", {"QuantizeLinear", "DequantizeLinear"}, "MatMulInteger")])
def test_each_kind_writes_its_int8_graph(kind, present, absent, float_file, tmp_path):
    out = tmp_path / "int8.onnx"
    onnx_int8.quantize(float_file, out, kind, calibration=torch.rand(50, 20) if kind == "int8-static" else None)
    ops = onnx_export.op_types(onnx.load(str(out)))
    assert present <= set(ops) and absent not in ops
    weights = [onnx.numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.name.endswith("_quantized")]
    assert len(weights) == 2                                  # both layers' weights are stored as int8
    # 7-bit codes: a pair of uint8 x int8 products stays inside 16 bits on CPUs without VNNI
    assert all(w.min() >= -64 and w.max() <= 64 for w in weights) and max(abs(w).max() for w in weights) == 64


def test_bad_kind_or_missing_calibration_is_refused(float_file, tmp_path):
    with pytest.raises(ValueError, match="kind='int4' must be one of"):
        onnx_int8.quantize(float_file, tmp_path / "o.onnx", "int4")
    with pytest.raises(ValueError, match=r"calibration must be a tensor of shape \(n >= 1, 20\) of training "
                                         r"images for kind='int8-static'; got NoneType"):
        onnx_int8.quantize(float_file, tmp_path / "o.onnx", "int8-static")
    with pytest.raises(ValueError, match=r"got \(20,\)"):
        onnx_int8.quantize(float_file, tmp_path / "o.onnx", "int8-static", calibration=torch.rand(20))
    # checked here too, not only by deploy.export: the graph's own input width, values ONNX Runtime can range
    with pytest.raises(ValueError, match=r"shape \(n >= 1, 20\).*got \(8, 21\)"):
        onnx_int8.quantize(float_file, tmp_path / "o.onnx", "int8-static", calibration=torch.rand(8, 21))
    with pytest.raises(ValueError, match="calibration holds 1 NaN or infinite value"):
        onnx_int8.quantize(float_file, tmp_path / "o.onnx", "int8-static",
                           calibration=torch.cat([torch.full((1, 20), 0.5).index_fill(1, torch.tensor([3]), float("inf")),
                                                  torch.rand(7, 20)]))
    with pytest.raises(ValueError, match="calibration is used only with kind='int8-static', not kind='int8-dynamic'"):
        onnx_int8.quantize(float_file, tmp_path / "o.onnx", "int8-dynamic", calibration=torch.rand(8, 20))
    assert not (tmp_path / "o.onnx").exists()


def test_a_failed_quantization_leaves_no_file(float_file, tmp_path, monkeypatch):
    """Guards: ONNX Runtime's quantizer writes its output path as it goes; quantize writes in a scratch folder
    and renames, so a failure leaves neither a partial out_path nor the scratch folder."""
    from onnxruntime import quantization as q

    def fails_half_way(model_input, model_output, **kwargs):
        pathlib.Path(model_output).write_bytes(b"half an onnx file")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(q, "quantize_dynamic", fails_half_way)
    with pytest.raises(RuntimeError, match="interrupted"):
        onnx_int8.quantize(float_file, tmp_path / "o.onnx", "int8-dynamic")
    assert [p.name for p in tmp_path.iterdir() if p.name != float_file.name] == []
