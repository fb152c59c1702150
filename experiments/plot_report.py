#!/usr/bin/env python3
"""Draws the study's figures from run folders, and nothing else.

usage: plot_report.py OUT_DIR NAME=RUN_DIR [NAME=RUN_DIR ...]

Reads each run's history.csv, metrics.json and confusion.csv (and lr_tuning's sweep.csv) and
writes curves.png (2x2: train loss, val loss, train acc, val acc per epoch), bars.png (test
accuracy and macro F1 per model), confusion_<name>.png and lr_sweep.png. A model whose run is
missing is listed in the legend as "not run" and drawn nowhere.
"""
import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DISPLAY = {"baseline_transfer": "Baseline ResNet18", "lr_tuning": "Tuned ResNet18", "scratch_cnn": "Scratch CNN"}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main():
    out = sys.argv[1]
    runs = []
    for arg in sys.argv[2:]:
        name, _, path = arg.partition("=")
        runs.append((name, path if path else None))
    os.makedirs(out, exist_ok=True)

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [("train_loss", "Train loss"), ("val_loss", "Validation loss"),
              ("train_acc", "Train accuracy"), ("val_acc", "Validation accuracy")]
    bars = []
    for name, path in runs:
        label = DISPLAY.get(name, name)
        hist = os.path.join(path, "history.csv") if path else None
        if not hist or not os.path.exists(hist):
            for ax, _ in zip(axes.flat, panels):
                ax.plot([], [], label=f"{label} (not run)")
            continue
        rows = read_csv(hist)
        epochs = [int(float(r["epoch"])) for r in rows]
        for ax, (key, _) in zip(axes.flat, panels):
            ax.plot(epochs, [float(r[key]) for r in rows], marker="o", label=label)
        mpath = os.path.join(path, "metrics.json")
        if os.path.exists(mpath):
            with open(mpath) as f:
                m = json.load(f)
            bars.append((label, m["test"]["accuracy"], m["test"]["macro"]["f1"]))
        cpath = os.path.join(path, "confusion.csv")
        if os.path.exists(cpath):
            draw_confusion(cpath, label, os.path.join(out, f"confusion_{name}.png"))
    for ax, (_, title) in zip(axes.flat, panels):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [DISPLAY.get(n, n) for n, _ in runs]
    present = {b[0]: b for b in bars}
    xs = range(len(names))
    acc = [present[n][1] if n in present else 0 for n in names]
    f1 = [present[n][2] if n in present else 0 for n in names]
    w = 0.38
    ax.bar([x - w / 2 for x in xs], acc, w, label="test accuracy")
    ax.bar([x + w / 2 for x in xs], f1, w, label="macro F1")
    for x, n in zip(xs, names):
        if n in present:
            ax.text(x - w / 2, acc[x] + 0.005, f"{acc[x]:.3f}", ha="center", fontsize=8)
            ax.text(x + w / 2, f1[x] + 0.005, f"{f1[x]:.3f}", ha="center", fontsize=8)
        else:
            ax.text(x, 0.02, "not run", ha="center", fontsize=9, color="gray")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names)
    lo = min([v for v in acc + f1 if v > 0], default=0.0)
    ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax.legend()
    ax.set_title("Test accuracy and macro F1")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bars.png"), dpi=110)
    plt.close(fig)

    for name, path in runs:
        sweep = os.path.join(path, "sweep.csv") if path else None
        if sweep and os.path.exists(sweep):
            rows = read_csv(sweep)
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.semilogx([float(r["lr"]) for r in rows], [float(r["best_val_acc"]) for r in rows], marker="o")
            ax.set_xlabel("learning rate")
            ax.set_ylabel("best validation accuracy")
            ax.set_title("Learning-rate sweep (validation split)")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(os.path.join(out, "lr_sweep.png"), dpi=110)
            plt.close(fig)


def draw_confusion(path, label, out_png):
    rows = list(csv.reader(open(path, newline="")))
    classes = rows[0][1:]
    counts = [[int(v) for v in r[1:]] for r in rows[1:]]
    norm = [[v / max(1, sum(r)) for v in r] for r in counts]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i, r in enumerate(counts):
        for j, v in enumerate(r):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if norm[i][j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)))
    ax.set_yticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{label}: confusion (counts; colour = row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
