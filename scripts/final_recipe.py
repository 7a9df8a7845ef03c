"""Choose the final model's compression recipe on held-out data: how long to fine-tune, how long to train
through the quantizer, and with which learning-rate schedule.

The pipeline's final model (the distilled 784-64-10 student, 90% magnitude pruning with fine-tuning, then
4-bit QAT, distillation in every stage) ends near the 784-128-10 teacher, and the deployment target asks
for it within half a point. Is a longer or differently scheduled recipe closer? Every student trains on
the first 3,500 training images and is scored on the other 500 (`splits.holdout(500)`), distilled from
the 784-1200-1200-10 teacher that never saw those 500 (`teachers.HELD_OUT`); the test split is not read.
For each seed one student is distilled, and every variant prunes and quantizes a copy of it with the same
seed, so the differences are paired by seed. A variant replaces the pipeline's recipe only if the 95% t
interval of its mean gain over the pipeline's lies above zero (stats.choose_over_seeds). The rows also give the
784-128-10 teacher trained on the same 3,500 images with the same seed, paired with each variant.

Usage: python scripts/final_recipe.py [--threads 2] [--seeds 0 1 2 3 4] [--json results/final-recipe.json]
"""

from __future__ import annotations

import json
import shlex
import sys
import time

from tutorial_utils import distillation, files, measure, recipes, stats, teachers, training

SPARSITY, BITS = 0.9, 4
# name: (fine-tuning after pruning, training through the quantizer); the first is the pipeline's recipe
VARIANTS = {
    "pipeline: fine-tune 5 epochs, QAT 5": (recipes.FINETUNE, recipes.QAT),
    "fine-tune 10, QAT 5": (recipes.FINETUNE.replace(epochs=10), recipes.QAT),
    "fine-tune 5, QAT 10": (recipes.FINETUNE, recipes.QAT.replace(epochs=10)),
    "fine-tune 10, QAT 10": (recipes.FINETUNE.replace(epochs=10), recipes.QAT.replace(epochs=10)),
    "cosine rate, fine-tune 5, QAT 5": (recipes.FINETUNE.replace(schedule="cosine"),
                                        recipes.QAT.replace(schedule="cosine")),
}


def main() -> None:
    args = teachers.sweep_parser(__doc__).parse_args()
    holdout, teacher = teachers.held_out_start(args)
    accuracy = {"784-128-10 teacher": [], "distilled student (float32)": [], **{v: [] for v in VARIANTS}}
    start = time.perf_counter()
    for seed in args.seeds:
        reference = training.load_or_train_teacher(holdout, epochs=args.epochs, seed=seed)
        accuracy["784-128-10 teacher"].append(training.evaluate(reference, holdout.x_test, holdout.y_test))
        student = distillation.train_student(holdout, teacher=teacher, seed=seed, epochs=args.epochs)
        accuracy["distilled student (float32)"].append(training.evaluate(student, holdout.x_test, holdout.y_test))
        for variant, (finetune, qat) in VARIANTS.items():
            final = recipes.compress(student, holdout, sparsity=SPARSITY, quant=BITS, teacher=teacher,
                                     finetune=finetune, qat=qat, seed=seed)
            accuracy[variant].append(training.evaluate(final, holdout.x_test, holdout.y_test))
        print(f"seed {seed}: " + ", ".join(f"{values[-1]:.1%}" for values in accuracy.values()), flush=True)
    seconds = time.perf_counter() - start
    pipeline, names = accuracy[next(iter(VARIANTS))], list(VARIANTS)
    rows = []
    print(f"{'':>36}  held-out accuracy (mean ± std)  vs the pipeline's recipe   vs the teacher (paired by seed)")
    for row_name, values in accuracy.items():
        versus_pipeline = stats.paired_difference(values, pipeline) if row_name in names[1:] else None
        versus_teacher = stats.paired_difference(values, accuracy["784-128-10 teacher"]) \
            if row_name != "784-128-10 teacher" else None
        rows.append({"recipe": row_name, "seeds": args.seeds, "accuracies": values,
                     "vs_pipeline": versus_pipeline, "vs_teacher": versus_teacher})
        print(f"{row_name:>36}  {measure.over_seeds(values):>28}  "
              f"{'' if versus_pipeline is None else f'{versus_pipeline[0]:+.2%} ± {versus_pipeline[1]:.2%} (se)':>24}"
              f"   {'' if versus_teacher is None else f'{versus_teacher[0]:+.2%} ± {versus_teacher[1]:.2%} (se)'}")
    chosen = stats.choose_over_seeds(pipeline, {v: accuracy[v] for v in names[1:]})
    print(f"chosen: {chosen or 'the pipeline recipe (no variant has a gain whose 95% t interval lies above zero)'}")
    print(f"{len(args.seeds)} seeds in {seconds:.0f} s, {args.threads} threads")
    if args.json:
        document = {"command": " ".join(["python scripts/final_recipe.py", *map(shlex.quote, sys.argv[1:])]),
                    "machine": measure.machine_record(args.threads), "holdout_images": len(holdout.y_test),
                    "sparsity": SPARSITY, "bits": BITS, "seconds": round(seconds, 1), "chosen": chosen, "rows": rows}
        files.atomic_write(args.json, lambda f: f.write((json.dumps(document, indent=2) + "\n").encode()))


if __name__ == "__main__":
    main()
