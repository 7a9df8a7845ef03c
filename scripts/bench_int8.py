"""Latency of the 784-128-10 teacher in float32 and through int8 backends, as ratios from one run.

Usage: python scripts/bench_int8.py [--threads 2] [--compile] [--json results/int8.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings

from tutorial_utils import benchmarks, data, files, measure, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torchao + torch.compile")
    parser.add_argument("--json", default=None, help="also write the table with its command and machine record here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    training.setup(0, threads=args.threads)
    teacher = training.load_or_train_teacher(data.load("mnist-5k"))
    backends = ("torchao", "torchao+compile", "legacy") if args.compile else ("torchao", "legacy")
    rows = benchmarks.int8_latency_table(teacher, batch_sizes=(1, 64, 256, 1024), backends=backends, threads=args.threads)
    print(f"{'batch':>6} {'fp32 ms':>9} " + " ".join(f"{b + ' ms':>20} {'speed-up':>8}" for b in backends))
    for row in rows:
        cells = []
        for backend in backends:
            value = row[backend]
            cells.append(f"{value:>20}" + " " * 9 if isinstance(value, str)
                         else f"{value:>20.4f} {row['fp32'] / value:>7.2f}x")
        print(f"{row['batch_size']:>6} {row['fp32']:>9.4f} " + " ".join(cells))
    if args.json:
        document = {"command": " ".join(["python scripts/bench_int8.py", *map(shlex.quote, sys.argv[1:])]),
                    "machine": measure.machine_record(args.threads), "backends": list(backends), "rows": rows}
        files.atomic_write(args.json, lambda f: f.write(json.dumps(document, indent=2).encode()))


if __name__ == "__main__":
    main()
