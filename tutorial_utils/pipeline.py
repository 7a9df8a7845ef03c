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
import math
import pathlib
import sys
import time

import torch
from torch import nn

from tutorial_utils import (data, distillation, int8, measure, models, plots, pruning, quantization, storage,
                            training)


def train_(model: nn.Module, teacher: nn.Module | None, splits: data.Splits, *, epochs: int, lr: float = 1e-3,
           masks: dict[str, torch.Tensor] | None = None, temperature: float = 4.0, alpha: float = 0.9,
           schedule: str = "constant", device: torch.device | str | None = None) -> None:
    """Train in place with kd_loss against `teacher`, or with cross-entropy if teacher is None."""
    if teacher is None:
        training.fit(model, splits, epochs=epochs, lr=lr, masks=masks, schedule=schedule, device=device,
                     progress=False)
    else:
        distillation.distill(model, teacher, splits, temperature=temperature, alpha=alpha, epochs=epochs, lr=lr,
                             masks=masks, schedule=schedule, device=device, progress=False)


def prune_(model: nn.Module, teacher: nn.Module | None, splits: data.Splits, *, sparsity: float, epochs: int,
           **knobs: object) -> dict[str, torch.Tensor]:
    """Global magnitude pruning to `sparsity`, then fine-tuning with the masks held. Returns the masks."""
    masks = pruning.magnitude_masks(model, sparsity, scope="global")
    pruning.apply_masks_(model, masks)
    train_(model, teacher, splits, epochs=epochs, masks=masks, **knobs)
    return masks


def quantize_aware(model: nn.Module, teacher: nn.Module | None, splits: data.Splits, *, bits: int, epochs: int,
                   masks: dict[str, torch.Tensor] | None = None, lr: float = 5e-4, **knobs: object) -> nn.Sequential:
    """Quantization-aware training at `bits` (pruned weights held at zero), then conversion to integer codes."""
    qat = quantization.prepare_qat(model, bits)
    train_(qat, teacher, splits, epochs=epochs, masks=masks, lr=lr, **knobs)
    return quantization.quantize_model(qat, bits)


def compress(student: nn.Module, teacher: nn.Module | None, splits: data.Splits, *, sparsity: float, bits: int,
             finetune_epochs: int = 5, qat_epochs: int = 5, **knobs: object) -> nn.Sequential:
    """A pruned, quantized copy of a trained student: prune_ then quantize_aware, both with the teacher."""
    model = copy.deepcopy(student)
    masks = prune_(model, teacher, splits, sparsity=sparsity, epochs=finetune_epochs, **knobs)
    return quantize_aware(model, teacher, splits, bits=bits, epochs=qat_epochs, masks=masks, **knobs)


def sweep(teacher: nn.Module | None, splits: data.Splits, folder: str | pathlib.Path, *, widths: list[int],
          sparsities: list[float], bit_widths: list[int], epochs: int = 15, finetune_epochs: int = 5,
          qat_epochs: int = 5, seed: int = 0, threads: int | None = None) -> list[dict]:
    """Accuracy, bytes (compact file with entropy coding) and latency for widths x sparsities x bits.

    Each 784-w-10 student is distilled once, pruned once per sparsity, and trained through the quantizer
    once per bit width. Latency is that of the deployed int8 backend at batch 256: it depends on the
    width, not on the sparsity or the bits, since the backend computes densely in int8.
    """
    rows = []
    for width in widths:
        student = distillation.train_student(splits, teacher=teacher, seed=seed, sizes=(784, width, 10), epochs=epochs)
        for sparsity in sparsities:
            training.setup(seed)
            pruned = copy.deepcopy(student)
            masks = prune_(pruned, teacher, splits, sparsity=sparsity, epochs=finetune_epochs)
            for bits in bit_widths:
                training.setup(seed)
                model = quantize_aware(pruned, teacher, splits, bits=bits, epochs=qat_epochs, masks=masks)
                path = pathlib.Path(folder) / f"w{width}-s{sparsity:g}-b{bits}.dcmp"
                deployed = int8.to_backend(quantization.dequantize_model(model), "legacy")
                rows.append({"stage": f"784-{width}-10, {sparsity:.0%}, {bits}-bit", "width": width,
                             "sparsity": sparsity, "bits": bits,
                             "accuracy": training.evaluate(model, splits.x_test, splits.y_test),
                             "bytes": storage.save(model, path, compress="auto"),
                             "latency_ms": measure.latency_ms(deployed, 256, threads=threads, repeats=100)})
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_utils pipeline",
        description="Distil a student from a teacher, prune it, train it through the quantizer and pack it; "
                    "writes ledger.csv, ledger.json, pareto.png and model.dcmp to --out.")
    add = parser.add_argument
    add("--dataset", default="mnist-5k", choices=data.DATASETS, help="dataset (default: the bundled mnist-5k)")
    add("--data-dir", default=None, help="folder with the four IDX files (e.g. /usr/share/datasets/fashion-mnist)")
    add("--out", default="runs/pipeline", help="output folder (default runs/pipeline)")
    add("--teacher", default="big-teacher", choices=sorted(models.PRESETS) + ["self", "none"],
        help="teacher to distil from (default big-teacher, 784-1200-1200-10); 'self' distils the pruned and "
             "quantized student from its own float32 version; 'none' trains with labels only")
    add("--student", default="student", choices=sorted(models.PRESETS),
        help="student architecture (default student, 784-64-10; lenet-300-100 for the Deep Compression row)")
    add("--sparsity", type=float, default=0.9, help="fraction of weights pruned, in [0, 1) (default 0.9)")
    add("--bits", type=int, default=4, help="bits per weight after quantization, 1..16 (default 4)")
    add("--epochs", type=int, default=15, help="epochs for the reference teacher and the student (default 15)")
    add("--finetune-epochs", type=int, default=5, help="fine-tuning epochs after pruning (default 5)")
    add("--qat-epochs", type=int, default=5, help="quantization-aware training epochs (default 5)")
    add("--schedule", default="constant", choices=training.SCHEDULES,
        help="learning rate over each training stage: constant, or cosine decay to 0 (default constant)")
    add("--weight-decay", type=float, default=0.0,
        help="L2 penalty while training the student, >= 0; makes its weights easier to prune (default 0)")
    add("--temperature", type=float, default=4.0, help="distillation temperature T > 0 (default 4)")
    add("--alpha", type=float, default=0.9, help="weight of the soft term, in [0, 1] (default 0.9)")
    add("--seed", type=int, default=0, help="random seed (default 0)")
    add("--threads", type=int, default=2, help="CPU threads for training and latency (default 2)")
    return parser


def check(args: argparse.Namespace) -> None:
    """Raise ValueError naming the option, its value and the valid range."""
    for name in ("epochs", "finetune_epochs", "qat_epochs", "threads"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')}={getattr(args, name)} must be a positive integer")
    if not 0 <= args.sparsity < 1:
        raise ValueError(f"--sparsity={args.sparsity} must be in [0, 1)")
    if not 1 <= args.bits <= 16:
        raise ValueError(f"--bits={args.bits} must be an integer in 1..16")
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        raise ValueError(f"--weight-decay={args.weight_decay} must be a finite number >= 0")
    if not args.temperature > 0:
        raise ValueError(f"--temperature={args.temperature} must be > 0")
    if not 0 <= args.alpha <= 1:
        raise ValueError(f"--alpha={args.alpha} must be in [0, 1]")
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out={args.out!r} exists and is not a folder")


def run(args: argparse.Namespace) -> measure.Ledger:
    """Run every stage; return the ledger (also written to args.out with the Pareto plot and the model file)."""
    check(args)
    out, start = pathlib.Path(args.out), time.perf_counter()
    device = training.setup(args.seed, threads=args.threads)
    splits = data.load(args.dataset, root=args.data_dir)
    log = lambda stage, text: print(f"[{time.perf_counter() - start:6.1f} s] {stage}: {text}", flush=True)  # noqa: E731
    log("data", f"{args.dataset}, {len(splits.x_train):,} train / {len(splits.x_test):,} test")
    ledger = measure.Ledger(threads=args.threads)

    def row(stage: str, model: nn.Module, **given: object) -> dict:
        entry = ledger.measure(stage, model, splits, **given)
        log(stage, f"accuracy {entry['accuracy']:.2%}, {entry['bytes']:,} bytes")
        return entry

    reference_model = training.load_or_train_teacher(splits, epochs=args.epochs, seed=args.seed, device=device)
    reference = row("reference teacher 784-128-10 (float32)", reference_model)
    teacher = None
    if args.teacher not in ("none", "self"):
        recipe = distillation.BIG_TEACHER_RECIPE if args.teacher == "big-teacher" else {"preset": args.teacher,
                                                                                          "epochs": args.epochs}
        teacher = training.load_or_train_teacher(splits, **recipe, seed=args.seed, device=device)
        row(f"distillation teacher {args.teacher} (float32)", teacher)
    student_recipe = {"seed": args.seed, "sizes": tuple(models.PRESETS[args.student][0]), "epochs": args.epochs,
                      "weight_decay": args.weight_decay, "schedule": args.schedule, "device": device}
    student = distillation.train_student(splits, **student_recipe)
    own = row(f"student {args.student} from scratch (float32)", student)
    if args.teacher == "self":  # the dense student teaches its pruned and quantized copies (made below)
        teacher = student
    elif teacher is not None:
        student = distillation.train_student(splits, teacher=teacher, **student_recipe,
                                             temperature=args.temperature, alpha=args.alpha)
        row(f"student distilled, T={args.temperature:g} (float32)", student)
    knobs = {"temperature": args.temperature, "alpha": args.alpha, "schedule": args.schedule, "device": device}
    pruned = copy.deepcopy(student)
    masks = prune_(pruned, teacher, splits, sparsity=args.sparsity, epochs=args.finetune_epochs, **knobs)
    row(f"pruned {args.sparsity:.0%} + fine-tuned (masked float32)", pruned)
    final = quantize_aware(pruned, teacher, splits, bits=args.bits, epochs=args.qat_epochs, masks=masks, **knobs)
    row(f"{args.bits}-bit QAT, sparse file", final, file_bytes=storage.save(final, out / "model.dcmp", compress="none"))
    written = storage.save(final, out / "model.dcmp", compress="auto")
    reloaded = storage.load(out / "model.dcmp")
    if not torch.equal(reloaded(splits.x_test), final.eval()(splits.x_test)):
        raise RuntimeError("the compact file did not reload to the same logits")
    final_row = row(f"{args.bits}-bit QAT, sparse file + entropy coding", final, file_bytes=written)
    # Deployment: the file's weights handed to an int8 backend, the fastest path measured in notebook 03.
    deployed = int8.to_backend(quantization.dequantize_model(reloaded), "legacy")
    deployed_row = row("deployed: the file's weights on the int8 backend", deployed, file_bytes=written,
                       parameters=final_row["parameters"], nonzeros=final_row["nonzeros"], macs=final_row["macs"],
                       energy_nj=final_row["energy_nj"])
    ledger.to_csv(out / "ledger.csv")
    ledger.to_json(out / "ledger.json")
    fig = plots.pareto(ledger.rows, reference_bytes=reference["bytes"])
    storage.atomic_write(out / "pareto.png", lambda f: fig.savefig(f, format="png", dpi=100))
    print(f"\n{ledger}\n")
    print(f"final model: {final_row['accuracy']:.2%} ({final_row['accuracy'] - reference['accuracy']:+.2%} vs the "
          f"784-128-10 teacher), {reference['bytes'] / final_row['bytes']:.1f}x smaller than its float32 file, "
          f"{own['bytes'] / final_row['bytes']:.1f}x smaller than the student's own float32 file "
          f"({final_row['accuracy'] - own['accuracy']:+.2%} vs its accuracy)")
    speedup = measure.latency_ratio(reference_model, deployed, 256, threads=args.threads)
    print(f"deployed on the int8 backend: {deployed_row['accuracy']:.2%}, latency at batch 256 {speedup:.1f}x lower "
          f"than the 784-128-10 teacher's (median of 5 alternating measurements, {args.threads} threads)")
    print(f"wrote {out}/ledger.csv, ledger.json, pareto.png, model.dcmp in {time.perf_counter() - start:.0f} s")
    return ledger


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError, data.DatasetUnavailableError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
