"""Every teacher the notebooks use, and the chain's models they share, trained once into the cache:
`python -m tutorial_utils teachers`.

Notebooks 04 and 05 need a 784-1200-1200-10 teacher that takes about 20 s to train, and notebook 04 one
more of its kind (trained without shifted inputs); scripts/kd_sweep.py needs both sizes trained without
the 500 held-out images (`HELD_OUT`). Each
notebook trains what is missing from the cache itself; running this command first (before a class, or
in CI before the notebooks) moves that one-off cost out of the lessons. The recipes are the notebooks'
own, so the cache keys match: same data, seed, epochs and CPU threads. The command also builds the
distil-and-compress chain's models (`chain.build`) for the three seeds notebooks 05 and 07 compare, which
notebooks 05, 06 and 07 share (about 15 s); notebook 05 still trains seed 0's chain step by step.

Example:
    >>> cache_all(data.load("mnist-5k"), seed=0, threads=2)      # {name: model}, trained or loaded
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn

from tutorial_utils import chain, data, distillation, models, training, validate

HOLDOUT_IMAGES = 500  # what notebook 04 holds out of the training images: splits.holdout(500)
PLAIN_BIG_TEACHER_RECIPE = {**distillation.BIG_TEACHER_RECIPE, "max_shift": 0}  # notebook 04, exercise 5


def recipes(splits: data.Splits, *, epochs: int = 15) -> dict[str, tuple[data.Splits, dict]]:
    """{name: (splits it trains on, load_or_train_teacher keywords)} for every teacher of notebooks 01-05."""
    validate.positive_int("epochs", epochs)
    holdout = splits.holdout(HOLDOUT_IMAGES)
    return {"784-128-10": (splits, {"epochs": epochs}),
            "784-1200-1200-10": (splits, dict(distillation.BIG_TEACHER_RECIPE)),
            "784-128-10, held-out split": (holdout, {"epochs": epochs}),
            "784-1200-1200-10, held-out split": (holdout, dict(distillation.BIG_TEACHER_RECIPE)),
            "784-1200-1200-10, no shifted inputs": (splits, dict(PLAIN_BIG_TEACHER_RECIPE))}


HELD_OUT = ("784-128-10, held-out split", "784-1200-1200-10, held-out split")
NOTEBOOK_TEACHERS = ("784-128-10", "784-1200-1200-10", "784-1200-1200-10, no shifted inputs")
CHAIN_SEEDS = 3  # notebooks 05 and 07 build the chain for DC_SEED, DC_SEED + 1 and DC_SEED + 2


def cache_all(splits: data.Splits, *, seed: int = 0, threads: int = 2, epochs: int = 15,
              names: tuple[str, ...] = NOTEBOOK_TEACHERS,
              cache_dir: str | os.PathLike | None = None, device: torch.device | str | None = None,
              progress: bool = False) -> dict[str, nn.Module]:
    """Load or train the teachers `names` of `recipes` (default: the notebooks'), with `threads` CPU threads
    (part of the cache key).

    Side effects: writes missing checkpoints to the cache; sets torch's thread count to `threads` while
    training and restores it after. Returns {name: model}.
    """
    validate.positive_int("threads", threads)
    known = recipes(splits, epochs=epochs)
    for name in names:
        validate.choice("names", name, tuple(known))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        models = {}
        for name in names:
            split, recipe = known[name]
            start = time.perf_counter()
            models[name] = training.load_or_train_teacher(split, **recipe, seed=seed, cache_dir=cache_dir,
                                                          device=device)
            if progress:
                print(f"{name:>36}: ready in {time.perf_counter() - start:5.1f} s", flush=True)
        return models
    finally:
        torch.set_num_threads(previous)


def _chain_seed(name: str, seed: object) -> int:
    """A first seed whose chain seeds, up to seed + CHAIN_SEEDS - 1, are all valid seeds (0..2^32 - 1)."""
    return validate.integer(name, seed, low=0, high=2**32 - CHAIN_SEEDS)


def cache_chain(splits: data.Splits, teacher: nn.Module, *, seed: int = 0, threads: int = 2,
                epochs: int = 15) -> None:
    """chain.build's five models for seeds seed .. seed + CHAIN_SEEDS - 1 with the notebooks' budgets
    (recipes.FINETUNE, recipes.QAT), distilled from `teacher` (the notebooks' 784-1200-1200-10).

    Side effects: writes the missing models to files.cache_dir("chain"); sets torch's thread count to
    `threads` while building (part of the cache key) and restores it after.
    """
    _chain_seed("seed", seed)
    validate.positive_int("threads", threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for s in range(seed, seed + CHAIN_SEEDS):
            chain.build(splits, teacher, seed=s, epochs=epochs)
    finally:
        torch.set_num_threads(previous)


def prepare(splits: data.Splits, *, seed: int = 0, threads: int = 2, epochs: int = 15,
            device: torch.device | str | None = None, progress: bool = False) -> dict[str, nn.Module]:
    """Everything the notebooks share, trained once into the cache: cache_all's teachers, then cache_chain's
    models distilled from the 784-1200-1200-10 one (what the command, CI's test session and
    scripts/notebooks.py times run before the notebooks). `device` is part of the teachers' cache key: give
    the one the notebooks use (`training.setup`'s). Returns the teachers; side effects as theirs.
    """
    start = time.perf_counter()
    models = cache_all(splits, seed=seed, threads=threads, epochs=epochs, device=device, progress=progress)
    if progress:
        print(f"all teachers cached for {splits.name}, seed {seed}, {threads} threads "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    start = time.perf_counter()
    cache_chain(splits, models["784-1200-1200-10"], seed=seed, threads=threads, epochs=epochs)
    if progress:
        print(f"the chain's models cached for seeds {seed}-{seed + CHAIN_SEEDS - 1} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    return models


def notebook_settings() -> dict:
    """What the notebooks read from their environment, with their defaults: dataset (DC_DATASET, mnist-5k),
    data_dir (DC_DATA_DIR), seed (DC_SEED, 0), threads (DC_THREADS, 2), epochs (DC_EPOCHS, 15), and the
    device they train on (models.default_device). A bad variable is a ValueError naming it."""
    return {"dataset": validate.choice("DC_DATASET", validate.env("DC_DATASET", "mnist-5k"), data.DATASETS),
            "data_dir": validate.env("DC_DATA_DIR", None),
            "seed": validate.env("DC_SEED", 0, validate.nonnegative_int),
            "threads": validate.env("DC_THREADS", 2, validate.positive_int),
            "epochs": validate.env("DC_EPOCHS", 15, validate.positive_int), "device": models.default_device().type}


def prepare_for_notebooks(*, progress: bool = False) -> dict:
    """prepare() with the notebooks' own settings (notebook_settings), as CI's test session and
    scripts/notebooks.py times run it before the notebooks; returns those settings."""
    settings = notebook_settings()
    prepare(data.load(settings["dataset"], root=settings["data_dir"]), seed=settings["seed"],
            threads=settings["threads"], epochs=settings["epochs"], device=settings["device"], progress=progress)
    return settings


def sweep_parser(description: str) -> argparse.ArgumentParser:
    """The command line of the held-out sweeps (scripts/kd_sweep.py, hint_sweep.py, final_recipe.py): --threads,
    --seeds, --epochs (the students' and the 784-128-10 teachers'; the big teacher's recipe is fixed),
    --json (where to write the rows)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=validate.cli(validate.positive_int), default=2)
    parser.add_argument("--seeds", type=validate.cli(validate.nonnegative_int), nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=validate.cli(validate.positive_int), default=15,
                        help="epochs of the students and the 784-128-10 teachers (the big teacher's recipe is fixed)")
    parser.add_argument("--json", default=None, help="also write the rows with the command and machine record here")
    return parser


def held_out_start(args: argparse.Namespace) -> tuple[data.Splits, nn.Module]:
    """The start of a held-out sweep parsed by sweep_parser: generators seeded 0 at args.threads, the bundled
    data's holdout split (HOLDOUT_IMAGES scored, the rest trained on) and the 784-1200-1200-10 teacher that
    never saw those images (cached). Side effects: training.setup (reseeds the generators; torch's threads stay
    args.threads for the rest of the process, as a sweep wants); may train and cache the teacher."""
    training.setup(0, threads=args.threads)
    splits = data.load("mnist-5k")
    name = "784-1200-1200-10, held-out split"
    teacher = cache_all(splits, seed=0, threads=args.threads, epochs=args.epochs, names=(name,))[name]
    return splits.holdout(HOLDOUT_IMAGES), teacher


def main(argv: list[str] | None = None) -> int:
    """`python -m tutorial_utils teachers [--dataset ... --seed ... --threads ...]`: fill the cache.

    Side effect: with --cache-dir, sets DC_CACHE_DIR in this process's environment to that folder.
    """
    parser = argparse.ArgumentParser(prog="python -m tutorial_utils teachers",
                                     description="Train (or find cached) every teacher the notebooks use, and the "
                                                 "distil-and-compress chain's models they share.")
    # Defaults are the notebooks' own settings (the DC_* variables, else theirs): a room that sets
    # DC_DATASET or DC_THREADS for its notebooks prepares the cache those notebooks read.
    try:
        settings = notebook_settings()
    except ValueError as exc:
        parser.error(str(exc))
    parser.add_argument("--dataset", default=settings["dataset"], choices=data.DATASETS,
                        help="as DC_DATASET (default: $DC_DATASET, else mnist-5k)")
    parser.add_argument("--data-dir", default=settings["data_dir"],
                        help="folder with the four IDX files (full datasets); default $DC_DATA_DIR")
    parser.add_argument("--cache-dir", default=None, help="default $DC_CACHE_DIR, else ~/.cache/distill-and-compress")
    parser.add_argument("--seed", type=validate.cli(_chain_seed, parse=int), default=settings["seed"],
                        help="as DC_SEED (default: $DC_SEED, else 0)")
    parser.add_argument("--threads", type=validate.cli(validate.positive_int), default=settings["threads"],
                        help="as DC_THREADS (default: $DC_THREADS, else 2); teachers are cached per thread count")
    parser.add_argument("--epochs", type=validate.cli(validate.positive_int), default=settings["epochs"],
                        help="as DC_EPOCHS (default: $DC_EPOCHS, else 15)")
    parser.add_argument("--device", choices=models.DEVICES, default=settings["device"],
                        help="where to train; default as the notebooks: $DC_DEVICE, else cpu "
                             "(part of the cache key, so it must match theirs)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device='cuda': PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                     "use --device cpu")
    if args.cache_dir is not None:   # the cache's root, as DC_CACHE_DIR (teachers in checkpoints/, models in chain/)
        if not args.cache_dir.strip():
            parser.error("--cache-dir='': give a folder (or leave it out for $DC_CACHE_DIR or the default)")
        os.environ["DC_CACHE_DIR"] = os.path.abspath(os.path.expanduser(args.cache_dir))
    try:   # a missing data folder, a full disk: one line, as the pipeline says it
        prepare(data.load(args.dataset, root=args.data_dir), seed=args.seed, threads=args.threads, epochs=args.epochs,
                device=args.device, progress=True)
    except (ValueError, OSError, data.DatasetUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
