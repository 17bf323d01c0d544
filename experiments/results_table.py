#!/usr/bin/python3
"""Markdown table of eval quality per method from one or more sweeps (experiments/sweep.py outputs).

usage: experiments/results_table.py [--by KEY] LABEL=SWEEP_DIR [LABEL=SWEEP_DIR ...]
One column per sweep, one row per evaluated model (spintrain's table plus the downstream GPTQ rows);
each cell is the eval perplexity as mean ± half the min-max range over the sweep's runs (its seeds),
then the NLL mean and the KL to the float model, and the number of runs.
With --by KEY (a grid key, e.g. variant) the learned rows are split by KEY's values, and a second table
gives each value's training time (train_seconds) and peak resident memory (of the training phase when
the runs recorded it, else of the whole run).
"""
import csv
import math
import statistics
import sys

ROWS = [("float", "float"), ("rtn_(no_rotation)", "RTN, no rotation"),
        ("rtn_+_random-hadamard_init", "random Hadamard + RTN"), ("rtn_+_learned", "learned + RTN"),
        ("gptq_+_random-hadamard_init", "random Hadamard + GPTQ"), ("gptq_+_learned", "learned + GPTQ")]


def cell(rows, key):
    nll = [float(r[f"nll[{key}]"]) for r in rows if r.get(f"nll[{key}]")]
    if not nll:
        return "—"
    ppl = [math.exp(x) for x in nll]
    kl = [float(r[f"kl[{key}]"]) for r in rows if r.get(f"kl[{key}]")]
    text = (f"{statistics.mean(ppl):.2f} ± {(max(ppl) - min(ppl)) / 2:.2f} "
            f"(NLL {statistics.mean(nll):.4f} ± {(max(nll) - min(nll)) / 2:.4f}")
    if kl and key != "float":
        text += f", KL {statistics.mean(kl):.3f}"
    return text + f", n={len(nll)})"


def spread(values, fmt):
    return f"{fmt(statistics.mean(values))} ± {fmt((max(values) - min(values)) / 2)}" if values else "—"


def main():
    args = sys.argv[1:]
    by = None
    if args[:1] == ["--by"]:
        by, args = args[1], args[2:]
    if not args:
        sys.exit(__doc__)
    sweeps = []
    for arg in args:
        label, _, path = arg.partition("=")
        with open(f"{path}/results.csv") as f:
            sweeps.append((label, list(csv.DictReader(f))))
    print("| model | " + " | ".join(label for label, _ in sweeps) + " |")
    print("|---|" + "---|" * len(sweeps))
    values = list(dict.fromkeys(r[by] for _, rows in sweeps for r in rows)) if by else [None]
    for key, name in ROWS:
        lines = [(name.replace("learned", v), [cell([r for r in rows if r[by] == v], key) for _, rows in sweeps])
                 for v in values] if by and "learned" in key else [(name, [cell(rows, key) for _, rows in sweeps])]
        for label, cells in lines:
            if any(c != "—" for c in cells):  # e.g. no GPTQ rows when the sweep had no "gptq" section
                print(f"| {label} | " + " | ".join(cells) + " |")
    if not by:
        return
    print()
    print(f"| {by} | " + " | ".join(f"{label}: train s | {label}: peak RSS GiB" for label, _ in sweeps) + " |")
    print("|---|" + "---|---|" * len(sweeps))
    for v in values:
        cells = []
        for _, rows in sweeps:
            mine = [r for r in rows if r[by] == v]
            cells.append(spread([float(r["train_seconds"]) for r in mine if r.get("train_seconds")], lambda x: f"{x:.1f}"))
            peak = [r.get("train_peak_rss_bytes") or r.get("peak_rss_bytes") for r in mine]
            cells.append(spread([float(p) / 2**30 for p in peak if p], lambda x: f"{x:.2f}"))
        print(f"| {v} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
