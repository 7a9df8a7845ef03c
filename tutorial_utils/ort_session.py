"""ONNX Runtime sessions, and one call to one as a service makes it: input and output bound once.

    session("m.onnx", threads=2)          ->  an InferenceSession: all graph optimizations, 2 intra-op threads
    bound_call(session, x)                ->  a function of no arguments running the session once on x

At batch 1 a small model's call takes a few microseconds, and how it is made is part of them. A service
binds its input and output once (io_binding: no conversion per call) and keeps one RunOptions. Then
what is left is the runtime's own call and, from Python, the wrapper around it. onnxruntime 1.32's
Python `run_with_iobinding` does extra work on every call, mostly checks for WebGPU graph capture (two
lookups into the C++ session, besides one more Python function call): about 0.8 µs on a 2-core Intel
Xeon, where the whole call of the 784-32-10 int8-pixels model takes 3.8 to 3.9 µs at batch 1
(results/deploy-xeon.json).
Earlier releases passed the call straight through. bound_call(call="direct") makes the call as they
did, on the session's C++ object (`session._sess`) straight from Python, skipping the wrapper's work (a
C or C++ service pays no Python at all); call="wrapper" goes through the public Python method. Both run
the same graph with the same binding.

Example:
    >>> run = bound_call(session("m.onnx"), np.zeros((1, 784), np.float32))
    >>> run()          # one call; the logits stay in the binding
"""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from tutorial_utils import validate

CALLS = ("direct", "wrapper")


def runtime() -> ModuleType:
    """The onnxruntime module, or ModuleNotFoundError naming the install command."""
    try:
        import onnxruntime
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("deployment needs ONNX Runtime: pip install -e '.[deploy]' "
                                  "(or pip install onnx onnxruntime)") from error
    return onnxruntime


def session(path: str | os.PathLike, *, threads: int | None = None, provider: str = "cpu",
            spin: bool = True) -> Any:
    """An onnxruntime.InferenceSession for `path`: all graph optimizations, `threads` intra-op threads
    (None: 1); input "x" of shape (batch, in_features), output "logits".

    spin=True (ONNX Runtime's default) lets idle pool threads spin between calls; False makes them sleep.
    provider "cpu" or "cuda" (needs onnxruntime-gpu and a GPU; a clear error otherwise, also where
    ONNX Runtime lists CUDA but cannot start it and would quietly run on the CPU). The CUDA provider runs
    with TF32 off, so its float32 products are float32 products, as on the CPU.
    """
    ort = runtime()
    threads = validate.positive_int("threads", 1 if threads is None else threads)
    provider = validate.choice("provider", provider, ("cpu", "cuda"))
    name = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}[provider]
    if name not in ort.get_available_providers():
        raise RuntimeError(f"provider={provider!r}: this ONNX Runtime offers {ort.get_available_providers()} "
                           f"(the CUDA provider comes with the onnxruntime-gpu package)")
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such ONNX file")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3   # errors only: the CPU provider's notes about unused CUDA are noise here
    # Spinning pool threads wait for the next call busily: ONNX Runtime's default, and faster for one
    # session, but they take cores from whatever runs next (another session, PyTorch).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    chosen = [name] if provider == "cpu" else [(name, {"use_tf32": "0"})]   # TF32 rounds inputs to 10 bits
    made = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
    if made.get_providers()[0] != name:   # e.g. CUDA or cuDNN libraries missing: ONNX Runtime only warns
        raise RuntimeError(f"provider={provider!r}: ONNX Runtime could not start {name} and fell back to "
                           f"{made.get_providers()} (are CUDA and cuDNN installed for this onnxruntime-gpu?)")
    return made


def bound_call(session: Any, x: np.ndarray, *, call: str = "direct") -> Callable[[], None]:
    """A function of no arguments that runs `session` once on `x` (input "x", output "logits").

    x and the output are bound once (io_binding), with one RunOptions whose gpu_graph_id is set to its
    default, "0" (unset, 1.32's wrapper raises and catches a KeyError per call). On the CPU the bound input
    shares x's memory (change x and the next call sees it); with the CUDA provider every call copies x to
    the GPU and the logits back, inside the call. call="direct" runs the session's C++ object from Python;
    "wrapper" the public Python method (the module docstring says what differs). "direct" is tried once
    here; where this onnxruntime has no such object, or it refuses the call, it warns and uses the wrapper.
    Side effects: one call of the session. The function keeps x and the binding alive; its `binding`
    attribute holds the last logits (run.binding.copy_outputs_to_cpu()[0]) and its `call` attribute the
    path it takes.
    """
    call = validate.choice("call", call, CALLS)
    binding = session.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output("logits")
    options = runtime().RunOptions()
    options.add_run_config_entry("gpu_graph_id", "0")
    inner, inner_binding = getattr(session, "_sess", None), getattr(binding, "_iobinding", None)

    def direct() -> None:   # run.binding (set below) keeps the Python binding, which holds x, alive
        inner.run_with_iobinding(inner_binding, options)

    def wrapper() -> None:
        session.run_with_iobinding(binding, options)

    run = wrapper
    if call == "direct":
        try:
            direct()
            run = direct
        except (AttributeError, TypeError) as error:   # another onnxruntime's internals: no such object or method
            warnings.warn(f"this onnxruntime's C++ session cannot be called directly ({error}): timing its Python "
                          "run_with_iobinding instead (slower per call at batch 1)", RuntimeWarning, stacklevel=2)
    if run is wrapper:
        wrapper()   # one call either way: the binding holds logits from here on
    run.binding, run.call = binding, "direct" if run is direct else "wrapper"
    return run
