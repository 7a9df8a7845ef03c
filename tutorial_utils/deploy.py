"""Deployment: the student as an ONNX file, run by ONNX Runtime, in float32, int8 or its own 4-bit codes.

    export(model, "m.onnx", kind)   ->  bytes on disk (every file the runtime needs), written atomically
    runtime_model("m.onnx")         ->  an nn.Module running ONNX Runtime: evaluate and the ledger measure it
    latency_ms(deployed, 256)       ->  milliseconds per call, bound once, as the runtime makes it (ort_session)

kinds: "float32" (MatMul + Add), "int8-dynamic" (weights int8 per channel, activations quantized per
batch on the fly), "int8-static" (QDQ: activation ranges calibrated on training images; both by
onnx_int8), "4bit" (MatMulNBits holding the QAT codes and scales), "int8-pixels" (the uint8 image goes
in; the first layer's codes meet it in one MatMulIntegerToFloat, normalisation folded in: onnx_export.fold_pixels).
"4bit" and "int8-pixels" compute the QAT model's own function; export them from the QAT model.
ONNX Runtime runs with `threads` intra-op threads, the tutorial's thread setting.

Example:
    >>> size = export(final, folder / "final-4bit.onnx", "4bit")
    >>> deployed = runtime_model(folder / "final-4bit.onnx", threads=2)
    >>> training.evaluate(deployed, splits.x_test, splits.y_test)
"""

from __future__ import annotations

import copy
import os
import pathlib
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from tutorial_utils import files, onnx_export, onnx_int8, ort_session, quantization, timing, validate
from tutorial_utils.footprint import held_bytes, onnx_bytes  # noqa: F401  (public here: deploy.onnx_bytes)

KINDS = ("float32", "int8-dynamic", "int8-static", "4bit", "int8-pixels")
CODE_KINDS = ("4bit", "int8-pixels")   # built from a QuantizedLinear's own codes
session = ort_session.session         # public here: deploy.session(path, threads=...)


def export(model: nn.Module, path: str | os.PathLike, kind: str = "float32", *,
           calibration: torch.Tensor | None = None) -> int:
    """Write `model` as an ONNX file of the given kind (see KINDS) and return its bytes on disk.

    int8-static needs `calibration`, training images of shape (n, in_features). The file appears only
    when it is complete (written in a scratch folder, then renamed), so no partial .onnx is left.
    Side effects: writes `path`.
    """
    ort_session.runtime()
    kind = validate.choice("kind", kind, KINDS)
    onnx_export.check_exportable(model)
    in_features = next(m for m in model if hasattr(m, "in_features")).in_features
    onnx_int8.check_calibration(kind, calibration, in_features)   # before any file is written
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the graph is the model in eval mode, traced from a copy: the caller's model keeps its own mode
    proto = onnx_export.to_onnx(copy.deepcopy(model).eval(), weights=kind if kind in CODE_KINDS else "float32")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        float_path = pathlib.Path(scratch) / "float32.onnx"
        float_path.write_bytes(proto.SerializeToString())
        if kind in onnx_int8.KINDS:
            onnx_int8.quantize(float_path, pathlib.Path(scratch) / "int8.onnx", kind, calibration=calibration)
            float_path = pathlib.Path(scratch) / "int8.onnx"
        data = float_path.read_bytes()
    return files.atomic_write(path, lambda f: f.write(data))


export_onnx = export   # the name other code uses


class RuntimeModel(nn.Module):
    """model(x) computed by an ONNX Runtime session: takes and returns torch tensors (CPU, float32).

    x is always the normalised float32 image, as for the PyTorch models. For an "int8-pixels" file
    (`self.pixels` True) forward turns it back into the uint8 pixels the file takes,
    p = round((x * std + mean) * 255), and refuses x that is not on that grid.
    """

    own_timer = "deploy.latency_ms"   # timing.latency_ms refuses it: torch's threads and conversions are not its call

    def __init__(self, session, *, path: str, threads: int, provider: str = "cpu", spin: bool = True,
                 call: str = "direct") -> None:
        super().__init__()
        self.session, self.path, self.threads, self.provider, self.spin = session, path, threads, provider, spin
        self.call = validate.choice("call", call, ort_session.CALLS)   # how latency_ms makes the call
        self.timed_call: str | None = None                              # how it made it last (latency_ms)
        self.in_features = session.get_inputs()[0].shape[1]
        self.pixels = session.get_inputs()[0].type == "tensor(uint8)"
        if self.pixels:
            meta = session.get_modelmeta().custom_metadata_map
            self.mean, self.std = float(meta["pixel_mean"]), float(meta["pixel_std"])

    def to_pixels(self, x: torch.Tensor) -> np.ndarray:
        """uint8 pixels (batch, in_features) of normalised images x; ValueError if x is not 8-bit images."""
        if not torch.isfinite(x).all():
            raise ValueError("x must be normalised 8-bit images for this int8-pixels file; it holds NaN or infinity")
        pixels = (x.detach().double().cpu() * self.std + self.mean) * 255
        off, rounded = (pixels - pixels.round()).abs().max().item(), pixels.round()
        if off > 0.01 or rounded.min() < 0 or rounded.max() > 255:
            raise ValueError(f"x must be normalised 8-bit images, (p / 255 - {self.mean}) / {self.std} with p an "
                             f"integer in 0..255, for this int8-pixels file; got values up to {off:.3g} pixel off "
                             f"that grid, pixels from {rounded.min().item():.0f} to {rounded.max().item():.0f}")
        return rounded.numpy().astype(np.uint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (batch >= 1, {self.in_features}); got {tuple(x.shape)}")
        array = self.to_pixels(x) if self.pixels else x.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(self.session.run(None, {"x": array})[0])

    def extra_repr(self) -> str:
        return (f"{pathlib.Path(self.path).name}, threads={self.threads}, providers={self.session.get_providers()}, "
                f"call={self.call!r}")


def runtime_model(path: str | os.PathLike, *, threads: int = 1, provider: str = "cpu",
                  spin: bool = True, call: str = "direct") -> RuntimeModel:
    """The ONNX file as an nn.Module (RuntimeModel) running on `session(path, ...)`; latency_ms times it
    with `call` ("direct": the runtime's own call; "wrapper": through onnxruntime's Python method)."""
    call = validate.choice("call", call, ort_session.CALLS)   # before a session is built
    return RuntimeModel(session(path, threads=threads, provider=provider, spin=spin), path=str(path), threads=threads,
                        provider=provider, spin=spin, call=call)


def latency_ms(model: RuntimeModel, batch_size: int = 1, *, repeats: int = 200, warmup: int = 20) -> float:
    """Median milliseconds of one ONNX Runtime call on a (batch_size, in_features) input (seed 0: standard
    normal float32, or uint8 pixels for an int8-pixels file), bound once (ort_session.bound_call, made as
    model.call says), as a service would: no torch <-> numpy conversion, like timing.latency_ms's model(x)
    on a prebuilt tensor.

    The timed session is a fresh one of model.path (same threads, provider, spin), dropped when the timing
    returns: pool threads of a session that has run keep waking up to spin, and would slow this timing on
    a small CPU. Side effect: model.timed_call says how the call was made ("direct" or "wrapper").
    """
    if not isinstance(model, RuntimeModel):
        raise TypeError(f"model must be a deploy.RuntimeModel (from runtime_model), got {type(model).__name__}")
    validate.positive_int("batch_size", batch_size)
    generator, shape = np.random.default_rng(0), (batch_size, model.in_features)
    x = generator.integers(0, 256, shape, dtype=np.uint8) if model.pixels else \
        generator.standard_normal(shape, dtype=np.float32)
    timed = session(model.path, threads=model.threads, provider=model.provider, spin=model.spin)
    run = ort_session.bound_call(timed, x, call=model.call)
    model.timed_call = run.call   # the call made: "direct" falls back to "wrapper" (with a warning) where it must
    return timing.time_ms(run, repeats=repeats, warmup=warmup)


def export_all(model: nn.Module, folder: str | os.PathLike, *, stem: str = "model", threads: int = 1,
               calibration: torch.Tensor | None = None, kinds: tuple[str, ...] = KINDS) -> dict[str, dict]:
    """Every deployment of one quantized model: {kind: {"model": RuntimeModel, "bytes": int, "path": str}}.

    The 4-bit and int8-pixels files take the model's own codes; the other kinds start from its dequantized
    float weights (quantization.dequantize_model), so all compute the same network. Side effects: writes
    folder/<stem>-<kind>.onnx for each kind.
    """
    for kind in kinds:   # every kind checked before any file is written: no partial set
        validate.choice("kinds[]", kind, KINDS)
    float_model = quantization.dequantize_model(model)
    out = {}
    for kind in kinds:
        path = pathlib.Path(folder) / f"{stem}-{kind}.onnx"
        size = export(model if kind in CODE_KINDS else float_model, path, kind,
                      calibration=calibration if kind == "int8-static" else None)
        out[kind] = {"model": runtime_model(path, threads=threads), "bytes": size, "path": str(path)}
    return out


def compare_latency(models: dict[str, nn.Module], batch_size: int, *, threads: int, rounds: int = 5,
                    repeats: int = 100, settle_s: float | None = None) -> dict[str, dict]:
    """Latency of each model, measured side by side (timing.side_by_side: every model once per round).

    PyTorch models are timed by timing.latency_ms (torch threads = `threads`), ONNX Runtime models by
    latency_ms (their session's threads). Returns {name: {"latency_ms": median over rounds,
    "speedup": median over rounds of (first model's latency / this one's)}}: the first model is the
    baseline, and each ratio comes from one round, so slow drifts of a shared machine cancel.
    Between two models the machine rests `settle_s` seconds (None: 0.1 s if any model runs more than one
    thread, else 0): after a call, ONNX Runtime's pool threads (and OpenMP's) spin for tens of
    milliseconds waiting for more work, and on a small CPU that spinning would slow the next model.
    """
    if not models:
        raise ValueError("models is empty: give at least one {name: model} to time")
    validate.positive_int("rounds", rounds)
    if settle_s is None:
        pools = threads > 1 or any(isinstance(m, RuntimeModel) and m.threads > 1 for m in models.values())
        settle_s = 0.1 if pools else 0.0
    validate.nonnegative_float("settle_s", settle_s)

    def measurement(model: nn.Module) -> Callable[[], float]:
        if isinstance(model, RuntimeModel):
            return lambda: latency_ms(model, batch_size, repeats=repeats)
        return lambda: timing.latency_ms(model, batch_size, threads=threads, repeats=repeats)

    times = timing.side_by_side({name: measurement(model) for name, model in models.items()}, rounds=rounds,
                                before_each=lambda: time.sleep(settle_s))
    baseline = next(iter(times.values()))
    return {name: {"latency_ms": float(np.median(values)),
                   "speedup": float(np.median([b / v for b, v in zip(baseline, values)]))}
            for name, values in times.items()}
