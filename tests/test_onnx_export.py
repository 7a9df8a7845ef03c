"""onnx_export: graphs that ONNX Runtime runs with the same logits as the PyTorch model they come from."""

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from tutorial_utils import compaction, models, onnx_export, pruning, quantization


def _run(proto, x: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def _qat_student(bits: int = 4, sparsity: float = 0.9) -> nn.Sequential:
    model = models.mlp([784, 64, 10])
    pruning.apply_masks_(model, pruning.magnitude_masks(model, sparsity, scope="global"))
    return quantization.quantize_model(model, bits)


def test_float_graph_uses_matmul_not_gemm_and_has_a_dynamic_batch():
    model = models.mlp([784, 32, 16, 10])
    proto = onnx_export.to_onnx(model)
    assert onnx_export.op_types(proto) == ["MatMul", "Add", "Relu", "MatMul", "Add", "Relu", "MatMul", "Add"]
    for batch in (1, 7, 256):   # one graph, any batch size
        x = torch.rand(batch, 784)
        torch.testing.assert_close(_run(proto, x), model(x).detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_4bit_graph_computes_the_quantized_model_exactly_from_its_codes(bits):
    # 1-bit codes are +-1, with no zero for a pruned weight: that case is a dense model
    model = _qat_student(bits) if bits > 1 else quantization.quantize_model(models.mlp([784, 64, 10]), 1)
    proto = onnx_export.to_onnx(model, weights="4bit")
    assert onnx_export.op_types(proto).count("MatMulNBits") == 2
    x = torch.rand(64, 784)
    torch.testing.assert_close(_run(proto, x), model(x), rtol=1e-5, atol=1e-4)


def test_accuracy_level_4_is_written_to_each_matmulnbits_and_stays_close():
    model = _qat_student()
    proto = onnx_export.to_onnx(model, weights="4bit", accuracy_level=4)
    levels = [a.i for n in proto.graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "accuracy_level"]
    assert levels == [4, 4]
    x = torch.rand(64, 784)
    exact, rounded = model(x).detach(), _run(proto, x)
    # whether the runtime rounds depends on the CPU's kernels; where it does, the result stays close
    assert (rounded - exact).abs().max() < 0.05 * exact.abs().max()


def test_4bit_graph_of_a_compact_model_gathers_the_kept_inputs():
    model = _qat_student()
    small = compaction.compact(model)
    proto = onnx_export.to_onnx(small, weights="4bit")
    assert onnx_export.op_types(proto)[0] == "Gather"
    x = torch.rand(5, 784)
    torch.testing.assert_close(_run(proto, x), model(x), rtol=1e-5, atol=1e-4)


def test_refusals_name_the_problem():
    with pytest.raises(TypeError, match=r"model\[1\] is Sigmoid"):
        onnx_export.to_onnx(nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2)))
    with pytest.raises(TypeError, match="nn.Sequential"):
        onnx_export.to_onnx(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="weights='int3'"):
        onnx_export.to_onnx(models.mlp([4, 2]), weights="int3")
    with pytest.raises(ValueError, match="bits=8"):
        onnx_export.to_onnx(quantization.quantize_model(models.mlp([16, 4, 2]), 8), weights="4bit")
    affine = quantization.quantize_model(models.mlp([16, 4, 2]), quantization.QuantConfig(bits=4, symmetric=False))
    with pytest.raises(ValueError, match="symmetric uniform codes"):
        onnx_export.to_onnx(affine, weights="4bit")
    with pytest.raises(ValueError, match="block_size=24"):
        onnx_export.to_onnx(_qat_student(), weights="4bit", block_size=24)
    with pytest.raises(ValueError, match=r"accuracy_level=7 must be an integer in 0..4"):
        onnx_export.to_onnx(_qat_student(), weights="4bit", accuracy_level=7)
    with pytest.raises(ValueError, match=r"accuracy_level=True must be an integer in 0..4"):
        onnx_export.to_onnx(_qat_student(), weights="4bit", accuracy_level=True)
    # settings of another kind of graph were ignored in silence
    with pytest.raises(ValueError, match=r"block_size, accuracy_level apply to weights='4bit' only; got "
                                         r"block_size=64, accuracy_level=0.* with weights='float32'"):
        onnx_export.to_onnx(_qat_student(), block_size=64)
    with pytest.raises(ValueError, match=r"mean, std, fused apply to weights='int8-pixels' only; .*mean=nan"):
        onnx_export.to_onnx(_qat_student(), weights="4bit", mean=float("nan"))
    with pytest.raises(ValueError, match=r"weights='int8-pixels' only; .*fused=False with weights='float32'"):
        onnx_export.to_onnx(_qat_student(), fused=False)


@pytest.mark.parametrize("weights", onnx_export.WEIGHTS)
def test_activation_rounding_is_refused_not_dropped(weights):
    # no graph writes the rounding of a layer's input onto its act_bits grid: a file would be another function
    model = quantization.quantize_model(models.mlp([784, 16, 10]), 4, act_bits=3, calibration=torch.rand(32, 784))
    model[0].act_bits = None                                   # only the second layer rounds its input
    with pytest.raises(ValueError, match=r"model\[2\] rounds its input to act_bits=3 bits"):
        onnx_export.to_onnx(model, weights=weights)


def _pixels(batch: int, features: int = 784) -> torch.Tensor:
    return torch.randint(0, 256, (batch, features), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


@pytest.mark.parametrize("bits, per_channel", [(4, True), (7, True), (2, False)])
def test_fold_pixels_is_the_layer_on_normalised_pixels(bits, per_channel):
    layer = quantization.quantize_model(models.mlp([784, 12, 10]), bits, per_channel=per_channel)[0]
    codes_t, scale, bias = onnx_export.fold_pixels(layer, mean=0.2, std=0.5)
    assert codes_t.dtype == np.int8 and codes_t.shape == (784, 12) and scale.shape == bias.shape == (12,)
    p = _pixels(5)
    integer = torch.from_numpy(p.numpy().astype(np.int64) @ codes_t.astype(np.int64))    # (5, 12), exact
    folded = integer.double() * torch.from_numpy(scale).double() + torch.from_numpy(bias).double()
    x = (p.double() / 255 - 0.2) / 0.5                                                   # what the model sees
    reference = x @ layer.weight.double().T + layer.bias.double()
    torch.testing.assert_close(folded, reference, rtol=1e-6, atol=1e-6)    # float32 scale and bias
    torch.testing.assert_close(folded.float(), layer(x.float()), rtol=1e-5, atol=1e-5)


def test_int8_pixels_graph_takes_uint8_and_computes_the_qat_model(tmp_path):
    model = _qat_student(4)
    proto = onnx_export.to_onnx(model, weights="int8-pixels", mean=0.1307, std=0.3081)
    assert onnx_export.op_types(proto) == ["Cast", "MatMulIntegerToFloat", "Relu", "Cast", "Mul", "MatMul", "Add"]
    assert proto.graph.input[0].type.tensor_type.elem_type == 2      # onnx.TensorProto.UINT8
    stored = {t.name: t for t in proto.graph.initializer}
    assert stored["codes0"].data_type == onnx.TensorProto.INT4 and len(stored["codes0"].raw_data) == 784 * 64 // 2
    assert np.array_equal(onnx.numpy_helper.to_array(stored["codes0"]), model[0].codes.T.numpy())
    assert np.array_equal(onnx.numpy_helper.to_array(stored["codes2"]), model[2].codes.T.numpy())
    assert {p.key: p.value for p in proto.metadata_props} == {"pixel_mean": "0.1307", "pixel_std": "0.3081"}
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    p = _pixels(64)
    logits = torch.from_numpy(session.run(None, {"x": p.numpy()})[0])
    torch.testing.assert_close(logits, model((p.float() / 255 - 0.1307) / 0.3081), rtol=1e-5, atol=1e-4)
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    loaded = onnx.load(str(tmp_path / "loaded.onnx"))        # the graph as the session runs it
    # the codes' Casts and the second layer's weight rebuild ran once, at load: three kernels per call
    assert onnx_export.op_types(loaded) == ["MatMulIntegerToFloat", "Relu", "Gemm"]


def test_int8_pixels_in_standard_operators_computes_the_fused_layer():
    model = _qat_student(4)
    standard = onnx_export.to_onnx(model, weights="int8-pixels", fused=False)
    assert onnx_export.op_types(standard)[:6] == ["Cast", "MatMulInteger", "Cast", "Mul", "Add", "Relu"]
    assert all(node.domain == "" for node in standard.graph.node)          # any ONNX runtime can run it
    p = _pixels(32).numpy()
    logits = [onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
              .run(None, {"x": p})[0] for proto in (standard, onnx_export.to_onnx(model, weights="int8-pixels"))]
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-6, atol=1e-5)


def test_int8_pixels_refuses_what_it_cannot_fold():
    float_model = models.mlp([784, 8, 10])
    assert onnx_export.takes_pixels(quantization.quantize_model(float_model, 4))
    assert not onnx_export.takes_pixels(float_model) and not onnx_export.takes_pixels(nn.Linear(3, 2))
    assert not onnx_export.takes_pixels(quantization.quantize_model(float_model, 4, symmetric=False))
    with pytest.raises(ValueError, match="symmetric uniform codes of at most 7 bits.*found Linear"):
        onnx_export.to_onnx(float_model, weights="int8-pixels")
    asymmetric = quantization.quantize_model(float_model, 4, symmetric=False)
    with pytest.raises(ValueError, match="symmetric=False"):
        onnx_export.to_onnx(asymmetric, weights="int8-pixels")
    with pytest.raises(ValueError, match="bits=8"):     # 2 * 255 * 127 overflows the int16 pairs of non-VNNI CPUs
        onnx_export.fold_pixels(quantization.quantize_model(float_model, 8)[0])
    wide = quantization.quantize_model(models.mlp([140_000, 1]), 7)[0]       # 140,000 * 255 * 63 > 2^31
    with pytest.raises(ValueError, match="past int32"):
        onnx_export.fold_pixels(wide)
    with pytest.raises(ValueError, match="act_bits=8"):
        onnx_export.to_onnx(quantization.quantize_model(float_model, 4, act_bits=8, calibration=torch.rand(16, 784)),
                            weights="int8-pixels")
    with pytest.raises(ValueError, match=r"std=0 must be a finite number > 0"):
        onnx_export.to_onnx(quantization.quantize_model(float_model, 4), weights="int8-pixels", std=0)
    compacted = nn.Sequential(compaction.SelectInputs(torch.arange(100), 784),
                              *quantization.quantize_model(models.mlp([100, 8, 10]), 4))
    with pytest.raises(ValueError, match="selects inputs first"):
        onnx_export.to_onnx(compacted, weights="int8-pixels")


@pytest.mark.parametrize("bits, stored", [(3, onnx.TensorProto.INT4), (7, onnx.TensorProto.INT8)])
def test_int8_pixels_stores_codes_in_4_bits_when_they_fit_odd_counts_too(bits, stored):
    model = quantization.quantize_model(models.mlp([9, 3, 5]), bits)       # 27 and 15 codes: odd counts
    proto = onnx_export.to_onnx(model, weights="int8-pixels", mean=0.0, std=1.0)
    initializers = {t.name: t for t in proto.graph.initializer}
    assert initializers["codes0"].data_type == initializers["codes2"].data_type == stored
    if stored == onnx.TensorProto.INT4:
        assert len(initializers["codes0"].raw_data) == 14                   # ceil(27 / 2) bytes
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    p = _pixels(16, features=9)
    logits = torch.from_numpy(session.run(None, {"x": p.numpy()})[0])
    torch.testing.assert_close(logits, model(p.float() / 255), rtol=1e-5, atol=1e-5)
