"""Measurements that stay honest: parameters, non-zeros, bytes of real files, measured latency, MACs.

Bytes are the size of a file actually written; latency is timed (warm-up, repeats, median, fixed
threads); MACs come from torch's own FLOP counter. The `Ledger` keeps one row per stage.

Example:
    >>> ledger = Ledger()
    >>> ledger.measure("teacher", model, splits)      # one row: accuracy, parameters, bytes, ...
    >>> ledger.to_csv("runs/ledger.csv")
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import tempfile
import warnings

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tutorial_utils import data, files, models, timing, training, validate
from tutorial_utils.timing import latency_ms, latency_ratio, time_ms  # noqa: F401  (public here: measure.latency_ms)

COLUMNS = ("stage", "accuracy", "parameters", "nonzeros", "bytes", "latency_ms", "macs", "energy_nj")

# Energy per operation at 45 nm, in picojoules (M. Horowitz, "Computing's energy problem", ISSCC 2014).
PJ = {"int8_add": 0.03, "int8_mult": 0.2, "fp32_add": 0.9, "fp32_mult": 3.7, "sram_read_32bit": 5.0,
      "dram_read_32bit": 640.0}


def _weights_and_biases(model: nn.Module) -> list[torch.Tensor]:
    """Parameters, plus weight/bias buffers of layers that keep them as buffers (quantized layers)."""
    tensors = [p for p in model.parameters()]
    tensors += [b for name, b in model.named_buffers() if name.rsplit(".", 1)[-1] in ("weight", "bias")]
    return tensors


def count_parameters(model: nn.Module) -> int:
    """Number of scalars in all weights and biases: sum of numel() (quantized layers included)."""
    return sum(t.numel() for t in _weights_and_biases(model))


def count_nonzeros(model: nn.Module) -> int:
    """Number of non-zero weights and biases (a pruned weight still counts as a parameter)."""
    return sum(int(torch.count_nonzero(t).item()) for t in _weights_and_biases(model))


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
    """Bytes of torch.save'ing every Linear weight as a torch sparse CSR tensor (int64 indices) plus biases.

    The sparse format most people reach for first: 8 bytes of column index + 4 of value per non-zero, so
    it is larger than dense float32 (4 bytes per weight) until a layer is more than two-thirds zeros.
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
    counter = FlopCounterMode(display=False)
    device = models.device_of(model)
    with counter, torch.no_grad():
        model(torch.zeros(1, in_features, device=device))
    return counter.get_total_flops() // 2


def _linear_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "in_features") and hasattr(m, "out_features")]


def energy_estimate(model: nn.Module, *, weight_bytes: int | None = None, sram_bytes: int = 64 * 1024) -> dict:
    """An *estimate* of the energy of one inference (batch 1), from operation counts and Horowitz's 45 nm
    energies (ISSCC 2014): 32-bit float mult 3.7 pJ + add 0.9 pJ; 8-bit int mult 0.2 pJ + add 0.03 pJ;
    32-bit SRAM read 5 pJ; 32-bit DRAM read 640 pJ.

        compute     = sum over layers of in * out MACs x (mult + add) at the layer's precision
        weights     = weight_bytes / 4 reads, from SRAM if weight_bytes <= sram_bytes, else from DRAM
        activations = sum over layers of (in + out) 32-bit SRAM accesses

    Assumptions: dense hardware (zeros are multiplied too); layers with codes of <= 8 bits run 8-bit
    integer arithmetic, others float32; weights are read once per inference with no reuse;
    weight_bytes defaults to 4 bytes per float weight and bits/8 per quantized one, and is best
    given as the real file size. Returns picojoule components, the total in nanojoules, and the
    assumptions as text.
    """
    layers = _linear_layers(model)
    if not layers:
        raise TypeError(f"model of type {type(model).__name__} has no Linear layers")
    compute = 0.0
    implied_bytes = 0.0
    for layer in layers:
        bits = getattr(getattr(layer, "qweight", None), "bits", 32)
        kind = "int8" if bits <= 8 else "fp32"
        compute += layer.in_features * layer.out_features * (PJ[f"{kind}_mult"] + PJ[f"{kind}_add"])
        implied_bytes += layer.in_features * layer.out_features * min(bits, 32) / 8
    weight_bytes = int(implied_bytes) if weight_bytes is None else weight_bytes
    on_chip = weight_bytes <= sram_bytes
    weights = weight_bytes / 4 * PJ["sram_read_32bit" if on_chip else "dram_read_32bit"]
    activations = sum(layer.in_features + layer.out_features for layer in layers) * PJ["sram_read_32bit"]
    return {"compute_pj": compute, "weights_pj": weights, "activations_pj": activations,
            "total_nj": (compute + weights + activations) / 1000,
            "assumptions": (f"estimate, Horowitz 45 nm energies; dense compute; weights ({weight_bytes:,} bytes) read "
                            f"once from {'on-chip SRAM' if on_chip else 'DRAM'} (SRAM assumed {sram_bytes // 1024} KB)")}


def pareto_front(rows: list[dict], *, x: str = "bytes", y: str = "accuracy") -> list[dict]:
    """The rows that no other row beats: smaller or equal x and higher or equal y, and better in one.

    x is minimised (bytes, latency_ms), y maximised (accuracy). Rows with the same (x, y) are all kept.
    Returned in increasing x. Rows missing x or y, or with NaN there, are a ValueError naming the row.
    """
    for row in rows:
        for key in (x, y):
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"row {row.get('stage', row)!r} has {key}={value!r}; need a number")

    def dominated(a: dict) -> bool:
        return any(b[x] <= a[x] and b[y] >= a[y] and (b[x] < a[x] or b[y] > a[y]) for b in rows)

    return sorted((r for r in rows if not dominated(r)), key=lambda r: (r[x], -r[y]))


def _json_safe(value: object) -> object:
    """NaN and infinities become None: JSON has no such numbers, and a ledger must stay valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class Ledger:
    """Rows of (stage, accuracy, parameters, nonzeros, bytes, latency_ms, macs, ...) kept after every step.

    `measure` fills a row from a model; `add` takes a row as given (extra columns are kept).
    In a notebook a Ledger shows as an HTML table; `to_csv` and `to_json` write files atomically.
    """

    def __init__(self, *, latency_batch_size: int = 256, threads: int | None = None, repeats: int = 100) -> None:
        self.rows: list[dict] = []
        validate.positive_int("latency_batch_size", latency_batch_size)
        if threads is not None:
            validate.positive_int("threads", threads)
        validate.positive_int("repeats", repeats)
        self.latency_batch_size, self.threads, self.repeats = latency_batch_size, threads, repeats

    def add(self, stage: str, **values: object) -> dict:
        """Append a row {stage, **values} and return it."""
        if not isinstance(stage, str) or not stage:
            raise ValueError(f"stage={stage!r} must be a non-empty string")
        row = {"stage": stage, **values}
        self.rows.append(row)
        return row

    def measure(self, stage: str, model: nn.Module, splits: data.Splits, *, file_bytes: int | None = None,
                **given: object) -> dict:
        """Measure `model` and append its row.

        accuracy on the test split; bytes = `file_bytes` if the caller wrote the model's file itself,
        else the size of its torch.save'd state_dict; latency at `latency_batch_size`; energy_nj from
        energy_estimate (an estimate, with the file's bytes as the weight traffic when given). A column passed
        in `given` (e.g. parameters= for an int8 backend that hides its weights) is taken as given,
        not measured; other keyword arguments become extra columns.
        """
        measurements = {
            "accuracy": lambda: training.evaluate(model, splits.x_test, splits.y_test),
            "parameters": lambda: count_parameters(model),
            "nonzeros": lambda: count_nonzeros(model),
            "bytes": lambda: file_bytes if file_bytes is not None else storage_bytes(model),
            "latency_ms": lambda: timing.latency_ms(model, self.latency_batch_size, threads=self.threads,
                                             repeats=self.repeats, in_features=splits.x_test.shape[1]),
            "macs": lambda: macs(model, in_features=splits.x_test.shape[1]),
            "energy_nj": lambda: energy_estimate(model, weight_bytes=file_bytes)["total_nj"],
        }
        row = {key: given[key] if key in given else measure() for key, measure in measurements.items()}
        return self.add(stage, **row, **{k: v for k, v in given.items() if k not in measurements})

    def columns(self) -> list[str]:
        extra = [k for row in self.rows for k in row if k not in COLUMNS]
        return [c for c in COLUMNS if any(c in row for row in self.rows)] + list(dict.fromkeys(extra))

    @staticmethod
    def _format(column: str, value: object) -> str:
        if column == "accuracy" and isinstance(value, float):
            return f"{value:.2%}"
        if isinstance(value, float):
            return f"{value:.3g}"
        if isinstance(value, int):
            return f"{value:,}"
        return "" if value is None else str(value)

    def __len__(self) -> int:
        return len(self.rows)

    def __str__(self) -> str:
        cols = self.columns()
        cells = [cols] + [[self._format(c, row.get(c)) for c in cols] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
        lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
                 for r in cells]
        return "\n".join(lines[:1] + ["-" * len(lines[0])] + lines[1:])

    __repr__ = __str__  # the text table is what a console or a plain-text notebook output should show

    def _repr_html_(self) -> str:
        cols = self.columns()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._format(c, row.get(c)))}</td>" for c in cols)
                       + "</tr>" for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_csv(self, path: str | os.PathLike) -> int:
        """Write the rows as CSV (full precision), atomically; return the bytes written."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns(), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return files.atomic_write(path, lambda f: f.write(buffer.getvalue().encode()))

    def to_json(self, path: str | os.PathLike) -> int:
        """Write the rows as a JSON list of objects, atomically; return the bytes written."""
        text = json.dumps(_json_safe(self.rows), indent=2, allow_nan=False)
        return files.atomic_write(path, lambda f: f.write(text.encode()))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Ledger:
        """Read rows written by `to_json`."""
        ledger = cls()
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "stage" in r for r in rows):
            raise ValueError(f"{os.fspath(path)!r} is not a ledger: expected a JSON list of rows with a 'stage'")
        ledger.rows = rows
        return ledger
