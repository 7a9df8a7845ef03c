"""Choose the distillation recipe on held-out data: teachers, temperatures and weights over seeds.

Every student trains on the first 3,500 training images and is scored on the other 500
(`splits.holdout(500)`); the teachers never saw those 500 either (`teachers.recipes`). The test split
is not read. Each row is one recipe over the same seeds; the difference to the no-teacher students is
paired by seed (same initialisation and data order), with its mean, std and the number of seeds it wins.

Usage: python scripts/kd_sweep.py [--threads 2] [--seeds 0 1 2 3 4] [--json results/kd-sweep.json]
"""

from __future__ import annotations

import json
import shlex
import sys
import time

from tutorial_utils import data, distillation, files, measure, teachers, training

# (teacher, temperature, alpha): the no-teacher baseline, the article's 784-128-10 teacher, and the big
# teacher over temperatures (alpha 0.9) and weights (T = 4).
RECIPES = [("none", None, None), ("784-128-10", 4.0, 0.9)] + [("784-1200-1200-10", t, 0.9) for t in (1.0, 2.0, 4.0, 8.0, 20.0)] \
    + [("784-1200-1200-10", 4.0, a) for a in (0.5, 1.0)]


def main() -> None:
    args = teachers.sweep_parser(__doc__).parse_args()
    training.setup(0, threads=args.threads)
    splits = data.load("mnist-5k")
    holdout = splits.holdout(teachers.HOLDOUT_IMAGES)
    cached = teachers.cache_all(splits, seed=0, threads=args.threads, epochs=args.epochs, names=teachers.HELD_OUT)
    guides = {"none": None, "784-128-10": cached["784-128-10, held-out split"],
              "784-1200-1200-10": cached["784-1200-1200-10, held-out split"]}
    rows, start = [], time.perf_counter()
    for name, temperature, alpha in RECIPES:
        knobs = {} if name == "none" else {"temperature": temperature, "alpha": alpha}
        accuracies = [training.evaluate(distillation.train_student(holdout, teacher=guides[name], seed=seed,
                                                                   epochs=args.epochs, **knobs),
                                        holdout.x_test, holdout.y_test) for seed in args.seeds]
        rows.append({"teacher": name, "temperature": temperature, "alpha": alpha, "seeds": args.seeds,
                     "accuracies": accuracies})
    baseline = rows[0]["accuracies"]
    print(f"{'teacher':>18} {'T':>5} {'alpha':>5}  held-out accuracy (mean ± std)  vs no teacher, paired by seed")
    for row in rows:
        mean, std = measure.mean_std(row["accuracies"])
        differences = [a - b for a, b in zip(row["accuracies"], baseline)]
        row["difference_mean"], row["difference_std"] = measure.mean_std(differences)
        row["wins"] = sum(d > 0 for d in differences)
        print(f"{row['teacher']:>18} {row['temperature'] or '':>5} {row['alpha'] or '':>5}  {mean:.2%} ± {std:.2%}"
              f"{'':>14}{row['difference_mean']:+.2%} ± {row['difference_std']:.2%} ({row['wins']}/{len(differences)} seeds higher)")
    print(f"{len(rows) * len(args.seeds)} students in {time.perf_counter() - start:.0f} s, {args.threads} threads")
    if args.json:
        document = {"command": " ".join(["python scripts/kd_sweep.py", *map(shlex.quote, sys.argv[1:])]),
                    "machine": measure.machine_record(args.threads), "holdout_images": len(holdout.y_test), "rows": rows}
        files.atomic_write(args.json, lambda f: f.write(json.dumps(document, indent=2).encode()))


if __name__ == "__main__":
    main()
