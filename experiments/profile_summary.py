#!/usr/bin/env python3
"""Summarise a chrome trace from `spin-bench --profile`: self time per operator, largest first.

    experiments/profile_summary.py /tmp/prof.random-llama.json [--top 25]

Self time = an event's duration minus the durations of the events nested directly inside it on the
same thread (the legacy profiler records every ATen call, so nesting is by time interval)."""
import argparse
import collections
import json


def self_times(events):
    by_thread = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X":
            by_thread[e.get("tid")].append(e)
    total = collections.Counter()
    calls = collections.Counter()
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [end, name, child_duration]
        def close(upto):
            while stack and stack[-1][0] <= upto:
                end, name, dur, child = stack.pop()
                total[name] += dur - child
                if stack:
                    stack[-1][3] += dur
        for e in evs:
            close(e["ts"])
            calls[e["name"]] += 1
            stack.append([e["ts"] + e["dur"], e["name"], e["dur"], 0.0])
        close(float("inf"))
    return total, calls


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trace")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    with open(a.trace) as f:
        total, calls = self_times(json.load(f))
    whole = sum(total.values())
    print(f"{'operator':40s} {'self s':>8s} {'share':>6s} {'calls':>6s}")
    for name, us in total.most_common(a.top):
        print(f"{name:40s} {us / 1e6:8.3f} {100 * us / whole:5.1f}% {calls[name]:6d}")
    print(f"{'(all operators)':40s} {whole / 1e6:8.3f}")


if __name__ == "__main__":
    main()
