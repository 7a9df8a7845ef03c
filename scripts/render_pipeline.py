"""README's tables of the pipeline's ledgers (one run, over seeds) and of the recipe studies behind it: int8
backends, the KD sweep, hint layers, the final recipe."""

from __future__ import annotations

from tutorial_utils import stats, student_t

from render_common import energy, machine_line, t_interval, versus


def pipeline_table(document: dict) -> str:
    rows = document["rows"]
    reference = rows[0]["bytes"]
    batch = document.get("latency_batch_size", 256)
    lines = ["| stage | test accuracy | non-zeros | bytes on disk | vs reference file | latency | of float32 peak | "
             f"energy per image, batch 1 (estimate) | at batch {batch} |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, row in enumerate(rows):
        ratio = reference / row["bytes"]
        size = "1x" if i == 0 else f"({1 / ratio:.0f}x larger)" if ratio < 1 else f"{ratio:.{0 if ratio < 10 else 1}f}x"
        latency = f"{row['latency_ms']:.3f} ms" if row["latency_ms"] < 1 else f"{row['latency_ms']:.1f} ms"
        of_peak = f"{row['of_peak']:.1%}" if row.get("of_peak") is not None else ""
        lines.append(f"| {row['stage']} | {row['accuracy']:.2%} | {row['nonzeros']:,} | {row['bytes']:,} | {size} | "
                     f"{latency} | {of_peak} | {energy(row['energy_nj'])} | {energy(row['energy_nj_batch'])} |")
    return "\n".join(lines + ["", machine_line(document)])


def seeds_table(document: dict) -> str:
    seeds = document["rows"][0]["seeds"]
    lines = ["| stage | test accuracy, mean ± std | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "| --- | --- | " + " | ".join("---" for _ in seeds) + " |"]
    for row in document["rows"]:
        per_seed = " | ".join(f"{a:.2%}" for a in row["accuracies"])
        lines.append(f"| {row['stage']} | {row['accuracy']:.2%} ± {row['accuracy_std']:.2%} | {per_seed} |")
    return "\n".join(lines + ["", machine_line(document)])


def ledger_over_seeds_table(document: dict) -> str:
    """A pipeline ledger over seeds with its costs: accuracy mean ± std, MACs, bytes and the first seed's latency."""
    rows, batch = document["rows"], document.get("latency_batch_size", 256)
    reference = rows[0]["latency_ms"]
    lines = [f"| stage | test accuracy, mean ± std over {len(rows[0]['seeds'])} seeds | MACs per image | bytes on disk | "
             f"latency at batch {batch} (seed 0) | vs the reference teacher's |", "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['stage']} | {row['accuracy']:.2%} ± {row['accuracy_std']:.2%} | {row['macs']:,} | "
                     f"{row['bytes']:,} | {row['latency_ms']:.3f} ms | {versus(reference / row['latency_ms'])} |")
    return "\n".join(lines + ["", machine_line(document)])


def pipeline_notes(document: dict) -> str:
    """What one pipeline ledger says, with its numbers (the bullets under README's pipeline table)."""
    rows = document["rows"]
    reference = rows[0]
    final = next(r for r in rows if r["stage"].endswith("+ entropy coding"))
    backend = next(r for r in rows if r["stage"].startswith("deployed"))
    runtime = [r for r in rows if r["stage"].startswith("ONNX Runtime")]
    fastest = min(rows, key=lambda r: r["latency_ms"])
    images = round(abs(backend["accuracy"] - final["accuracy"]) * 1000)
    lines = [
        f"- In this run the final model is {100 * (reference['accuracy'] - final['accuracy']):.1f} points below the "
        f"reference teacher with a file {reference['bytes'] / final['bytes']:.1f}x smaller. On PyTorch's int8 backend "
        f"it scores {100 * (backend['accuracy'] - final['accuracy']):+.1f} points ({images} of 1,000 images) and takes "
        f"{backend['latency_ms']:.3f} ms at batch 256 against the reference's {reference['latency_ms']:.3f} ms "
        f"({reference['latency_ms'] / backend['latency_ms']:.1f}x lower; the pipeline also prints a side-by-side ratio)."]
    paired = document.get("notes", {}).get("final_vs_teacher")
    if paired:   # stats.PairedTest as a dict: one run's image-by-image comparison
        verdict = ("one run cannot tell the two apart" if paired["low"] <= 0 <= paired["high"] else
                   "this run's gap is larger than its noise")
        lines.append(
            f"- Paired image by image with the reference (the pipeline's last lines): {paired['diff']:+.2%}, "
            f"{paired['confidence']:.0%} interval {paired['low']:+.2%} to {paired['high']:+.2%}, "
            f"p = {paired['p_value']:.2g}, decided by the {paired['only_a'] + paired['only_b']} images where they "
            f"disagree ({paired['only_a']} right only for the final model, {paired['only_b']} only for the reference): "
            f"{verdict}, and the seeds below say how far the final model can fall.")
    if runtime:
        pixels = next((r for r in runtime if "int8-pixels" in r["stage"]), None)
        lines.append(
            f"- The {len(runtime)} ONNX Runtime rows (`--deploy onnx`) run the same model from files of "
            + ", ".join(f"{r['bytes']:,}" for r in runtime) + " bytes (dense kernels: each zero weight is stored)"
            + (f"; the int8-pixels file, the codes meeting the raw uint8 image, scores {pixels['accuracy']:.2%}"
               + (" like the .dcmp file's model" if pixels["accuracy"] == final["accuracy"] else
                  f" against the .dcmp file's model's {final['accuracy']:.2%}") if pixels else "")
            + f". The fastest row of this ledger is \"{fastest['stage']}\", {fastest['latency_ms']:.3f} ms "
            f"({reference['latency_ms'] / fastest['latency_ms']:.1f}x lower than the reference's); the energy columns "
            f"of these rows are those of the PyTorch model doing the same arithmetic, with the 4-bit row's weights read "
            f"packed, as MatMulNBits holds them.")
    lines.append(
        f"- \"Of float32 peak\" divides each model's achieved 2 x MACs x 256 / latency by the machine's measured "
        f"matrix-product peak: integer kernels can pass 100% (up to {100 * max(r['of_peak'] for r in rows):.0f}% here), "
        f"since an int8 multiply-add is cheaper than a float32 one.")
    return "\n".join(lines)


def int8_table(document: dict) -> str:
    backends = document["backends"]
    names = {"torchao": "torchao (eager)", "torchao+compile": "torchao + `torch.compile`",
             "legacy": "legacy `quantize_dynamic` (deprecated)"}
    lines = ["| batch | float32 | " + " | ".join(names.get(b, b) for b in backends) + " |",
             "| --- | --- | " + " | ".join("---" for _ in backends) + " |"]
    for row in document["rows"]:
        cells = [row[b] if isinstance(row[b], str) else f"{row['fp32'] / row[b]:.2f}x" for b in backends]
        lines.append(f"| {row['batch_size']} | {row['fp32']:.3f} ms | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", machine_line(document)])


def kd_sweep_table(document: dict) -> str:
    rows = document["rows"]
    baseline = rows[0]["accuracies"]
    lines = [f"| recipe | held-out accuracy ({document['holdout_images']} images), mean ± std | "
             "vs no teacher, paired by seed (points, mean ± std) | seeds higher | 95% t interval of the difference "
             "(points) |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        recipe = ("no teacher" if row["teacher"] == "none"
                  else f"{row['teacher']}, T = {row['temperature']:g}, α = {row['alpha']:g}")
        mean, std = stats.mean_std(row["accuracies"])
        differences = [100 * (a - b) for a, b in zip(row["accuracies"], baseline)]
        d_mean, d_std = stats.mean_std(differences)
        higher = sum(d > 0 for d in differences)
        interval = "" if row is rows[0] else t_interval(*stats.paired_interval(row["accuracies"], baseline))
        lines.append(f"| {recipe} | {mean:.2%} ± {std:.2%} | {d_mean:+.2f} ± {d_std:.2f} | "
                     f"{'' if row is rows[0] else f'{higher} of {len(differences)}'} | {interval} |")
    return "\n".join(lines + ["", machine_line(document)])


def hint_sweep_table(document: dict) -> str:
    rows = document["rows"]
    logit = next(row for row in rows if row["recipe"] == "logit distillation")["accuracies"]
    lines = [f"| recipe (T = {document['temperature']:g}, α = {document['alpha']:g}) | held-out accuracy "
             f"({document['holdout_images']} images), mean ± std | vs logit distillation, paired by seed (points, mean ± std) | "
             "95% t interval of the difference (points) |", "| --- | --- | --- | --- |"]
    for row in rows:
        mean, std = stats.mean_std(row["accuracies"])
        if row["accuracies"] is logit:
            lines.append(f"| {row['recipe']} | {mean:.2%} ± {std:.2%} |  |  |")
            continue
        d_mean, d_std = stats.mean_std([100 * (a - b) for a, b in zip(row["accuracies"], logit)])
        lines.append(f"| {row['recipe']} | {mean:.2%} ± {std:.2%} | {d_mean:+.2f} ± {d_std:.2f} | "
                     f"{t_interval(*stats.paired_interval(row['accuracies'], logit))} |")
    return "\n".join(lines + ["", machine_line(document)])


def final_recipe_table(document: dict) -> str:
    """Compression recipes of the final model on held-out data (scripts/final_recipe.py), paired by seed."""
    rows = document["rows"]
    n = len(rows[0]["seeds"])
    lines = [f"| recipe | held-out accuracy ({document['holdout_images']} images), mean ± std over {n} seeds | "
             "vs the pipeline's recipe (points, mean ± standard error; 95% t interval) | vs the 784-128-10 teacher "
             "(points, mean ± standard error; 95% t interval) |", "| --- | --- | --- | --- |"]

    t_q = student_t.quantile(0.95, n - 1)

    def paired(difference: list[float] | None) -> str:
        if difference is None:
            return ""
        mean, se = difference
        return f"{100 * mean:+.2f} ± {100 * se:.2f}; {t_interval(mean, mean - t_q * se, mean + t_q * se)}"

    for row in rows:
        mean, std = stats.mean_std(row["accuracies"])
        lines.append(f"| {row['recipe']} | {mean:.2%} ± {std:.2%} | {paired(row['vs_pipeline'])} | "
                     f"{paired(row['vs_teacher'])} |")
    chosen = document["chosen"] or "none; the pipeline's recipe stays"
    return "\n".join(lines + ["", f"Chosen (a gain over the pipeline's recipe whose 95% t interval lies above zero): {chosen}.",
                              "", machine_line(document)])
