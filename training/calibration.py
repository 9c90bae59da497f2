"""Temperature scaling of the ITM logit (Guo et al. 2017, "On Calibration of Modern Neural
Networks"): one scalar T divides the match logit so that a match probability of 0.8 is right
80% of the time; fitted by minimising the negative log-likelihood on pairs the model never
trained on. Platt scaling adds a bias to it, for logits whose zero is not where matches and
misses are equally likely. Expected calibration error (ECE) and the reliability diagram measure it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

BINS = 15


def fit_logistic(x: np.ndarray, labels: np.ndarray, steps: int = 50) -> tuple[float, float]:
    """(a, b) maximising the likelihood of sigmoid(a * x + b) for `labels` (Newton's method on
    the two parameters, with a little ridge so separable data stays finite)."""
    x, y = np.asarray(x, np.float64), np.asarray(labels, np.float64)
    features = np.stack([x, np.ones_like(x)], axis=1)
    w = np.zeros(2)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-features @ w))
        grad = features.T @ (p - y) + 1e-3 * w
        hess = (features * (p * (1 - p))[:, None]).T @ features + 1e-3 * np.eye(2)
        w -= np.linalg.solve(hess, grad)
    return float(w[0]), float(w[1])


def fit_platt(margin: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(T, b) of sigmoid(margin / T + b), by maximum likelihood (Platt scaling): a temperature
    alone keeps sigmoid(0) = 0.5, which is wrong wherever matches are rarer than misses."""
    scale, bias = fit_logistic(margin, labels)
    if scale <= 0:  # a margin that orders pairs backwards: no temperature calibrates it
        raise ValueError(f"the match logit does not separate the calibration pairs (slope {scale:.3g})")
    return 1.0 / scale, bias


def probabilities(margin: np.ndarray, temperature: float = 1.0, bias: float = 0.0) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(margin / temperature + bias)))


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
