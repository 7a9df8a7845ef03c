"""How the Fashion-MNIST Deep Compression recipe was chosen: an ablation on a validation split.

The last 10,000 training images are held out (`splits.holdout(10000)`); the test set is never looked at.
LeNet-300-100 is trained three ways (constant learning rate; cosine decay; cosine decay with weight
decay), each copy is pruned to 92% (global magnitude) and fine-tuned for 30 epochs with plain
cross-entropy or with distillation from its own dense version, and the chosen one is trained through
a 4-bit quantizer and packed. With --also-tried, the variants that did not help are run too, from the
cosine-decay network: 60 epochs of fine-tuning, gradual pruning, Han et al.'s per-layer ratios, a higher
fine-tuning rate and a 784-1200-1200-10 teacher. Prints a Markdown table. About 7 minutes on 2 cores
(about 17 with --also-tried).

    python scripts/fashion_recipe.py [--data-dir /usr/share/datasets/fashion-mnist] [--also-tried] \
        [--json results/fashion-recipe.json]

With --json the rows are also written (atomically) with the command and the machine record; README's
recipe table is rendered from that file by scripts/render_results.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import shlex
import sys
import tempfile
import time

from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tutorial_utils import data, distillation, files, machine, measure, models, pruning, recipes, storage, training  # noqa: E402

SIZES = (784, 300, 100, 10)
EPOCHS, SPARSITY, BITS = 30, 0.92, 4


def finetune(epochs: int, lr: float = 1e-3) -> training.TrainConfig:
    return training.TrainConfig(epochs=epochs, lr=lr, schedule="cosine")


def also_tried(dense: nn.Module, splits: data.Splits, report) -> None:
    """The variants that did not beat one-shot pruning with 30 epochs of fine-tuning (validation split)."""
    def evaluate(model: nn.Module) -> float:
        return training.evaluate(model, splits.x_test, splits.y_test)

    training.setup(0)
    model = copy.deepcopy(dense)
    recipes.prune_(model, splits, sparsity=SPARSITY, config=finetune(2 * EPOCHS))
    report(f"pruned {SPARSITY:.0%}, {2 * EPOCHS} epochs of cross-entropy fine-tuning", evaluate(model))
    model = copy.deepcopy(dense)
    for sparsity, epochs in ((0.5, 5), (0.75, 5), (0.875, 5), (SPARSITY, 15)):
        training.setup(0)
        recipes.prune_(model, splits, sparsity=sparsity, config=finetune(epochs))
    report("gradual 50 -> 75 -> 87.5 -> 92%, 30 epochs in all, cross-entropy", evaluate(model))
    model = copy.deepcopy(dense)
    masks = {}
    for (index, layer), sparsity in zip(((i, m) for i, m in enumerate(model) if isinstance(m, nn.Linear)),
                                        (0.92, 0.91, 0.74)):  # Han et al.'s LeNet-300-100 ratios
        masks[f"{index}.weight"] = pruning.magnitude_masks(nn.Sequential(layer), sparsity)["0.weight"]
    training.setup(0)
    training.fit(model, splits, epochs=EPOCHS, masks=masks, schedule="cosine", progress=False)
    report("per-layer 92/91/74% (Han et al.), cross-entropy", evaluate(model))
    training.setup(0)
    model = copy.deepcopy(dense)
    recipes.prune_(model, splits, sparsity=SPARSITY, teacher=dense, config=finetune(EPOCHS, lr=2e-3))
    report(f"pruned {SPARSITY:.0%}, self-distillation at lr 2e-3", evaluate(model))
    training.setup(0)
    teacher = models.big_teacher()
    training.fit(teacher, splits, epochs=EPOCHS, batch_size=128, schedule="cosine", progress=False)
    report("784-1200-1200-10 teacher (dropout 0.3), float32", evaluate(teacher))
    training.setup(0)
    model = copy.deepcopy(dense)
    recipes.prune_(model, splits, sparsity=SPARSITY, teacher=teacher, config=finetune(EPOCHS))
    report(f"pruned {SPARSITY:.0%}, distilled from the 784-1200-1200-10 teacher", evaluate(model))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with the four Fashion-MNIST IDX files")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--also-tried", action="store_true", help="also run the variants that did not help")
    parser.add_argument("--json", default=None, help="also write the rows with the command and machine record")
    args = parser.parse_args()
    training.setup(0, threads=args.threads)
    splits = data.load("fashion-mnist", root=args.data_dir).holdout(10_000)
    start = time.perf_counter()
    rows = []

    def report(recipe: str, stage: str, accuracy: float, note: str = "", size: int | None = None) -> None:
        rows.append((recipe, stage, accuracy, note, size))
        print(f"[{time.perf_counter() - start:5.0f} s] {recipe:<32} {stage:<40} {accuracy:.2%} {note}", flush=True)

    trainings = {"constant lr": {"schedule": "constant"},
                 "cosine lr": {"schedule": "cosine"},
                 "cosine lr + weight decay 1e-4": {"schedule": "cosine", "weight_decay": 1e-4}}
    chosen, dense_models = None, {}
    for name, recipe in trainings.items():
        dense = dense_models[name] = distillation.train_student(splits, sizes=SIZES, epochs=EPOCHS, seed=0, **recipe)
        report(name, "dense float32", training.evaluate(dense, splits.x_test, splits.y_test))
        if name == "constant lr":
            continue
        for teacher, label in ((None, "cross-entropy"), (dense, "self-distillation")):
            training.setup(0)
            pruned = copy.deepcopy(dense)
            masks = recipes.prune_(pruned, splits, sparsity=SPARSITY, teacher=teacher, config=finetune(EPOCHS))
            report(name, f"pruned {SPARSITY:.0%}, fine-tuned with {label}",
                   training.evaluate(pruned, splits.x_test, splits.y_test))
            chosen = (pruned, masks, dense)
    pruned, masks, dense = chosen  # weight decay + self-distillation, the last one trained
    training.setup(0)
    final = recipes.quantize_aware(pruned, splits, quant=BITS, teacher=dense, masks=masks,
                                   config=recipes.QAT.replace(epochs=10, schedule="cosine"))
    with tempfile.TemporaryDirectory() as folder:
        size = storage.save(final, pathlib.Path(folder) / "model.dcmp", compress="auto")
    ratio = measure.storage_bytes(dense) / size
    report(list(trainings)[-1], f"+ {BITS}-bit QAT with self-distillation, packed",
           training.evaluate(final, splits.x_test, splits.y_test), f"{size:,} bytes ({ratio:.1f}x smaller)", size)
    if args.also_tried:
        also_tried(dense_models["cosine lr"], splits, lambda stage, accuracy: report("cosine lr", stage, accuracy))
    print("\n| recipe | stage | validation accuracy | file |\n| --- | --- | --- | --- |")
    for recipe, stage, accuracy, note, _ in rows:
        print(f"| {recipe} | {stage} | {accuracy:.2%} | {note} |")
    if args.json:
        document = {"command": "python scripts/fashion_recipe.py " + shlex.join(sys.argv[1:]),
                    "validation_images": len(splits.y_test), "dense_bytes": measure.storage_bytes(dense),
                    "machine": machine.record(threads=args.threads),
                    "rows": [{"recipe": r, "stage": st, "accuracy": a, "bytes": b} for r, st, a, _, b in rows]}
        files.atomic_write(args.json, lambda f: f.write((json.dumps(document, indent=2) + "\n").encode()))


if __name__ == "__main__":
    main()
