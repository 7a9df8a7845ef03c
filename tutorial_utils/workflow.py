"""The whole chain as one function: a checked PipelineConfig in, a ledger and a complete set of files out.

    reference teacher -> (distillation teacher) -> student -> distilled student -> (recipes.narrow)
        -> (recipes.prune_) -> recipes.quantize_aware -> storage.save (+ entropy coding) -> int8 deployment

Every option is checked when the PipelineConfig is made, and the output folder before any training;
outputs are staged beside the folder and published as one set (`files.publish_folder`) with a
MANIFEST.json, so an interrupted run leaves the previous set whole. `pipeline` is the command line
that parses its options into a PipelineConfig.

Example:
    >>> ledger = run(PipelineConfig(out="runs/quick", epochs=2, finetune_epochs=1, qat_epochs=1))
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
import shutil
import tempfile
import time

import torch
from torch import nn

from tutorial_utils import (data, deploy, distillation, files, int8, machine, measure, models, onnx_export, plots,
                            quantization, recipes, storage, training)

PipelineConfig, TEACHERS = recipes.PipelineConfig, recipes.TEACHERS  # where the options are defined


OUTPUTS = ("ledger.csv", "ledger.json", "pareto.png", "model.dcmp", "model.onnx", "model-int8.onnx",
           "model-pixels.onnx", files.MANIFEST)


def check_out(out: str) -> pathlib.Path:
    """The output folder, checked now, so that a bad --out fails before any training.

    It may be new, or a folder that holds only the pipeline's own outputs (it is replaced as a whole).
    Leftovers of killed runs beside it are removed.
    """
    path = pathlib.Path(out).expanduser()
    if path.is_symlink() or path.resolve() in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents):   # e.g. --out .
        raise ValueError(f"out={out!r} is a symbolic link, or the working folder or one above it, which cannot be "
                         "replaced as a whole; give a folder of its own for the run's outputs")
    if path.exists() and not path.is_dir():
        raise ValueError(f"out={out!r} exists and is not a folder")
    if path.is_dir():
        # only our own outputs, and the hidden temporaries of our own killed writes (.NAME.XXXX.tmp), may go
        stems = {name.split(".")[0] for name in OUTPUTS}
        foreign = sorted(p.name for p in path.iterdir() if p.name not in OUTPUTS and not (
            p.is_file() and p.name.startswith(".") and p.name.endswith(files.TMP_SUFFIX)
            and p.name[1:].split(".")[0] in stems))
        if foreign:
            raise ValueError(f"out={out!r} holds files the pipeline did not write ({', '.join(foreign[:5])}); "
                             f"the folder is replaced as a whole, so choose a new or empty folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise ValueError(f"out={out!r} cannot be written ({exc.strerror or exc})") from exc
    files.remove_stale_stages(path.parent, path.name)
    return path


def run(config: PipelineConfig, *, command: str | None = None) -> measure.Ledger:
    """Run every stage; return the ledger. The outputs (ledger.csv, ledger.json, pareto.png, model.dcmp,
    the ONNX files with --deploy onnx, and MANIFEST.json) are written into a hidden folder beside config.out
    and published as one set: a run that is interrupted leaves the previous set whole.

    Side effects: reseeds the global generators for each seed (training.setup); torch's thread count and
    DC_CACHE_DIR (set from config.cache_dir) are what the run uses, and are restored when it ends."""
    target, start = check_out(config.out), time.perf_counter()
    out = pathlib.Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.stage-"))
    os.chmod(out, 0o777 & ~files.current_umask())  # mkdtemp makes 0700; publish with mkdir's permissions
    threads, cache_dir = torch.get_num_threads(), os.environ.get("DC_CACHE_DIR")
    try:
        ledgers = []
        first, *others = config.seeds or (config.seed,)  # the first seed's model is the one published
        ledgers.append(_run(dataclasses.replace(config, seed=first), out, start))
        for seed in others:
            with tempfile.TemporaryDirectory() as scratch:
                ledgers.append(_run(dataclasses.replace(config, seed=seed), pathlib.Path(scratch), start))
        ledger = ledgers[0] if len(ledgers) == 1 else _over_seeds(ledgers, config.seeds)
        ledger.command = command  # recorded in ledger.json, so a result file says how to reproduce it
        ledger.to_csv(out / "ledger.csv")
        ledger.to_json(out / "ledger.json")
        fig = plots.pareto(ledger.rows, reference_bytes=ledger.rows[0]["bytes"])
        files.atomic_write(out / "pareto.png", lambda f: fig.savefig(f, format="png", dpi=100))
        files.write_manifest(out)
        files.publish_folder(out, target)
    finally:
        shutil.rmtree(out, ignore_errors=True)  # gone after publishing; removed if anything failed
        torch.set_num_threads(threads)
        os.environ.pop("DC_CACHE_DIR", None) if cache_dir is None else os.environ.update(DC_CACHE_DIR=cache_dir)
    written = ", ".join(name for name in OUTPUTS if (target / name).exists())
    print(f"wrote {target}/{written} in {time.perf_counter() - start:.0f} s")
    return ledger


def _over_seeds(ledgers: list[measure.Ledger], seeds: tuple[int, ...]) -> measure.Ledger:
    """One ledger from several seeds: the first seed's row, with accuracy = the mean over seeds, accuracy_std,
    seeds and accuracies; prints each stage's mean +- std and the final model's paired view of the seeds."""
    combined = copy.deepcopy(ledgers[0])
    # per seed, each run's own paired test (the rows become means; one seed's test alone would mislead)
    combined.notes = {"final_vs_teacher_by_seed": {str(seed): ledger.notes.get("final_vs_teacher")
                                                   for seed, ledger in zip(seeds, ledgers)}}
    if "ort_call" in ledgers[0].notes:   # how the first seed's ONNX Runtime rows, kept as they are, were timed
        combined.notes["ort_call"] = ledgers[0].notes["ort_call"]
    print(f"\nover seeds {', '.join(map(str, seeds))}:")
    for i, row in enumerate(combined.rows):
        accuracies = [ledger.rows[i]["accuracy"] for ledger in ledgers]
        mean, std = measure.mean_std(accuracies)
        row.update(accuracy=mean, accuracy_std=std, seeds=list(seeds), accuracies=accuracies)
        print(f"  {row['stage']:<50} {mean:.2%} ± {std:.2%} (n = {len(seeds)})")
    final = next(i for i, row in enumerate(combined.rows) if row["stage"].endswith("+ entropy coding"))
    differences = [ledger.rows[final]["accuracy"] - ledger.rows[0]["accuracy"] for ledger in ledgers]
    mean, std = measure.mean_std(differences)
    print(f"  final model minus the 784-128-10 teacher, per seed: {', '.join(f'{d:+.2%}' for d in differences)} "
          f"(mean {mean:+.2%} ± {std:.2%})")
    return combined


def _run(config: PipelineConfig, out: pathlib.Path, start: float) -> measure.Ledger:
    if config.cache_dir is not None:
        os.environ["DC_CACHE_DIR"] = str(pathlib.Path(config.cache_dir).expanduser().resolve())   # as `teachers`
    device = training.setup(config.seed, threads=config.threads)
    splits = data.load(config.dataset, root=config.data_dir)
    log = lambda stage, text: print(f"[{time.perf_counter() - start:6.1f} s] {stage}: {text}", flush=True)  # noqa: E731
    log("data", f"{config.dataset}, {len(splits.x_train):,} train / {len(splits.x_test):,} test")
    ledger = measure.Ledger(threads=config.threads)
    ledger.machine["training_device"] = device.type   # DC_DEVICE=cuda trains other weights: the record says so
    log("machine", f"{machine.describe(ledger.machine)}; training on {device.type} (measuring on the cpu)")

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
    own = row(f"student {'-'.join(map(str, sizes))} from scratch (float32)", student)
    if config.teacher == "self":  # the dense student teaches its pruned and quantized copies (made below)
        teacher = student
    elif teacher is not None:
        student = distillation.train_student(splits, teacher=teacher, seed=config.seed, sizes=sizes, kd=kd,
                                             config=config.student_config(), device=device)
        row(f"student distilled, T={config.temperature:g} (float32)", student)
    stage = {"teacher": teacher, "kd": kd, "seed": config.seed, "device": device}
    if config.narrow > 0:   # whole hidden units go: fewer MACs that a dense kernel really skips
        wide = models.layer_sizes(student)
        student = recipes.narrow(student, splits, amount=config.narrow, config=config.finetune_config(), **stage)
        removed = 1 - sum(models.layer_sizes(student)[1:-1]) / sum(wide[1:-1])   # as removed, not as asked
        row(f"narrowed to {'-'.join(map(str, models.layer_sizes(student)))} ({removed:.0%} of hidden "
            f"units removed) + fine-tuned (float32)", student)
    pruned, masks = copy.deepcopy(student), None
    if config.sparsity > 0:
        masks = recipes.prune_(pruned, splits, sparsity=config.sparsity, config=config.finetune_config(), **stage)
        row(f"pruned {config.sparsity:.0%} + fine-tuned (masked float32)", pruned)
    final = recipes.quantize_aware(pruned, splits, quant=config.bits, config=config.qat_config(), masks=masks, **stage)
    final = models.on_cpu(final)   # saved, reloaded and compared on the CPU, where the file is run
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
                       parameters=final_row["parameters"], nonzeros=final_row["nonzeros"], macs=final_row["macs"])
    if config.deploy == "onnx":
        _deploy_onnx(config, reloaded, out, row, final_row, deployed_row, ledger)
    print(f"\n{ledger}\n")
    print(f"final model: {final_row['accuracy']:.2%} ({final_row['accuracy'] - reference['accuracy']:+.2%} vs the "
          f"784-128-10 teacher), {reference['bytes'] / final_row['bytes']:.1f}x smaller than its float32 file, "
          f"{own['bytes'] / final_row['bytes']:.1f}x smaller than the student's own float32 file "
          f"({final_row['accuracy'] - own['accuracy']:+.2%} vs its accuracy)")
    right = training.correct(final, splits.x_test, splits.y_test)   # (n,) bool, per test image
    low, high = measure.wilson_interval(int(right.sum()), len(splits.y_test))
    paired = measure.paired_test(right, training.correct(reference_model, splits.x_test, splits.y_test))
    ledger.notes["final_vs_teacher"] = dataclasses.asdict(paired)   # README renders it from ledger.json
    print(f"final model on {len(splits.y_test):,} test images: 95% interval {low:.2%} to {high:.2%}; paired with the "
          f"784-128-10 teacher: {paired}")
    speedup = measure.latency_ratio(models.on_cpu(reference_model), deployed, 256, threads=config.threads)
    print(f"deployed on the int8 backend: {deployed_row['accuracy']:.2%}, latency at batch 256 {speedup:.1f}x lower "
          f"than the 784-128-10 teacher's (median of 5 alternating measurements, {config.threads} threads)")
    return ledger




def _deploy_onnx(config: PipelineConfig, final: nn.Module, out: pathlib.Path, row, final_row: dict,
                 deployed_row: dict, ledger: measure.Ledger) -> None:
    """The file's model as ONNX files run by ONNX Runtime: its own codes (model.onnx), int8 (model-int8.onnx)
    and, when its first layer holds symmetric codes, int8 on the raw pixels (model-pixels.onnx).

    Latency is ONNX Runtime's own call (deploy.latency_ms, buffers bound once; noted in the ledger as
    "ort_call"); the energy columns are those of
    the PyTorch model doing the same arithmetic (float32 for the codes decoded by MatMulNBits, int8 for int8),
    except that MatMulNBits reads its weights as it holds them, packed (deploy.held_bytes).
    """
    files_to_write = [("model.onnx", "4bit" if config.bits <= 4 else "float32", final_row),
                      ("model-int8.onnx", "int8-dynamic", deployed_row)]
    if onnx_export.takes_pixels(final):
        files_to_write.append(("model-pixels.onnx", "int8-pixels", deployed_row))
    else:   # e.g. --bits 8: pairs of uint8 x int8 products would saturate int16 on CPUs without VNNI
        print("model-pixels.onnx not written: its first layer needs symmetric codes of at most 7 bits")
    for name, file_kind, twin in files_to_write:
        source = final if file_kind in deploy.CODE_KINDS else quantization.dequantize_model(final)
        size = deploy.export(source, out / name, file_kind)
        runtime = deploy.runtime_model(out / name, threads=config.threads)
        latency = deploy.latency_ms(runtime, ledger.latency_batch_size, repeats=ledger.repeats)
        counts = {k: twin[k] for k in ("parameters", "nonzeros", "macs", "energy_nj", "energy_nj_batch")}
        if file_kind == "4bit":   # float32 multiply-adds, but 4-bit weights read: the kernel decodes as it goes
            held = deploy.held_bytes(out / name)
            counts["energy_nj"], counts["energy_nj_batch"] = (
                measure.energy_estimate(source, batch_size=batch, weight_bytes=held)["total_nj"]
                for batch in (1, ledger.latency_batch_size))
        row(f"ONNX Runtime {file_kind} ({name})", runtime, file_bytes=size, latency_ms=latency, **counts)
    ledger.notes["ort_call"] = runtime.timed_call   # how those latencies were taken (ort_session)
