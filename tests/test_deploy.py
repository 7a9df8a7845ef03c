"""deploy: ONNX files of every kind, their bytes, their logits against the PyTorch model, clear refusals."""

import builtins
import os

import numpy as np
import onnx
import pytest
import torch

from tutorial_utils import deploy, models, pruning, quantization, training

# max |logit difference| to the QAT model
TOLERANCE = {"float32": 1e-4, "4bit": 1e-4, "int8-pixels": 1e-4, "int8-dynamic": 0.5, "int8-static": 1.0}


@pytest.fixture(scope="module")
def final() -> torch.nn.Sequential:
    training.setup(0)
    model = models.mlp([784, 32, 10])
    pruning.apply_masks_(model, pruning.magnitude_masks(model, 0.8, scope="global"))
    return quantization.quantize_model(model, 4)


@pytest.mark.parametrize("kind", deploy.KINDS)
def test_every_kind_runs_with_the_logits_of_its_source(kind, final, tmp_path, splits):
    source = final if kind in deploy.CODE_KINDS else quantization.dequantize_model(final)
    path = tmp_path / f"final-{kind}.onnx"
    size = deploy.export(source, path, kind, calibration=splits.x_train[:300] if kind == "int8-static" else None)
    assert size == os.path.getsize(path) == deploy.onnx_bytes(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]   # no scratch files left
    deployed = deploy.runtime_model(path, threads=1)
    x = splits.x_test[:200]
    difference = (deployed(x) - final(x)).abs().max().item()
    assert difference <= TOLERANCE[kind]
    agreement = (deployed(x).argmax(1) == final(x).argmax(1)).float().mean().item()
    assert agreement >= (1.0 if kind in ("float32", *deploy.CODE_KINDS) else 0.97)
    assert deploy.latency_ms(deployed, 4, repeats=3, warmup=1) > 0


def test_files_of_codes_are_smaller_than_int8_and_float32(final, tmp_path, splits):
    sizes = {kind: deploy.export(final if kind in deploy.CODE_KINDS else quantization.dequantize_model(final),
                                 tmp_path / f"{kind}.onnx", kind,
                                 calibration=splits.x_train[:100] if kind == "int8-static" else None)
             for kind in deploy.KINDS}
    assert sizes["4bit"] < sizes["int8-dynamic"] < sizes["float32"]
    # both hold the codes two per byte; int8-pixels keeps one scale per row, MatMulNBits one per block of 64
    assert sizes["int8-pixels"] < sizes["4bit"]


def test_int8_pixels_file_takes_8bit_images_and_refuses_others(final, tmp_path, splits):
    path = tmp_path / "pixels.onnx"
    deploy.export(final, path, "int8-pixels")
    deployed = deploy.runtime_model(path)
    assert deployed.pixels and (deployed.mean, deployed.std) == (0.1307, 0.3081)
    pixels = deployed.to_pixels(splits.x_test[:50])
    assert pixels.dtype == np.uint8 and pixels.max() == 255 and pixels.min() == 0
    torch.testing.assert_close(torch.from_numpy(pixels).float(), (splits.x_test[:50] * 0.3081 + 0.1307) * 255,
                               rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match=r"8-bit images.*0\.0786 pixel off that grid"):
        deployed(splits.x_test[:4] + 0.001)        # 0.001 * 0.3081 * 255 = 0.0786 pixel: not an image any more
    with pytest.raises(ValueError, match="NaN or infinity"):
        deployed(torch.tensor([[float("nan")] + [0.0] * 783]))
    with pytest.raises(ValueError, match="pixels from -1 to"):
        deployed(torch.full((2, 784), (-1 / 255 - 0.1307) / 0.3081))
    with pytest.raises(ValueError, match="needs a first layer of symmetric uniform codes"):
        deploy.export(quantization.dequantize_model(final), tmp_path / "float.onnx", "int8-pixels")
    assert not (tmp_path / "float.onnx").exists()


def test_external_data_files_are_counted(tmp_path):
    proto = onnx.load_from_string(deploy.onnx_export.to_onnx(models.mlp([784, 64, 10])).SerializeToString())
    path = tmp_path / "external.onnx"
    onnx.save_model(proto, str(path), save_as_external_data=True, location="external.onnx.data", size_threshold=0)
    assert (tmp_path / "external.onnx.data").exists()
    assert deploy.onnx_bytes(path) == path.stat().st_size + (tmp_path / "external.onnx.data").stat().st_size


def test_bad_inputs_are_refused_and_leave_no_file(final, tmp_path, splits):
    path = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match=r"calibration must be a tensor of shape \(n >= 1, 784\).*\(10, 28\)"):
        deploy.export(quantization.dequantize_model(final), path, "int8-static", calibration=torch.zeros(10, 28))
    with pytest.raises(ValueError, match="calibration is used only with kind='int8-static'"):
        deploy.export(final, path, "4bit", calibration=splits.x_train[:10])
    with pytest.raises(ValueError, match="kind"):
        deploy.export(final, path, "int4")
    with pytest.raises(TypeError, match=r"model\[1\] is Tanh"):
        deploy.export(torch.nn.Sequential(torch.nn.Linear(784, 4), torch.nn.Tanh()), path)
    with pytest.raises(ValueError, match="weights='4bit' needs QuantizedLinear layers"):   # would be float32 silently
        deploy.export(quantization.dequantize_model(final), path, "4bit")
    with pytest.raises(ValueError, match="calibration holds 784 NaN or infinite values"):   # not ORT's 'scale issue'
        deploy.export(quantization.dequantize_model(final), path, "int8-static",
                      calibration=torch.cat([torch.full((1, 784), float("nan")), splits.x_train[:9]]))
    with pytest.raises(ValueError, match=r"model\[0\] rounds its input to act_bits=8"):   # not silently dropped
        deploy.export(quantization.quantize_model(quantization.dequantize_model(final), 4, act_bits=8,
                                                  calibration=splits.x_train[:64]), path, "float32")
    with pytest.raises(ValueError, match=r"kinds\[\]='fp16' must be one of"):   # checked before the first file
        deploy.export_all(final, tmp_path, kinds=("float32", "fp16"))
    with pytest.raises(ValueError, match="block_size=32.0 must be an integer >= 16"):
        deploy.onnx_export.to_onnx(final, weights="4bit", block_size=32.0)
    with pytest.raises(ValueError, match="models is empty"):
        deploy.compare_latency({}, 1, threads=1)
    assert list(tmp_path.iterdir()) == []
    deploy.export(final, path, "4bit")
    deployed = deploy.runtime_model(path)
    with pytest.raises(ValueError, match=r"x must have shape \(batch >= 1, 784\); got \(0, 784\)"):
        deployed(torch.zeros(0, 784))
    with pytest.raises(ValueError, match="batch_size"):
        deploy.latency_ms(deployed, 0)
    with pytest.raises(ValueError, match="threads"):
        deploy.runtime_model(path, threads=0)
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        deploy.runtime_model(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="provider"):
        deploy.runtime_model(path, provider="tpu")


def test_a_missing_runtime_names_the_install_command(monkeypatch, final, tmp_path):
    real_import = builtins.__import__

    def without_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnxruntime)
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e '\.\[deploy\]'"):
        deploy.export(final, tmp_path / "m.onnx", "4bit")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", ["float32", "4bit", "int8-pixels"])
def test_cuda_provider_when_installed(kind, final, tmp_path, splits):
    import onnxruntime
    path = tmp_path / "m.onnx"
    deploy.export(final if kind in deploy.CODE_KINDS else quantization.dequantize_model(final), path, kind)
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
            deploy.runtime_model(path, provider="cuda")
        pytest.skip("the CPU onnxruntime refuses provider='cuda' as it should; the CUDA provider itself needs "
                    "onnxruntime-gpu (pip install onnxruntime-gpu)")
    x = splits.x_test[:8]          # 8-bit images: the int8-pixels file takes nothing else
    deployed = deploy.runtime_model(path, provider="cuda")
    assert deployed.session.get_providers()[0] == "CUDAExecutionProvider"   # not a quiet fallback to the CPU
    torch.testing.assert_close(deployed(x), final(x), rtol=1e-3, atol=1e-3)
    assert deploy.latency_ms(deployed, 4, repeats=3, warmup=1) > 0


def test_the_names_other_code_uses(final, tmp_path, splits):
    path = tmp_path / "m.onnx"
    assert deploy.export_onnx(final, path, "4bit") == path.stat().st_size
    session = deploy.session(path)
    assert session.get_inputs()[0].shape == ["batch", 784]
    logits = session.run(None, {"x": splits.x_test[:3].numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(logits), final(splits.x_test[:3]), rtol=1e-5, atol=1e-4)


class _Untouchable:
    """Stands in for a RuntimeModel's own session: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the model's own session was used ({name}); latency_ms must time a fresh one")


def test_latency_is_timed_on_a_fresh_session_of_the_same_file(final, tmp_path):
    path = tmp_path / "m.onnx"
    deploy.export(final, path, "int8-pixels")
    deployed = deploy.runtime_model(path, threads=2, spin=False)
    deployed.session = _Untouchable()    # pool threads of a session that has run keep waking up to spin
    assert deploy.latency_ms(deployed, 3, repeats=2, warmup=0) > 0


def test_latency_records_the_call_it_made(final, tmp_path, monkeypatch):
    """Guards: a result file says how ONNX Runtime was called; a fallback to the wrapper must show there."""
    path = tmp_path / "m.onnx"
    deploy.export(final, path, "4bit")
    deployed = deploy.runtime_model(path)
    assert deployed.timed_call is None
    deploy.latency_ms(deployed, 2, repeats=2, warmup=0)
    assert deployed.timed_call == "direct"
    real = deploy.ort_session.bound_call

    def falling_back(session, x, *, call):
        run = real(session, x, call="wrapper")    # what bound_call does where the C++ call is refused
        return run
    monkeypatch.setattr(deploy.ort_session, "bound_call", falling_back)
    deploy.latency_ms(deployed, 2, repeats=2, warmup=0)
    assert deployed.timed_call == "wrapper"


def test_compare_latency_rests_between_models_and_reports_ratios(final, tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    deploy.export(final, path, "4bit")
    rests = []
    monkeypatch.setattr(deploy.time, "sleep", rests.append)
    result = deploy.compare_latency({"torch": final, "onnx": deploy.runtime_model(path)}, 2, threads=1, rounds=2,
                                    repeats=2, settle_s=0.25)
    assert rests == [0.25] * 4 and set(result) == {"torch", "onnx"}
    assert result["torch"]["speedup"] == 1.0 and result["onnx"]["latency_ms"] > 0
    rests.clear()
    deploy.compare_latency({"torch": final}, 2, threads=1, rounds=2, repeats=2)      # one thread: no pool to wait for
    deploy.compare_latency({"torch": final}, 2, threads=2, rounds=1, repeats=2)
    assert rests == [0.0, 0.0, 0.1]
    with pytest.raises(ValueError, match="settle_s"):
        deploy.compare_latency({"torch": final}, 2, threads=1, settle_s=-1)


def test_export_gives_the_model_back_in_the_mode_it_came_in(tmp_path):
    """Guards: exporting traces the model in eval mode; a model in the middle of training (dropout on) must not
    come back switched to eval, which silently turns its dropout off for the rest of training."""
    model = models.mlp([784, 16, 10], dropout=0.3).train()
    deploy.export(model, tmp_path / "m.onnx", "float32")
    assert model.training and all(m.training for m in model.modules())
    deploy.export(model.eval(), tmp_path / "e.onnx", "float32")
    assert not model.training


def test_held_bytes_count_the_constants_as_the_runtime_holds_them(final, tmp_path):
    dense = quantization.dequantize_model(final)
    deploy.export(dense, tmp_path / "f.onnx", "float32")
    assert deploy.held_bytes(tmp_path / "f.onnx") == 4 * sum(p.numel() for p in dense.parameters())
    deploy.export(final, tmp_path / "q.onnx", "4bit")
    # MatMulNBits, by hand: per row, blocks of packed codes (two per byte) and one float32 scale per block,
    # then the float32 bias. 784 -> 32: 13 blocks of 64 (32 bytes + 4), 32 rows; 32 -> 10: 1 block of 32.
    assert deploy.held_bytes(tmp_path / "q.onnx") == 32 * 13 * (32 + 4) + 4 * 32 + 10 * 1 * (16 + 4) + 4 * 10
