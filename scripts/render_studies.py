"""README's tables of the two studies run by their own scripts: beyond accuracy (robustness, calibration,
membership inference) and the full-scale Fashion-MNIST runs and recipe."""

from __future__ import annotations

from tutorial_utils import stats

from render_common import machine_line, t_interval


def beyond_table(document: dict) -> str:
    epsilons, strong = document["epsilons"], document["strong_pgd"]
    seeds = len(document["seeds"])
    lines = ["| model | test accuracy | " + " | ".join(f"accuracy under PGD, ε = {e:g}" for e in epsilons)
             + f" | the same, ε = {epsilons[-1]:g}, {strong['steps']} steps × {strong['restarts']} starts | ECE "
               "| membership-inference AUC (seeds with p < 0.05) | best threshold's advantage (seeds with p < 0.05) |",
             "| --- | --- | " + " | ".join("---" for _ in epsilons) + " | --- | --- | --- | --- |"]
    beyond_chance = lambda values: sum(p < 0.05 for p in values)   # noqa: E731
    for name, row in document["rows"].items():
        cells = ["{:.1%} ± {:.1%}".format(*stats.mean_std(row[key])) for key in
                 ["accuracy", *[f"pgd_{e}" for e in epsilons], f"pgd_{epsilons[-1]}_strong", "ece"]]
        for statistic in ("auc", "advantage"):
            cells.append("{:.3f} ± {:.3f}".format(*stats.mean_std(row[f"mia_{statistic}"]))
                         + f" ({beyond_chance(row[f'mia_{statistic}_p'])} of {seeds})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    note = (f"Mean ± std over seeds {', '.join(map(str, document['seeds']))}; 1,000 test images, 4,000 training images. "
            "p: a permutation test (1,000 shuffles of which images are members), one-sided, per seed, "
            "uncorrected: 36 tests at 5% each find some by chance (notebook 07 corrects for that, Holm).")
    return "\n".join(lines + ["", note, "", beyond_pairs(document), "", beyond_auc_steps(document), "",
                              machine_line(document)])


BEYOND_PAIRS = (("distilled, pruned 90% (masked float32)", "student distilled (T = 4)"),   # pruned from it
                ("final: pruned 90% + 4-bit QAT", "distilled, 4-bit QAT (dense)"),        # its dense counterpart
                ("student distilled (T = 4)", "student 784-64-10 from scratch"))          # the same student on labels


def beyond_pairs(document: dict) -> str:
    """Accuracy under PGD at the largest epsilon, each compressed or distilled model against its dense or
    label-trained counterpart, paired by seed: mean difference and 95% t interval (stats.paired_interval)."""
    rows, epsilon = document["rows"], document["epsilons"][-1]
    strong = document["strong_pgd"]
    parts = []
    for a, b in BEYOND_PAIRS:
        intervals = []
        for key in (f"pgd_{epsilon}", f"pgd_{epsilon}_strong"):
            mean, low, high = stats.paired_interval(rows[a][key], rows[b][key])
            intervals.append(f"{100 * mean:+.2f} points ({t_interval(mean, low, high)})")
        parts.append(f"*{a}* minus *{b}*: {intervals[0]} with 10 steps, {intervals[1]} with "
                     f"{strong['steps']} steps × {strong['restarts']} starts")
    return (f"Accuracy under PGD at ε = {epsilon:g}, paired by seed (mean difference and its 95% t interval): "
            + "; ".join(parts) + ".")


def beyond_auc_steps(document: dict) -> str:
    """Each compression step's change of the membership-inference AUC, against the model it started from, paired
    over the same images (DeLong's test), per seed, with Holm's correction over all of them."""
    steps = document["auc_steps"]
    kept = iter(stats.holm([p for step in steps for p in step["p_value"]]))
    parts = []
    for step in steps:
        seeds = [f"{d:+.4f} ({lo:+.4f} to {hi:+.4f}){'*' if next(kept) else ''}"
                 for d, lo, hi in zip(step["diff"], step["low"], step["high"])]
        parts.append(f"*{step['model']}* minus *{step['from']}*: " + ", ".join(seeds))
    tests = sum(len(step["p_value"]) for step in steps)
    return ("Membership-inference AUC, each step against the model it started from, paired over the same images "
            f"(DeLong's test; per seed, the difference and its 95% interval; * kept by Holm's correction over these "
            f"{tests} tests): " + "; ".join(parts) + ".")


def fashion_table(document: dict) -> str:
    """Deep Compression's LeNet-300-100 row (from the paper) beside this pipeline's, over seeds."""
    rows = {r["stage"].split(" (")[0]: r for r in document["rows"]}
    dense = next(r for name, r in rows.items() if "from scratch" in name)
    final = next(r for name, r in rows.items() if name.endswith("entropy coding"))
    deployed = next(r for name, r in rows.items() if name.startswith("deployed"))
    error = lambda values: "{:.2%} ± {:.2%}".format(*stats.mean_std([1 - v for v in values]))  # noqa: E731
    seeds = ", ".join(map(str, document["rows"][0]["seeds"]))
    lines = ["| | data | float32 error | compressed error | compression vs own float32 file |",
             "| --- | --- | --- | --- | --- |",
             "| Deep Compression (Han et al., ICLR 2016), LeNet-300-100 | MNIST | 1.64% | 1.58% | 40x (1,070 KB → 27 KB) |",
             f"| this pipeline, LeNet-300-100, 92% pruned with self-distillation, 4-bit QAT, lzma (seeds {seeds}, "
             f"mean ± std) | Fashion-MNIST | {error(dense['accuracies'])} | {error(final['accuracies'])} | "
             f"{dense['bytes'] / final['bytes']:.1f}x ({dense['bytes']:,} → {final['bytes']:,} bytes, first seed) |"]
    per_seed = lambda a, b: ", ".join(f"{100 * (x - y):+.2f}" for x, y in zip(a["accuracies"], b["accuracies"]))  # noqa: E731
    notes = [f"Per seed ({seeds}), compressed minus its own float32 network: {per_seed(final, dense)} points; "
             f"the int8 deployment minus the compressed model: {per_seed(deployed, final)} points. The 784-128-10 "
             f"reference teacher: {error(rows['reference teacher 784-128-10']['accuracies'])} error."]
    return "\n".join(lines + [""] + notes + ["", machine_line(document)])


COSINE, DECAY = "cosine lr", "cosine lr + weight decay 1e-4"


PRUNED_CE, PRUNED_SD = "pruned 92%, fine-tuned with cross-entropy", "pruned 92%, fine-tuned with self-distillation"


RECIPE_COMPARISONS = [  # (what changed, (recipe, stage) with the change, (recipe, stage) without it)
    ("a cosine learning-rate decay, dense network", (COSINE, "dense float32"), ("constant lr", "dense float32")),
    ("weight decay, dense network", (DECAY, "dense float32"), (COSINE, "dense float32")),
    ("weight decay, after pruning with self-distillation", (DECAY, PRUNED_SD), (COSINE, PRUNED_SD)),
    ("weight decay, after pruning with cross-entropy", (DECAY, PRUNED_CE), (COSINE, PRUNED_CE)),
    ("self-distillation instead of cross-entropy (with weight decay)", (DECAY, PRUNED_SD), (DECAY, PRUNED_CE)),
    ("self-distillation instead of cross-entropy (without)", (COSINE, PRUNED_SD), (COSINE, PRUNED_CE)),
    ("4-bit QAT and packing, after pruning with self-distillation", (DECAY, "+ 4-bit QAT with self-distillation, packed"),
     (DECAY, PRUNED_SD)),
    ("60 instead of 30 fine-tuning epochs", (COSINE, "pruned 92%, 60 epochs of cross-entropy fine-tuning"), (COSINE, PRUNED_CE)),
    ("gradual instead of one-shot pruning", (COSINE, "gradual 50 -> 75 -> 87.5 -> 92%, 30 epochs in all, cross-entropy"),
     (COSINE, PRUNED_CE)),
    ("Han et al.'s per-layer ratios instead of one global threshold", (COSINE, "per-layer 92/91/74% (Han et al.), cross-entropy"),
     (COSINE, PRUNED_CE)),
    ("a fine-tuning rate of 2e-3 instead of 1e-3", (COSINE, "pruned 92%, self-distillation at lr 2e-3"), (COSINE, PRUNED_SD)),
    ("the 784-1200-1200-10 teacher instead of the dense network itself", (COSINE, "pruned 92%, distilled from the 784-1200-1200-10 teacher"),
     (COSINE, PRUNED_SD)),
]


def fashion_recipe_table(document: dict) -> str:
    """The recipe ablation on the validation split (scripts/fashion_recipe.py): every row, then the differences."""
    lines = ["| training | stage | validation accuracy | file |", "| --- | --- | --- | --- |"]
    for row in document["rows"]:
        size = f"{row['bytes']:,} bytes ({document['dense_bytes'] / row['bytes']:.1f}x smaller)" if row.get("bytes") else ""
        lines.append(f"| {row['recipe']} | {row['stage']} | {row['accuracy']:.2%} | {size} |")
    accuracy = {(r["recipe"], r["stage"]): r["accuracy"] for r in document["rows"]}
    n = document["validation_images"]
    p = sum(accuracy.values()) / len(accuracy)
    se = 100 * (p * (1 - p) / n) ** 0.5
    lines += ["", f"Differences, in points (one run of each on {n:,} held-out training images; the standard error of "
              f"one accuracy is {se:.1f} points, of a difference between two runs about {se * 2 ** 0.5:.1f}, so two "
              f"standard errors are about {2 * se * 2 ** 0.5:.1f} points):", ""]
    lines += [f"- {label}: {100 * (accuracy[a] - accuracy[b]):+.2f}" for label, a, b in RECIPE_COMPARISONS
              if a in accuracy and b in accuracy]
    return "\n".join(lines + ["", machine_line(document)])
