"""The whole story headless: distil, then prune with distillation, then quantization-aware training with
distillation, then pack into the compact file. `python -m tutorial_utils pipeline --help` lists the options.

The order matters: a trained (distilled) student knows which weights matter, so magnitude pruning
has something to go on; fine-tuning the pruned network and training through the quantizer both use
the teacher's soft targets as their loss, which recovers more than the labels alone. Each stage adds
one ledger row; ratios of bytes are against the float32 file of the 784-128-10 teacher.
With `--teacher self` the dense student is the teacher of its own pruned and quantized copies (no
stronger model needed: it is how the Fashion-MNIST LeNet-300-100 row in README is made).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import pathlib
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
from torch import nn

from tutorial_utils import (data, distillation, files, int8, measure, models, plots, quantization, recipes, storage,
                            training, validate)


@dataclass(frozen=True)
class PipelineConfig:
    """Every option of the pipeline, checked when made (so before any training starts)."""

    out: str = "runs/pipeline"
    dataset: str = "mnist-5k"
    data_dir: str | None = None
    cache_dir: str | None = None
    teacher: str = "big-teacher"
    student: str = "student"
    sparsity: float = 0.9
    bits: int = 4
    epochs: int = 15
    finetune_epochs: int = 5
    qat_epochs: int = 5
    schedule: str = "constant"
    weight_decay: float = 0.0
    temperature: float = 4.0
    alpha: float = 0.9
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        validate.choice("dataset", self.dataset, data.DATASETS)
        validate.choice("teacher", self.teacher, TEACHERS)
        validate.choice("student", self.student, sorted(models.PRESETS))
        validate.fraction("sparsity", self.sparsity)
        validate.bits("bits", self.bits)
        if self.bits == 1 and self.sparsity > 0:
            raise ValueError("bits=1 with sparsity > 0 is refused: 1-bit codes are +-1 and cannot keep pruned "
                             "weights at zero; use bits >= 2")
        self.student_config(), self.finetune_config(), self.qat_config(), self.kd()  # validate the recipes
        validate.integer("seed", self.seed, low=0, high=2**32 - 1)
        validate.positive_int("threads", self.threads)
        for name in ("out", "data_dir", "cache_dir"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name}={value!r} must name a folder")

    def student_config(self) -> training.TrainConfig:
        return training.TrainConfig(epochs=self.epochs, weight_decay=self.weight_decay, schedule=self.schedule)

    def finetune_config(self) -> training.TrainConfig:
        return recipes.FINETUNE.replace(epochs=self.finetune_epochs, schedule=self.schedule)

    def qat_config(self) -> training.TrainConfig:
        return recipes.QAT.replace(epochs=self.qat_epochs, schedule=self.schedule)

    def kd(self) -> distillation.KDConfig:
        return distillation.KDConfig(temperature=self.temperature, alpha=self.alpha)


TEACHERS = tuple(sorted(models.PRESETS)) + ("self", "none")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_utils pipeline",
        description="Distil a student from a teacher, prune it, train it through the quantizer and pack it; "
                    "writes ledger.csv, ledger.json, pareto.png and model.dcmp to --out.")
    add = parser.add_argument
    add("--dataset", default="mnist-5k", choices=data.DATASETS, help="dataset (default: the bundled mnist-5k)")
    add("--data-dir", default=None, help="folder with the four IDX files (e.g. /usr/share/datasets/fashion-mnist)")
    add("--cache-dir", default=None,
        help="folder for cached teachers (default $DC_CACHE_DIR, else ~/.cache/distill-and-compress)")
    add("--out", default="runs/pipeline", help="output folder (default runs/pipeline)")
    add("--teacher", default="big-teacher", choices=TEACHERS,
        help="teacher to distil from (default big-teacher, 784-1200-1200-10); 'self' distils the pruned and "
             "quantized student from its own float32 version; 'none' trains with labels only")
    add("--student", default="student", choices=sorted(models.PRESETS),
        help="student architecture (default student, 784-64-10; lenet-300-100 for the Deep Compression row)")
    add("--sparsity", type=validate.cli(validate.fraction), default=0.9, help="fraction of weights pruned, in [0, 1) (default 0.9)")
    add("--bits", type=validate.cli(validate.bits), default=4, help="bits per weight after quantization, 1..16 (default 4)")
    add("--epochs", type=validate.cli(validate.positive_int), default=15, help="epochs for the reference teacher and the student (default 15)")
    add("--finetune-epochs", type=validate.cli(validate.positive_int), default=5, help="fine-tuning epochs after pruning (default 5)")
    add("--qat-epochs", type=validate.cli(validate.positive_int), default=5, help="quantization-aware training epochs (default 5)")
    add("--schedule", default="constant", choices=training.SCHEDULES,
        help="learning rate over each training stage: constant, or cosine decay to 0 (default constant)")
    add("--weight-decay", type=validate.cli(validate.nonnegative_float), default=0.0,
        help="L2 penalty while training the student, >= 0; makes its weights easier to prune (default 0)")
    add("--temperature", type=validate.cli(validate.temperature), default=4.0, help="distillation temperature T > 0 (default 4)")
    add("--alpha", type=validate.cli(validate.probability), default=0.9, help="weight of the soft term, in [0, 1] (default 0.9)")
    add("--seed", type=validate.cli(validate.nonnegative_int), default=0, help="random seed (default 0)")
    add("--threads", type=validate.cli(validate.positive_int), default=2, help="CPU threads for training and latency (default 2)")
    return parser


def check_out(out: str) -> pathlib.Path:
    """The output folder, created and proven writable now, so that a bad --out fails before any training."""
    path = pathlib.Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out={out!r} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValueError(f"out={out!r} cannot be written ({exc.strerror or exc})") from exc
    files.remove_stale_temporaries(path)
    return path


def run(config: PipelineConfig) -> measure.Ledger:
    """Run every stage; return the ledger (also written to config.out with the Pareto plot and the model file)."""
    out, start = check_out(config.out), time.perf_counter()
    if config.cache_dir is not None:
        os.environ["DC_CACHE_DIR"] = str(pathlib.Path(config.cache_dir).resolve())
    device = training.setup(config.seed, threads=config.threads)
    splits = data.load(config.dataset, root=config.data_dir)
    log = lambda stage, text: print(f"[{time.perf_counter() - start:6.1f} s] {stage}: {text}", flush=True)  # noqa: E731
    log("data", f"{config.dataset}, {len(splits.x_train):,} train / {len(splits.x_test):,} test")
    ledger = measure.Ledger(threads=config.threads)

    def row(stage: str, model: nn.Module, **given: object) -> dict:
        entry = ledger.measure(stage, model, splits, **given)
        log(stage, f"accuracy {entry['accuracy']:.2%}, {entry['bytes']:,} bytes")
        return entry

    reference_model = training.load_or_train_teacher(splits, epochs=config.epochs, seed=config.seed, device=device)
    reference = row("reference teacher 784-128-10 (float32)", reference_model)
    teacher = None
    if config.teacher not in ("none", "self"):
        recipe = (distillation.BIG_TEACHER_RECIPE if config.teacher == "big-teacher"
                  else {"preset": config.teacher, "epochs": config.epochs})
        teacher = training.load_or_train_teacher(splits, **recipe, seed=config.seed, device=device)
        row(f"distillation teacher {config.teacher} (float32)", teacher)
    sizes, kd = tuple(models.PRESETS[config.student][0]), config.kd()
    student = distillation.train_student(splits, seed=config.seed, sizes=sizes, config=config.student_config(),
                                         device=device)
    own = row(f"student {config.student} from scratch (float32)", student)
    if config.teacher == "self":  # the dense student teaches its pruned and quantized copies (made below)
        teacher = student
    elif teacher is not None:
        student = distillation.train_student(splits, teacher=teacher, seed=config.seed, sizes=sizes, kd=kd,
                                             config=config.student_config(), device=device)
        row(f"student distilled, T={config.temperature:g} (float32)", student)
    stage = {"teacher": teacher, "kd": kd, "seed": config.seed, "device": device}
    pruned = copy.deepcopy(student)
    masks = recipes.prune_(pruned, splits, sparsity=config.sparsity, config=config.finetune_config(), **stage)
    row(f"pruned {config.sparsity:.0%} + fine-tuned (masked float32)", pruned)
    final = recipes.quantize_aware(pruned, splits, quant=config.bits, config=config.qat_config(), masks=masks, **stage)
    with tempfile.TemporaryDirectory() as scratch:  # the uncompressed file is measured, not published
        plain = storage.save(final, pathlib.Path(scratch) / "model.dcmp", compress="none")
    row(f"{config.bits}-bit QAT, sparse file", final, file_bytes=plain)
    written = storage.save(final, out / "model.dcmp", compress="auto")
    reloaded = storage.load(out / "model.dcmp")
    if not torch.equal(reloaded(splits.x_test), final.eval()(splits.x_test)):
        raise RuntimeError("the compact file did not reload to the same logits")
    final_row = row(f"{config.bits}-bit QAT, sparse file + entropy coding", final, file_bytes=written)
    # Deployment: the file's weights handed to an int8 backend, the fastest path measured in notebook 03.
    deployed = int8.to_backend(quantization.dequantize_model(reloaded), "legacy")
    deployed_row = row("deployed: the file's weights on the int8 backend", deployed, file_bytes=written,
                       parameters=final_row["parameters"], nonzeros=final_row["nonzeros"], macs=final_row["macs"],
                       energy_nj=final_row["energy_nj"])
    ledger.to_csv(out / "ledger.csv")
    ledger.to_json(out / "ledger.json")
    fig = plots.pareto(ledger.rows, reference_bytes=reference["bytes"])
    files.atomic_write(out / "pareto.png", lambda f: fig.savefig(f, format="png", dpi=100))
    print(f"\n{ledger}\n")
    print(f"final model: {final_row['accuracy']:.2%} ({final_row['accuracy'] - reference['accuracy']:+.2%} vs the "
          f"784-128-10 teacher), {reference['bytes'] / final_row['bytes']:.1f}x smaller than its float32 file, "
          f"{own['bytes'] / final_row['bytes']:.1f}x smaller than the student's own float32 file "
          f"({final_row['accuracy'] - own['accuracy']:+.2%} vs its accuracy)")
    speedup = measure.latency_ratio(reference_model, deployed, 256, threads=config.threads)
    print(f"deployed on the int8 backend: {deployed_row['accuracy']:.2%}, latency at batch 256 {speedup:.1f}x lower "
          f"than the 784-128-10 teacher's (median of 5 alternating measurements, {config.threads} threads)")
    print(f"wrote {out}/ledger.csv, ledger.json, pareto.png, model.dcmp in {time.perf_counter() - start:.0f} s")
    return ledger


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The PipelineConfig of parsed command-line options (argparse dest names equal the field names)."""
    return PipelineConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PipelineConfig)})


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message (or the help); report its status
        return exc.code if isinstance(exc.code, int) else 2
    try:
        run(config_from_args(args))
    except (ValueError, FileNotFoundError, data.DatasetUnavailableError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
