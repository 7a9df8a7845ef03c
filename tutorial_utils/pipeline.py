"""The command line of the whole story: `python -m tutorial_utils pipeline --help` lists the options.

It only parses: every option becomes a field of `workflow.PipelineConfig`, checked before any training
(argparse type converters from `validate`, so `--temperature inf` is refused at once), and
`workflow.run` does the work. The story itself: distil, prune with distillation, train through the
quantizer with distillation, pack into the compact file, deploy on int8. The order matters: a trained
(distilled) student knows which weights matter, so magnitude pruning has something to go on. Ratios of
bytes are against the float32 file of the 784-128-10 teacher. With `--teacher self` the dense student
is the teacher of its own pruned and quantized copies (how the Fashion-MNIST LeNet-300-100 row in
README is made).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from tutorial_utils import data, models, training, validate, workflow
from tutorial_utils.workflow import PipelineConfig, run  # noqa: F401  (public here too: pipeline.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_utils pipeline",
        description="Distil a student from a teacher, prune it, train it through the quantizer and pack it; "
                    "writes ledger.csv, ledger.json, pareto.png, model.dcmp and MANIFEST.json (their sizes and "
                    "SHA-256) to --out.")
    add = parser.add_argument
    add("--dataset", default="mnist-5k", choices=data.DATASETS, help="dataset (default: the bundled mnist-5k)")
    add("--data-dir", default=None, help="folder with the four IDX files (e.g. /usr/share/datasets/fashion-mnist)")
    add("--cache-dir", default=None,
        help="folder for cached teachers (default $DC_CACHE_DIR, else ~/.cache/distill-and-compress)")
    add("--out", default="runs/pipeline", help="output folder, replaced as a whole by the run's outputs: new, or "
                                                "one a previous run wrote (default runs/pipeline)")
    add("--teacher", default="big-teacher", choices=workflow.TEACHERS,
        help="teacher to distil from (default big-teacher, 784-1200-1200-10); 'self' distils the pruned and "
             "quantized student from its own float32 version; 'none' trains with labels only")
    add("--student", default="student", choices=sorted(models.PRESETS),
        help="student architecture (default student, 784-64-10; lenet-300-100 for the Deep Compression row)")
    add("--sparsity", type=validate.cli(validate.fraction), default=0.9,
        help="fraction of weights pruned by magnitude, in [0, 1); 0 skips the stage (default 0.9)")
    add("--narrow", type=validate.cli(validate.fraction), default=0.0,
        help="fraction of each hidden layer's units removed before magnitude pruning (structured pruning with "
             "fine-tuning), in [0, 1), removing at least one unit and keeping one: 0.5 makes 784-64-10 a "
             "784-32-10 that a dense kernel runs faster (default 0)")
    add("--bits", type=validate.cli(validate.bits), default=4,
        help="bits per weight after quantization, 1..16 (default 4)")
    add("--epochs", type=validate.cli(validate.positive_int), default=15,
        help="epochs for the reference teacher and the student (default 15)")
    add("--finetune-epochs", type=validate.cli(validate.positive_int), default=5,
        help="fine-tuning epochs after pruning, magnitude and --narrow's each (default 5)")
    add("--qat-epochs", type=validate.cli(validate.positive_int), default=5,
        help="quantization-aware training epochs (default 5)")
    add("--schedule", default="constant", choices=training.SCHEDULES,
        help="learning rate over each training stage: constant, or cosine decay to 0 (default constant)")
    add("--weight-decay", type=validate.cli(validate.nonnegative_float), default=0.0,
        help="L2 penalty while training the student, >= 0; makes its weights easier to prune (default 0)")
    add("--temperature", type=validate.cli(validate.temperature), default=4.0,
        help="distillation temperature T > 0 (default 4)")
    add("--alpha", type=validate.cli(validate.probability), default=0.9,
        help="weight of the soft term, in [0, 1] (default 0.9)")
    add("--seed", type=validate.cli(validate.nonnegative_int), default=0, help="random seed (default 0)")
    add("--seeds", type=validate.cli(validate.nonnegative_int), nargs="+", default=(),
        help="run the chain once per seed (e.g. --seeds 0 1 2): the ledger reports mean and std of accuracies; "
             "the published model is the first seed's")
    add("--threads", type=validate.cli(validate.positive_int), default=2,
        help="CPU threads for training and latency (default 2)")
    add("--deploy", default="none", choices=("none", "onnx"),
        help="onnx: also write the final model as ONNX files (model.onnx: its 4-bit codes, or float32 weights "
             "above 4 bits; model-int8.onnx; model-pixels.onnx, int8 on the raw pixels, for codes of at most 7 bits) "
             "and measure them in ONNX Runtime (needs pip install -e '.[deploy]'; default none)")
    return parser


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The PipelineConfig of parsed command-line options (argparse dest names equal the field names).
    Options that another option makes meaningless are refused (ValueError), never silently dropped."""
    default = build_parser().get_default
    if args.seeds and args.seed != default("seed"):
        raise ValueError(f"--seed {args.seed} with --seeds {' '.join(map(str, args.seeds))}: give one (--seeds runs "
                         "every seed it lists)")
    for name in ("temperature", "alpha"):
        if args.teacher == "none" and getattr(args, name) != default(name):
            raise ValueError(f"--{name} {getattr(args, name)} with --teacher none: there is no distillation to set")
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(PipelineConfig)}
    return PipelineConfig(**{**values, "seeds": tuple(values["seeds"])})


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message (or the help); report its status
        return exc.code if isinstance(exc.code, int) else 2
    try:
        argv = sys.argv[1:] if argv is None else argv
        run(config_from_args(args), command=" ".join(["python -m tutorial_utils pipeline", *map(shlex.quote, argv)]))
    except (ValueError, FileNotFoundError, data.DatasetUnavailableError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
