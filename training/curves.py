"""Loss and recall curves from a training log (`log.jsonl`) as one PNG."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # after choosing the backend

LOSSES = ("loss", "itc", "itm")


def plot_curves(log_path: str | Path, png_path: str | Path) -> Path:
    """Left: the losses per step; right: validation Recall@1/5/10 both ways, where logged."""
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in LOSSES:
        points = [(r["step"], r[name]) for r in records if name in r]
        if points:
            left.plot(*zip(*points, strict=True), label=name, linewidth=1)
    left.set(xlabel="step", ylabel="loss", title="training loss")
    left.legend()
    evaluated = [r for r in records if "recall" in r]
    for direction, style in (("text_to_image", "-"), ("image_to_text", "--")):
        for k in ("R@1", "R@5", "R@10"):
            if evaluated:
                right.plot([r["step"] + 1 for r in evaluated], [r["recall"][direction][k] for r in evaluated],
                           style, marker="o", label=f"{direction} {k}")
    right.set(xlabel="step", ylabel="recall (%)", title="held-out recall (dual encoder)", ylim=(0, 100))
    if evaluated:
        right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)
    return Path(png_path)
