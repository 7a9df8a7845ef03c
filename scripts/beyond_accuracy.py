"""Beyond accuracy over seeds: robustness, calibration and membership inference of the chain's models.

For each seed, the 784-128-10 reference teacher and the five models of `chain.build` (cached after the
first run), all distilled from one big teacher (the first seed's): clean accuracy, accuracy under PGD (10 steps, L-infinity, pixel units) at two epsilons
and, to check that 10 steps suffice, under a stronger PGD at the larger one (STRONG: more steps, more random
starts; an image counts as right only if it survives them all), the expected calibration error on the test
set (15 bins, no temperature scaling), and the loss-threshold membership-inference attack (training images
against test images): its AUC and best-threshold advantage, each with a permutation test's p-value
(privacy.permutation_test, 1,000 shuffles), and each compression step's change of that AUC against the model
it started from, paired over the same images (privacy.paired_auc_test, DeLong's test). Writes one document
for README.

Usage: python scripts/beyond_accuracy.py [--seeds 0 1 2] [--json results/beyond-accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from tutorial_utils import (calibration, chain, data, distillation, files, machine, privacy, robustness, training,
                            validate)

EPSILONS = (0.05, 0.1)
STRONG = {"steps": 100, "restarts": 5}             # at EPSILONS[-1]
NAMES = {"scratch": "student 784-64-10 from scratch", "distilled": "student distilled (T = 4)",
         "pruned": "distilled, pruned 90% (masked float32)", "qat": "distilled, 4-bit QAT (dense)",
         "final": "final: pruned 90% + 4-bit QAT"}
STEPS = (("distilled", "scratch"), ("pruned", "distilled"), ("qat", "distilled"), ("final", "pruned"))  # (model, from)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=validate.cli(validate.nonnegative_int), nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=validate.cli(validate.positive_int), default=2)
    parser.add_argument("--json", default=None, help="also write the results with the command and machine record")
    args = parser.parse_args()
    training.setup(0, threads=args.threads)
    splits = data.load("mnist-5k")
    x, y = splits.x_test, splits.y_test
    rows: dict[str, dict[str, list[float]]] = {}
    steps = [{"model": NAMES[a], "from": NAMES[b], "diff": [], "low": [], "high": [], "p_value": []} for a, b in STEPS]
    # One big teacher (seed of the first run), as in notebooks 05 and 07; the students and the reference per seed.
    teacher = training.load_or_train_teacher(splits, **distillation.BIG_TEACHER_RECIPE, seed=args.seeds[0])
    for seed in args.seeds:
        reference = training.load_or_train_teacher(splits, epochs=15, seed=seed)
        zoo = {"teacher 784-128-10": reference, **{NAMES[k]: m for k, m in chain.build(splits, teacher, seed=seed).items()}}
        losses = {name: (privacy.per_image_loss(model, splits.x_train, splits.y_train), privacy.per_image_loss(model, x, y))
                  for name, model in zoo.items()}   # (members, non-members)
        for step in steps:
            test = privacy.paired_auc_test(*losses[step["model"]], *losses[step["from"]])
            for key in ("diff", "low", "high", "p_value"):
                step[key].append(test[key])
        for name, model in zoo.items():
            row = rows.setdefault(name, {})
            row.setdefault("accuracy", []).append(training.evaluate(model, x, y))
            for epsilon in EPSILONS:
                row.setdefault(f"pgd_{epsilon}", []).append(robustness.robust_accuracy(model, x, y, epsilon=epsilon))
            row.setdefault(f"pgd_{EPSILONS[-1]}_strong", []).append(
                robustness.robust_accuracy(model, x, y, epsilon=EPSILONS[-1], **STRONG))
            row.setdefault("ece", []).append(calibration.expected_calibration_error(training.predict(model, x), y))
            test = privacy.permutation_test(*losses[name])
            for statistic in ("auc", "advantage"):
                row.setdefault(f"mia_{statistic}", []).append(test[statistic]["observed"])
                row.setdefault(f"mia_{statistic}_p", []).append(test[statistic]["p_value"])
        print(f"seed {seed} done", flush=True)
    for name, row in rows.items():
        print(name, {k: [round(v, 4) for v in values] for k, values in row.items()})
    for step in steps:
        print(f"AUC, {step['model']} - {step['from']}:", [round(v, 4) for v in step["diff"]], "p", step["p_value"])
    if args.json:
        document = {"command": "python scripts/beyond_accuracy.py " + shlex.join(sys.argv[1:]), "seeds": args.seeds,
                    "epsilons": list(EPSILONS), "strong_pgd": STRONG, "machine": machine.record(threads=args.threads), "rows": rows,
                    "auc_steps": steps}
        files.atomic_write(args.json, lambda f: f.write((json.dumps(document, indent=2) + "\n").encode()))


if __name__ == "__main__":
    main()
