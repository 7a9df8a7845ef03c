"""ort_session: sessions with the tutorial's options, and a bound call that runs the graph both ways."""

import numpy as np
import pytest
import torch

from tutorial_utils import deploy, models, ort_session, training


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    training.setup(0)
    model = models.mlp([784, 16, 10]).eval()
    path = tmp_path_factory.mktemp("ort") / "m.onnx"
    deploy.export(model, path, "float32")
    return path, model


def test_a_session_has_the_threads_and_spinning_asked_for(onnx_file):
    path, _ = onnx_file
    options = ort_session.session(path, threads=2, spin=False).get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert ort_session.session(path).get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize("call", ort_session.CALLS)
def test_both_calls_run_the_graph_on_the_bound_input(onnx_file, call):
    path, model = onnx_file
    x = np.random.default_rng(1).standard_normal((3, 784), dtype=np.float32)
    run = ort_session.bound_call(ort_session.session(path), x, call=call)
    assert run() is None and run.call == call
    torch.testing.assert_close(torch.from_numpy(run.binding.copy_outputs_to_cpu()[0]), model(torch.from_numpy(x)),
                               rtol=1e-5, atol=1e-5)


def test_the_direct_call_skips_the_python_wrapper_and_the_wrapper_call_uses_it(onnx_file):
    path, _ = onnx_file
    session = ort_session.session(path)
    used = []
    public = session.run_with_iobinding
    session.run_with_iobinding = lambda *args: used.append(args) or public(*args)
    x = np.zeros((1, 784), np.float32)
    ort_session.bound_call(session, x, call="direct")()
    assert used == []
    run = ort_session.bound_call(session, x, call="wrapper")    # one call here (the binding then holds logits)
    run()
    assert len(used) == 2 and used[1][1].get_run_config_entry("gpu_graph_id") == "0"


class _WrapperOnly:
    """A session as a runtime without a reachable C++ object would offer it: only the public methods."""

    def __init__(self, session):
        self._public = session

    def io_binding(self):
        return self._public.io_binding()

    def run_with_iobinding(self, binding, options):
        return self._public.run_with_iobinding(binding, options)


class _ChangedInternals(_WrapperOnly):
    """A session whose C++ object takes the call with another signature (a later onnxruntime, say)."""

    class _Inner:
        def run_with_iobinding(self, binding):
            raise AssertionError("called with the wrong signature")

    _sess = _Inner()


@pytest.mark.parametrize("kind", [_WrapperOnly, _ChangedInternals])
def test_when_the_cpp_session_cannot_be_called_the_direct_call_warns_and_uses_the_wrapper(onnx_file, kind):
    path, model = onnx_file
    x = np.ones((2, 784), np.float32)
    with pytest.warns(RuntimeWarning, match="C\\+\\+ session cannot be called directly"):
        run = ort_session.bound_call(kind(ort_session.session(path)), x)
    assert run.call == "wrapper"
    run()
    torch.testing.assert_close(torch.from_numpy(run.binding.copy_outputs_to_cpu()[0]), model(torch.from_numpy(x)),
                               rtol=1e-5, atol=1e-5)


def test_the_bound_input_is_x_itself_on_the_cpu(onnx_file):
    """As the docstring says: no copy per call, so changing x in place changes the next call's logits."""
    path, model = onnx_file
    x = np.zeros((1, 784), np.float32)
    run = ort_session.bound_call(ort_session.session(path), x)
    x[:] = 0.5
    run()
    torch.testing.assert_close(torch.from_numpy(run.binding.copy_outputs_to_cpu()[0]), model(torch.from_numpy(x)),
                               rtol=1e-5, atol=1e-5)


def test_bad_calls_are_refused(onnx_file):
    path, _ = onnx_file
    with pytest.raises(ValueError, match="call='fast' must be one of"):
        ort_session.bound_call(ort_session.session(path), np.zeros((1, 784), np.float32), call="fast")
    with pytest.raises(ValueError, match="call='fast' must be one of"):
        deploy.runtime_model(path, call="fast")
    assert "call='wrapper'" in repr(deploy.runtime_model(path, call="wrapper"))


def test_a_cuda_session_that_falls_back_to_the_cpu_is_refused(onnx_file, monkeypatch):
    """Where onnxruntime-gpu lists CUDA but cannot load its libraries, ONNX Runtime only warns and runs on the
    CPU: asked for CUDA, session() says so instead of timing the CPU. TF32 is asked off."""
    import onnxruntime
    path, _ = onnx_file
    asked = []

    class FallenBack:
        def __init__(self, path, sess_options=None, providers=None):
            asked.append(providers)

        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", FallenBack)
    with pytest.raises(RuntimeError, match=r"provider='cuda': ONNX Runtime could not start CUDAExecutionProvider "
                                           r"and fell back to \['CPUExecutionProvider'\]"):
        ort_session.session(path, provider="cuda")
    assert asked == [[("CUDAExecutionProvider", {"use_tf32": "0"})]]
    assert isinstance(ort_session.session(path), FallenBack) and asked[-1] == ["CPUExecutionProvider"]
