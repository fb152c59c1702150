#!/usr/bin/env python3
"""Accuracy of recorded training runs side by side, and how far apart they are.

Reads each run folder's metrics.json and history.csv (written by the study's programs) and prints a Markdown
table: test accuracy at the best validation epoch, that epoch, the mean validation accuracy over the last K
epochs, and the final training loss; then every run's differences to the first one. Nothing is estimated:
a run folder that lacks a file is reported as missing.

    scripts/accuracy_spread.py [--last K] LABEL=RUN_DIR LABEL=RUN_DIR ...
"""
import argparse
import csv
import json
import os
import sys


def load(run_dir, last):
    metrics_path = os.path.join(run_dir, "metrics.json")
    history_path = os.path.join(run_dir, "history.csv")
    if not os.path.isfile(metrics_path) or not os.path.isfile(history_path):
        return None
    with open(metrics_path) as f:
        m = json.load(f)
    with open(history_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    tail = rows[-last:]
    return {
        "test": float(m["test"]["accuracy"]),
        "best_epoch": int(m["best_epoch"]),
        "best_val": float(m["best_val_acc"]),
        "val_mean": sum(float(r["val_acc"]) for r in tail) / len(tail),
        "tail": len(tail),
        "train_loss": float(rows[-1]["train_loss"]),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--last", type=int, default=4, help="epochs in the validation mean (default 4)")
    ap.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    a = ap.parse_args()
    if a.last < 1:
        sys.exit("accuracy_spread: --last must be at least 1")
    runs = []
    for spec in a.runs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            sys.exit(f"accuracy_spread: '{spec}' is not LABEL=RUN_DIR")
        runs.append((label, path, load(path, a.last)))

    print(f"| run | test accuracy (best validation epoch) | best validation | "
          f"mean validation, last {a.last} epochs | final train loss |")
    print("|---|---:|---:|---:|---:|")
    for label, path, r in runs:
        if r is None:
            print(f"| {label} | missing ({path}) | | | |")
            continue
        print(f"| {label} | {r['test']:.4f} ({r['best_epoch']}) | {r['best_val']:.4f} | "
              f"{r['val_mean']:.4f} | {r['train_loss']:.4f} |")

    base_label, _, base = runs[0]
    if base is None or len(runs) < 2:
        return
    print()
    print(f"Differences to {base_label}, in points (hundredths of accuracy):")
    print()
    print("| run | test accuracy | mean validation |")
    print("|---|---:|---:|")
    for label, _, r in runs[1:]:
        if r is None:
            print(f"| {label} | missing | missing |")
            continue
        print(f"| {label} | {100 * (r['test'] - base['test']):+.2f} | "
              f"{100 * (r['val_mean'] - base['val_mean']):+.2f} |")


if __name__ == "__main__":
    main()
