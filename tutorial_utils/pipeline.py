"""The story headless: `python -m tutorial_utils pipeline` runs every stage built so far and keeps a ledger.

Stages now: load the data; train (or load from the cache) the teacher; magnitude-prune it globally to
--sparsity and fine-tune with the masks held; write the pruned model in the compact sparse format;
remove half of the hidden units (structured pruning) and fine-tune. Each stage adds one ledger row;
the ledger is printed and written to --out as ledger.csv and ledger.json.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from tutorial_utils import data, measure, models, pruning, storage, training


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tutorial_utils pipeline",
        description="Train the teacher, prune it, and measure every stage; writes ledger.csv, ledger.json "
                    "and the compact model file to --out.")
    parser.add_argument("--dataset", default="mnist-5k", choices=data.DATASETS,
                        help="dataset name (default: the bundled mnist-5k, no network needed)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the four IDX files (e.g. /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--out", default="runs/pipeline", help="folder for ledger.csv and ledger.json")
    parser.add_argument("--teacher", default="teacher", choices=sorted(models.PRESETS),
                        help="architecture of the teacher (default: teacher = 784-128-10)")
    parser.add_argument("--epochs", type=int, default=15, help="teacher training epochs (default 15)")
    parser.add_argument("--sparsity", type=float, default=0.9,
                        help="fraction of weights pruned by global magnitude, in [0, 1) (default 0.9)")
    parser.add_argument("--finetune-epochs", type=int, default=5, help="fine-tuning epochs after pruning (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for training and latency (default 2)")
    return parser


def run(args: argparse.Namespace) -> measure.Ledger:
    """Run the stages; return the ledger (also written to args.out)."""
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out={args.out!r} exists and is not a folder")
    for name in ("epochs", "finetune_epochs"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')}={getattr(args, name)} must be a positive integer")
    if not 0 <= args.sparsity < 1:
        raise ValueError(f"--sparsity={args.sparsity} must be in [0, 1)")
    device = training.setup(args.seed, threads=args.threads)
    start = time.perf_counter()
    splits = data.load(args.dataset, root=args.data_dir)
    print(f"[data] {args.dataset}: {len(splits.x_train):,} train / {len(splits.x_test):,} test", flush=True)
    ledger = measure.Ledger(threads=args.threads)
    teacher = training.load_or_train_teacher(splits, preset=args.teacher, epochs=args.epochs, seed=args.seed,
                                             device=device, progress=True)
    row = ledger.measure(f"teacher ({args.teacher})", teacher, splits)
    print(f"[teacher] accuracy {row['accuracy']:.2%}, {row['bytes']:,} bytes", flush=True)

    masks = pruning.magnitude_masks(teacher, args.sparsity, scope="global")
    pruned = pruning.apply_masks(teacher, masks)
    training.fit(pruned, splits, epochs=args.finetune_epochs, lr=1e-3, masks=masks, device=device, progress=False)
    ledger.measure(f"pruned {args.sparsity:.0%} + fine-tuned (torch.save)", pruned, splits)
    row = ledger.measure(f"pruned {args.sparsity:.0%} (storage.save)", pruned, splits,
                         file_bytes=storage.save(pruned, out / "pruned.dcmp"))
    print(f"[prune] accuracy {row['accuracy']:.2%}, {row['bytes']:,} bytes in the sparse file", flush=True)

    narrow = pruning.prune_neurons(teacher, 0.5)
    training.fit(narrow, splits, epochs=args.finetune_epochs, lr=1e-3, device=device, progress=False)
    row = ledger.measure("half the neurons removed + fine-tuned", narrow, splits)
    print(f"[neurons] accuracy {row['accuracy']:.2%}, {row['bytes']:,} bytes", flush=True)
    ledger.to_csv(out / "ledger.csv")
    ledger.to_json(out / "ledger.json")
    print(f"\n{ledger}\n\nwrote {out / 'ledger.csv'} and {out / 'ledger.json'} "
          f"in {time.perf_counter() - start:.1f} s", flush=True)
    return ledger


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError, data.DatasetUnavailableError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
