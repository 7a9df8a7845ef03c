"""Measurements that stay honest: the `Ledger` of every stage, and one place to reach them all.

A ledger row holds accuracy, parameters, non-zeros, bytes of a real file, MACs (tutorial_utils.footprint),
measured latency (tutorial_utils.timing: warm-up, repeats, median, fixed threads), the share of the
CPU's measured peak, and the energy estimate (tutorial_utils.energy); this module re-exports those
functions, so `measure.macs`, `measure.latency_ms`, `measure.wilson_interval` ... are the public names.

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

import torch
from torch import nn

from tutorial_utils import (calibration, data, energy, files, footprint, machine, models, privacy, robustness,
                            timing, training, validate)
from tutorial_utils.energy import PJ, energy_estimate  # noqa: F401  (public here: measure.energy_estimate)
from tutorial_utils.footprint import (count_nonzeros, count_parameters, csr_bytes, macs,  # noqa: F401
                                      storage_bytes)  # public here: measure.macs, measure.storage_bytes, ...
from tutorial_utils.machine import record as machine_record  # noqa: F401
from tutorial_utils.stats import (PairedTest, mean_std, over_seeds, paired_over_seeds, paired_test,  # noqa: F401
                                  wilson_interval)
from tutorial_utils.student_t import quantile as t_quantile  # noqa: F401  (public here: measure.t_quantile)
from tutorial_utils.timing import latency_ms, latency_ratio, time_ms  # noqa: F401  (public here: measure.latency_ms)

COLUMNS = ("stage", "accuracy", "parameters", "nonzeros", "bytes", "latency_ms", "macs", "of_peak", "energy_nj",
           "energy_nj_batch")
# Beyond accuracy, added by measure(..., beyond=(...)): PGD accuracy at 0.05 (pixel units, 10 steps), ECE
# (15 bins), and the loss-threshold membership-inference AUC, training images against test images.
ROBUST_EPSILON = 0.05
BEYOND = {"robust_accuracy": lambda m, s: robustness.robust_accuracy(m, s.x_test, s.y_test, epsilon=ROBUST_EPSILON),
          "ece": lambda m, s: calibration.expected_calibration_error(training.predict(m, s.x_test), s.y_test),
          "mia_auc": lambda m, s: privacy.membership_auc(privacy.per_image_loss(m, s.x_train, s.y_train),
                                              privacy.per_image_loss(m, s.x_test, s.y_test))}


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
    return [_json_safe(v) for v in value] if isinstance(value, (list, tuple)) else value


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
        self.command: str | None = None  # the command line that produced the ledger, when there is one
        self.notes: dict[str, object] = {}  # findings that are no stage's row, e.g. a paired test; kept in JSON
        self.machine = machine.record(threads)
        self.machine["load_before"] = self.machine.pop("load")
        self.latency_batch_size, self.threads, self.repeats = latency_batch_size, threads, repeats

    def add(self, stage: str, **values: object) -> dict:
        """Append a row {stage, **values} and return it."""
        if not isinstance(stage, str) or not stage:
            raise ValueError(f"stage={stage!r} must be a non-empty string")
        row = {"stage": stage, **values}
        self.rows.append(row)
        return row

    def measure(self, stage: str, model: nn.Module, splits: data.Splits, *, file_bytes: int | None = None,
                beyond: tuple[str, ...] = (), **given: object) -> dict:
        """Measure `model` and append its row.

        accuracy on the test split; bytes = `file_bytes` if the caller wrote the model's file itself,
        else the size of its torch.save'd state_dict; latency at `latency_batch_size`;
        of_peak = 2 macs * batch / latency / this CPU's measured float32 peak (timing.peak_gflops), the
        achieved fraction of what the hardware can do; energy_nj and energy_nj_batch from
        energy.energy_estimate per image at batch 1 and at `latency_batch_size`, from what the model
        computes (never from the file's format); a model on a GPU is measured on a CPU copy (models.on_cpu).
        A column passed in `given` (e.g. parameters= for an int8 backend that hides its weights) is taken
        as given; other keyword arguments become extra columns. `beyond` names optional columns of BEYOND.
        """
        model = models.on_cpu(model)
        for name in beyond:
            validate.choice("beyond", name, tuple(BEYOND))
        measurements = {
            "accuracy": lambda: training.evaluate(model, splits.x_test, splits.y_test),
            "parameters": lambda: footprint.count_parameters(model),
            "nonzeros": lambda: footprint.count_nonzeros(model),
            "bytes": lambda: file_bytes if file_bytes is not None else footprint.storage_bytes(model),
            "latency_ms": lambda: timing.latency_ms(model, self.latency_batch_size, threads=self.threads,
                                             repeats=self.repeats, in_features=splits.x_test.shape[1]),
            "macs": lambda: footprint.macs(model, in_features=splits.x_test.shape[1]),
            "energy_nj": lambda: energy.energy_estimate(model)["total_nj"],
            "energy_nj_batch": lambda: energy.energy_estimate(model, batch_size=self.latency_batch_size)["total_nj"],
        }
        load = machine.load_average()  # before timing: was another job competing for the cores?
        if "latency_ms" not in given:
            self._peak_gflops()  # before the first latency: its large matmul also warms the CPU (row one not cold)
        row = {key: given[key] if key in given else measure() for key, measure in measurements.items()}
        row = {**row, "of_peak": self._of_peak(row["macs"], row["latency_ms"]),
               **{name: given[name] if name in given else BEYOND[name](model, splits) for name in beyond}}
        if "latency_ms" not in given and machine.busy(load, self.threads or torch.get_num_threads()):
            given = {**given, "busy": f"load {load} while timing"}
        return self.add(stage, **row, **{k: v for k, v in given.items() if k not in row})

    def _of_peak(self, macs_per_image: object, latency: object) -> float | None:
        """Achieved float32-equivalent throughput as a fraction of the measured peak (None without numbers)."""
        if not all(isinstance(v, (int, float)) and v > 0 for v in (macs_per_image, latency)):
            return None
        achieved = timing.achieved_gflops(macs_per_image, latency, batch_size=self.latency_batch_size)
        return achieved / self._peak_gflops()

    def _peak_gflops(self) -> float:
        """This CPU's float32 peak at the ledger's threads, measured once and kept in the machine record."""
        if "peak_gflops" not in self.machine:
            self.machine["peak_gflops"] = round(timing.peak_gflops(threads=self.threads), 1)
        return self.machine["peak_gflops"]

    def header(self) -> str:
        """What every number of the table depends on: the machine, how latency was timed, what energy is."""
        peak = self.machine.get("peak_gflops")
        lines = [f"machine: {machine.describe(self.machine)}"
                 + (f"; float32 peak {peak:.0f} GFLOP/s (measured)" if peak else ""),
                 f"latency_ms: median of {self.repeats} passes at batch {self.latency_batch_size}; of_peak: achieved "
                 "2*macs*batch/latency over that peak (int8 kernels can pass 100%)",
                 f"energy_nj: estimate per image (Horowitz 45 nm, see tutorial_utils.energy) at batch 1; "
                 f"energy_nj_batch: at batch {self.latency_batch_size}"]
        busy = [row["stage"] for row in self.rows if row.get("busy")]
        if busy:
            lines.append(f"WARNING: machine busy (load above the threads in use) while timing {', '.join(busy)}")
        return "\n".join(lines)

    def columns(self) -> list[str]:
        extra = [k for row in self.rows for k in row if k not in COLUMNS]
        return [c for c in COLUMNS if any(c in row for row in self.rows)] + list(dict.fromkeys(extra))

    @staticmethod
    def _format(column: str, value: object) -> str:
        if column in ("accuracy", "of_peak") and isinstance(value, float):
            return f"{value:.2%}" if column == "accuracy" else f"{value:.1%}"
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
        return "\n".join([self.header(), ""] + lines[:1] + ["-" * len(lines[0])] + lines[1:])

    __repr__ = __str__  # the text table is what a console or a plain-text notebook output should show

    def _repr_html_(self) -> str:
        cols = self.columns()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._format(c, row.get(c)))}</td>" for c in cols)
                       + "</tr>" for row in self.rows)
        caption = "<br>".join(html.escape(line) for line in self.header().splitlines())
        return (f"<table><caption style='text-align:left'>{caption}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")

    def to_csv(self, path: str | os.PathLike) -> int:
        """Write the rows as CSV (full precision), atomically; return the bytes written."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns(), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return files.atomic_write(path, lambda f: f.write(buffer.getvalue().encode()))

    def to_json(self, path: str | os.PathLike) -> int:
        """Write {"machine": record with load_before/load_after, "rows": [...], "notes": {...}} as strict JSON,
        atomically; return the bytes written. Rows measured while the machine was busy carry a "busy" note."""
        document = {"command": self.command, "machine": {**self.machine, "load_after": machine.load_average()},
                    "latency_batch_size": self.latency_batch_size, "repeats": self.repeats, "rows": self.rows,
                    "notes": self.notes}
        text = json.dumps(_json_safe(document), indent=2, allow_nan=False)
        return files.atomic_write(path, lambda f: f.write(text.encode()))

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Ledger:
        """Read a ledger written by `to_json` (or a bare list of rows), threads included; add rows only on its machine."""
        ledger = cls()
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
        rows = document.get("rows") if isinstance(document, dict) else document
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "stage" in r for r in rows):
            raise ValueError(f"{os.fspath(path)!r} is not a ledger: expected rows with a 'stage'")
        ledger.rows = rows
        if isinstance(document, dict) and isinstance(document.get("machine"), dict):
            ledger.machine, ledger.command = document["machine"], document.get("command")
            ledger.threads = document["machine"].get("threads", ledger.threads)
            ledger.latency_batch_size = document.get("latency_batch_size", ledger.latency_batch_size)
            ledger.repeats, ledger.notes = document.get("repeats", ledger.repeats), document.get("notes", {})
        return ledger
