#!/usr/bin/python3
"""Markdown table of eval quality per method from one or more sweeps (experiments/sweep.py outputs).

usage: experiments/results_table.py LABEL=SWEEP_DIR [LABEL=SWEEP_DIR ...]
One column per sweep, one row per evaluated model (spintrain's table plus the downstream GPTQ rows);
each cell is the eval perplexity as mean ± half the min-max range over the sweep's runs (its seeds),
then the NLL mean and the KL to the float model, and the number of runs.
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


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sweeps = []
    for arg in sys.argv[1:]:
        label, _, path = arg.partition("=")
        with open(f"{path}/results.csv") as f:
            sweeps.append((label, list(csv.DictReader(f))))
    print("| model | " + " | ".join(label for label, _ in sweeps) + " |")
    print("|---|" + "---|" * len(sweeps))
    for key, name in ROWS:
        print(f"| {name} | " + " | ".join(cell(rows, key) for _, rows in sweeps) + " |")


if __name__ == "__main__":
    main()
