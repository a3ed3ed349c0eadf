"""Make a migration file of any size with the shape of the shipped sample.

    python sample_data/generate.py 5000000 /tmp/big.csv              # input only (benchmarks)
    python sample_data/generate.py 300 sample_data/sample.csv --seed-file sample_data/seed.json

Parquet: add --parquet PATH to also write the same rows as Parquet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from batch_assign.sample import write_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int, help="how many input rows")
    parser.add_argument("csv", type=Path, help="where to write the CSV")
    parser.add_argument("--seed-file", type=Path, help="also write the matching sandbox seed")
    parser.add_argument("--parquet", type=Path, help="also write the rows as Parquet")
    parser.add_argument("--random-seed", type=int, default=7, help="same seed, same files")
    args = parser.parse_args()
    write_sample(args.rows, args.csv, seed_path=args.seed_file, seed=args.random_seed)
    if args.parquet:
        pl.scan_csv(args.csv, infer_schema=False).sink_parquet(args.parquet)
    print(f"wrote {args.rows:,} rows to {args.csv}")


if __name__ == "__main__":
    main()
