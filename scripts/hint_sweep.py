"""Hint distillation (FitNets) against logit distillation, on held-out data over seeds.

Every 784-64-10 student trains on the first 3,500 training images and is scored on the other 500
(`splits.holdout(500)`), from the 784-1200-1200-10 teacher that never saw those 500 (`teachers.HELD_OUT`),
as in scripts/kd_sweep.py; the test split is not read. Rows: no teacher; logit distillation (T = 4,
alpha = 0.9); the same loss plus beta * hint_loss on the teacher's last hidden layer (beta 0.1, 1, 10)
and on its first (beta 1). Each student of a seed starts from the same initialisation and sees the
same batches (hints.train_student pairs with distillation.train_student), so the differences to
logit distillation are paired by seed.

Usage: python scripts/hint_sweep.py [--threads 2] [--seeds 0 1 2 3 4] [--json results/hint-sweep.json]
"""

from __future__ import annotations

import json
import pathlib
import shlex
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tutorial_utils import distillation, files, hints, measure, teachers, training  # noqa: E402

KD = distillation.KDConfig(temperature=4.0, alpha=0.9)
# (row name, beta, teacher layer): None = no hints (beta None and no teacher for the first row)
RECIPES = [("no teacher", None, None), ("logit distillation", 0.0, None)] \
    + [(f"+ hints, last hidden layer, beta {b:g}", b, -1) for b in (0.1, 1.0, 10.0)] \
    + [("+ hints, first hidden layer, beta 1", 1.0, 0)]


def main() -> None:
    args = teachers.sweep_parser(__doc__).parse_args()
    holdout, teacher = teachers.held_out_start(args)
    rows, start = [], time.perf_counter()
    for recipe, beta, layer in RECIPES:
        accuracies = []
        for seed in args.seeds:
            if beta is None:
                student = distillation.train_student(holdout, seed=seed, epochs=args.epochs)
            elif beta == 0.0:
                student = distillation.train_student(holdout, teacher=teacher, seed=seed, kd=KD, epochs=args.epochs)
            else:
                student = hints.train_student(holdout, teacher=teacher, seed=seed, kd=KD, beta=beta, teacher_layer=layer,
                                              epochs=args.epochs)
            accuracies.append(training.evaluate(student, holdout.x_test, holdout.y_test))
        rows.append({"recipe": recipe, "beta": beta, "teacher_layer": layer, "seeds": args.seeds, "accuracies": accuracies})
    logit = rows[1]["accuracies"]
    print(f"{'recipe':>40}  held-out accuracy (mean ± std)   vs logit distillation, paired by seed")
    for row in rows:
        versus = measure.paired_over_seeds(row["accuracies"], logit) if row is not rows[1] else ""
        print(f"{row['recipe']:>40}  {measure.over_seeds(row['accuracies'])}   {versus}")
    seconds = time.perf_counter() - start
    print(f"{len(rows) * len(args.seeds)} students in {seconds:.0f} s, {args.threads} threads")
    if args.json:
        document = {"command": " ".join(["python scripts/hint_sweep.py", *map(shlex.quote, sys.argv[1:])]),
                    "machine": measure.machine_record(args.threads), "holdout_images": len(holdout.y_test),
                    "temperature": KD.temperature, "alpha": KD.alpha, "epochs": args.epochs,
                    "seconds": round(seconds, 1), "rows": rows}
        files.atomic_write(args.json, lambda f: f.write(json.dumps(document, indent=2).encode()))


if __name__ == "__main__":
    main()
