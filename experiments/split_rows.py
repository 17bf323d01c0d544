#!/usr/bin/python3
"""Splits the rows of a token-id HDF5 file (dataset input_ids [N, T]) into two files, so that a sweep
chooses its recipe on one part and the chosen recipe is reported on rows the sweep never saw.

usage: experiments/split_rows.py IN.h5 FIRST.h5 REST.h5 --first K
FIRST.h5 gets rows [0, K), REST.h5 rows [K, N); the attributes are copied and `split` records which rows.
"""
import argparse

import h5py


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("first")
    ap.add_argument("rest")
    ap.add_argument("--first", dest="k", type=int, required=True)
    args = ap.parse_args()
    with h5py.File(args.src, "r") as f:
        ids = f["input_ids"][...]
        attrs = dict(f["input_ids"].attrs)
    n = ids.shape[0]
    if not 0 < args.k < n:
        raise SystemExit(f"error: {args.src}: --first {args.k} must split its {n} rows into two non-empty parts")
    for path, lo, hi in ((args.first, 0, args.k), (args.rest, args.k, n)):
        with h5py.File(path, "w") as g:
            d = g.create_dataset("input_ids", data=ids[lo:hi])
            for key, value in attrs.items():
                d.attrs[key] = value
            d.attrs["split"] = f"rows [{lo}, {hi}) of {args.src}"
        print(f"wrote {path}: rows [{lo}, {hi}) of {n}")


if __name__ == "__main__":
    main()
