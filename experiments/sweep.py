#!/usr/bin/python3
"""Hyperparameter sweeps over spintrain: a JSON grid -> runs -> one CSV -> PNG plots.

usage: experiments/sweep.py GRID.json --out DIR [--jobs N] [--threads T] [--bin build/bin]

GRID.json = {"base": {<spintrain options>}, "grid": {"lr": [0.1, 1.5], "seed": [0, 1, 2], ...},
             "gptq": {<spin-gptq options>}}            (the "gptq" section is optional)
Every combination of the grid values is one run, merged over "base" (keys as in spintrain --help).
The grid key "variant" takes named option sets that go together, e.g.
  "variant": [{"name": "e2e"}, {"name": "blockwise", "mode": "blockwise", "smooth": true}]
(the run and the CSV carry the name).
With a "gptq" section each run is followed by downstream GPTQ (spin-gptq --format fake, weight bits and
group size from "base" unless given) of two models, both then evaluated by spin-eval on the run's
eval-data with the run's activation/KV quantization and KL to the float model:
  "gptq + learned": the exported spintrain model;
  "gptq + <init> init": the same rotations' starting point, made by spin-rotate (same init, seed, R3/R4).
A run whose results file exists is skipped, so an interrupted sweep resumes where it stopped.
Outputs: DIR/runs/<name>/{config.json, model/, log.jsonl, stdout.txt, gptq.json}, DIR/results.csv,
DIR/loss_curves.png, DIR/eval_nll.png (mean and min-max over seeds), DIR/orth_err.png.
"""
import argparse
import concurrent.futures
import csv
import itertools
import json
import os
import statistics
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def label(value):
    """A grid value as it appears in run names and the CSV (a variant by its name)."""
    return value["name"] if isinstance(value, dict) else value


def run_name(point):
    return "_".join(f"{k}={label(v)}" for k, v in point.items()).replace("/", "-").replace(",", "+")


def run_config(base, point):
    """base, then the grid point's options (a variant's options, less its name)."""
    cfg = dict(base)
    for k, v in point.items():
        if k == "variant":
            cfg.update({vk: vv for vk, vv in v.items() if vk != "name"})
        else:
            cfg[k] = v
    return cfg


def points(grid):
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values))


def run_one(args, base, point):
    d = os.path.join(args.out, "runs", run_name(point))
    results = os.path.join(d, "model", "spintrain_results.json")
    if os.path.exists(results):
        return point, d, "skipped"
    os.makedirs(d, exist_ok=True)
    cfg = run_config(base, point)
    cfg.update({"out": os.path.join(d, "model"), "log": os.path.join(d, "log.jsonl"), "threads": args.threads,
                "quiet": True})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(d, "stdout.txt"), "w") as out:
        rc = subprocess.call([os.path.join(args.bin, "spintrain"), "--config", os.path.join(d, "config.json")],
                             stdout=out, stderr=subprocess.STDOUT)
    return point, d, "ok" if rc == 0 else f"failed (rc {rc}, see {d}/stdout.txt)"


# spintrain options that spin-eval shares (activation and KV-cache fake quantization).
EVAL_KEYS = ("abits", "a-groupsize", "a-asym", "a-clip", "kbits", "vbits", "kv-groupsize", "kv-asym")


def flags(options):
    """{"wbits": 4, "sym": True, "x": False} -> ["--wbits", "4", "--sym"]."""
    out = []
    for k, v in options.items():
        if v is True:
            out.append(f"--{k}")
        elif v is not False:
            out += [f"--{k}", str(v)]
    return out


def run_gptq(args, gptq, d):
    """Downstream GPTQ of the learned model and of its starting rotations; results in d/gptq.json."""
    results = os.path.join(d, "gptq.json")
    if os.path.exists(results):
        return "skipped"
    cfg = json.load(open(os.path.join(d, "config.json")))
    with open(os.path.join(d, "gptq_stdout.txt"), "w") as log:

        def call(tool, *argv, stdout=log):
            rc = subprocess.call([os.path.join(args.bin, tool), *argv, "--threads", str(args.threads)],
                                 stdout=stdout, stderr=log if stdout is not log else subprocess.STDOUT)
            if rc != 0:
                raise RuntimeError(f"{tool} failed (rc {rc}, see {d}/gptq_stdout.txt)")

        rotations = "r1,r2" + (",r3" if cfg.get("r3") else "") + (",r4" if cfg.get("r4") else "")
        init = cfg.get("init", "random-hadamard")
        call("spin-rotate", "--model", cfg["model"], "--out", os.path.join(d, "init"), "--rotations", rotations,
             "--init", init, "--seed", str(cfg.get("seed", 0)))
        gopt = {"wbits": cfg.get("wbits", 4), "groupsize": cfg.get("groupsize", 0),
                "sym": not cfg.get("w-asym", False)}
        gopt.update(gptq)
        eval_flags = flags({k: cfg[k] for k in EVAL_KEYS if k in cfg})
        # The same rows and row length as spintrain's own eval table.
        eval_flags += flags({"rows": cfg.get("eval-rows", -1), "seq-len": cfg.get("seq-len", -1)})
        table = []
        for name, model in ((f"gptq + {init} init", "init"), ("gptq + learned", "model")):
            q = os.path.join(d, f"{model}_gptq")
            call("spin-gptq", "--model", os.path.join(d, model), "--calib", cfg["calib"], "--out", q,
                 "--format", "fake", "--quiet", *flags(gopt))
            out = os.path.join(d, f"{model}_gptq_eval.json")
            with open(out, "w") as f:
                call("spin-eval", "--model", q, "--data", cfg["eval-data"], "--reference", cfg["model"], "--json",
                     *eval_flags, stdout=f)
            table.append(dict(json.load(open(out)), name=name))
    with open(results + ".tmp", "w") as f:
        json.dump(table, f, indent=2)
    os.replace(results + ".tmp", results)
    return "ok"


def read_log(d):
    steps = []
    with open(os.path.join(d, "log.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "step" in rec:
                steps.append(rec)
    return steps


# The sweep directory's output marker (the rule of src/io/output_guard.h, docs/RELIABILITY.md): --out may be
# a new or empty directory, or a directory an earlier sweep marked, which the sweep then continues.
MARKER = {"format": "spintrain-output/1", "kind": "results_dir", "tool": "sweep.py"}
MARKER_FILE = "spintrain-output.json"


def claim_out(out):
    """Refuses (exit 1, one line) an --out that is not new, empty or an earlier sweep's; marks it ours."""
    path = os.path.realpath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        sys.exit(f"error: sweep.py: --out {out}: is a file, not a directory; choose a new directory")
    marker = os.path.join(path, MARKER_FILE)
    if os.path.isdir(path) and os.listdir(path):
        try:
            with open(marker) as f:
                ours = json.load(f) == MARKER
        except (OSError, ValueError):
            ours = False
        if not ours:
            sys.exit(f"error: sweep.py: --out {out}: is a non-empty directory that no sweep wrote (no {MARKER_FILE}); "
                     "choose a new directory")
    os.makedirs(path, exist_ok=True)
    tmp = marker + f".tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(MARKER, f)
        f.write("\n")
    os.replace(tmp, marker)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grid")
    ap.add_argument("--out", required=True)
    # Default: one single-threaded run per core, faster for many small runs than one run at a time on
    # all cores (docs/BENCHMARKS.md, "Sweeps: runs in parallel or threads").
    ap.add_argument("--jobs", type=int, default=0, help="runs at a time (0: one per core)")
    ap.add_argument("--threads", type=int, default=0, help="threads per run (0: the cores divided among the jobs)")
    ap.add_argument("--bin", default="build/bin")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    args.jobs = args.jobs if args.jobs > 0 else cores
    args.threads = args.threads if args.threads > 0 else max(1, cores // args.jobs)
    # More threads than cores: idle OpenMP workers of one run would spin on the cores the other runs
    # need and make every run several times slower (docs/BENCHMARKS.md, "Threads on a shared machine").
    # Passive workers sleep instead. Otherwise each run chooses its own (src/base/runtime_env.h).
    if args.jobs * args.threads > cores:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    spec = json.load(open(args.grid))
    claim_out(args.out)
    base, grid = spec.get("base", {}), spec["grid"]
    todo = list(points(grid))

    def run_point(p):
        point, d, status = run_one(args, base, p)
        if "gptq" in spec and not status.startswith("failed"):
            try:
                status += ", gptq " + run_gptq(args, spec["gptq"], d)
            except RuntimeError as e:
                status += f", gptq failed: {e}"
        return point, status

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for point, status in pool.map(run_point, todo):
            print(f"{run_name(point)}: {status}", flush=True)

    rows, curves = [], {}
    for point in todo:
        d = os.path.join(args.out, "runs", run_name(point))
        path = os.path.join(d, "model", "spintrain_results.json")
        if not os.path.exists(path):
            continue
        res = json.load(open(path))
        row = {k: label(v) for k, v in point.items()}
        row["final_loss"] = res["final_loss"]
        row["orth_err"] = res["orth_err"]
        row["train_seconds"] = res.get("train_seconds")
        row["peak_rss_bytes"] = res.get("peak_rss_bytes")
        row["train_peak_rss_bytes"] = res.get("train_peak_rss_bytes")
        gptq_path = os.path.join(d, "gptq.json")
        for e in res["eval"] + (json.load(open(gptq_path)) if os.path.exists(gptq_path) else []):
            key = e["name"].replace(" ", "_")
            row[f"nll[{key}]"] = e["nll"]
            row[f"ppl[{key}]"] = e["ppl"]
            row[f"kl[{key}]"] = e.get("kl")
        rows.append(row)
        curves[run_name(point)] = read_log(d)
    if not rows:
        sys.exit("sweep: no finished runs")
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in grid, k))
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)

    for metric, fname in (("loss", "loss_curves.png"), ("orth_err", "orth_err.png")):
        plt.figure(figsize=(8, 5))
        for name, recs in curves.items():
            plt.plot([r["step"] for r in recs], [r[metric] for r in recs], label=name, lw=1)
        plt.xlabel("step")
        plt.ylabel(metric)
        if metric == "orth_err":
            plt.yscale("log")
        plt.legend(fontsize=6)
        plt.tight_layout()
        plt.savefig(os.path.join(args.out, fname), dpi=120)
        plt.close()

    # Eval NLL per configuration (all grid keys but the seed), mean and min-max over seeds.
    group_keys = [k for k in grid if k != "seed"]
    groups = {}
    for r in rows:
        groups.setdefault(tuple((k, r[k]) for k in group_keys), []).append(r)
    names = [k for k in fields if k.startswith("nll[")]
    plt.figure(figsize=(max(6, 1.2 * len(groups)), 5))
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        means, lo, hi = [], [], []
        for g in groups.values():
            vals = [r[n] for r in g if r.get(n) is not None]
            if not vals:  # a row only some configurations have (e.g. the init that --init best chose)
                means.append(float("nan")), lo.append(0), hi.append(0)
                continue
            m = statistics.mean(vals)
            means.append(m)
            lo.append(m - min(vals))
            hi.append(max(vals) - m)
        xs = [j + i * width for j in range(len(groups))]
        plt.bar(xs, means, width, yerr=[lo, hi], capsize=3, label=n[4:-1])
    plt.xticks([j + 0.4 - width / 2 for j in range(len(groups))],
               ["\n".join(f"{k}={v}" for k, v in g) for g in groups], fontsize=7)
    plt.ylabel("eval NLL (nats/token), mean and min-max over seeds")
    plt.legend(fontsize=7)
    plt.tight_layout()
    plt.savefig(os.path.join(args.out, "eval_nll.png"), dpi=120)
    plt.close()
    print(f"wrote {args.out}/results.csv and plots")


if __name__ == "__main__":
    main()
