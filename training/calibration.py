"""Temperature scaling of the ITM logit (Guo et al. 2017, "On Calibration of Modern Neural
Networks"): one scalar T divides the match logit so that a match probability of 0.8 is right
80% of the time; fitted by minimising the negative log-likelihood on pairs the model never
trained on. Expected calibration error (ECE) and the reliability diagram measure it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

BINS = 15


def _nll(margin: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = margin / temperature
    # log(1 + e^-z) for positives, log(1 + e^z) for negatives, computed stably
    return float(np.mean(np.logaddexp(0.0, np.where(labels == 1, -z, z))))


def fit_temperature(margin: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the NLL of sigmoid(margin / T); `margin` is the match logit
    minus the no-match logit (the two-way softmax's probability is its sigmoid)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 400))
    losses = [_nll(margin, labels, t) for t in grid]
    return float(grid[int(np.argmin(losses))])


def probabilities(margin: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-margin / temperature))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """Per equal-width bin: mean confidence, accuracy (fraction matched) and count; and the ECE,
    the count-weighted mean gap between the two."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        conf, acc = float(probs[inside].mean()), float(labels[inside].mean())
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "confidence": conf,
                     "accuracy": acc, "count": int(inside.sum())})
        ece += inside.mean() * abs(conf - acc)
    return {"ece": round(float(ece), 4), "bins": rows, "pairs": len(probs)}


def plot_reliability(curves: dict[str, dict], png: Path, title: str) -> Path:
    """Reliability diagrams (accuracy against confidence per bin), one line per named curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, curve in curves.items():
        xs = [b["confidence"] for b in curve["bins"]]
        ys = [b["accuracy"] for b in curve["bins"]]
        ax.plot(xs, ys, marker="o", label=f"{name} (ECE {curve['ece']:.3f})")
    ax.set(xlabel="match probability", ylabel="fraction that match", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
