"""Temperature scaling: the fitted temperature undoes an over-confident logit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.calibration import fit_temperature, plot_reliability, probabilities, reliability


def _overconfident(n: int, true_t: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z), reported as the margin z * true_t (over-confident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return z * true_t, labels


def test_the_fitted_temperature_recovers_the_scale_and_lowers_the_ece(tmp_path: Path) -> None:
    margin, labels = _overconfident(20000, 4.0)
    t = fit_temperature(margin, labels)
    assert 3.6 < t < 4.4
    test_margin, test_labels = _overconfident(20000, 4.0, seed=1)
    before = reliability(probabilities(test_margin), test_labels)
    after = reliability(probabilities(test_margin, t), test_labels)
    assert before["ece"] > 0.1 and after["ece"] < 0.02
    assert sum(b["count"] for b in after["bins"]) == after["pairs"] == 20000
    png = plot_reliability({"before": before, "after": after}, tmp_path / "r.png", "test")
    assert png.stat().st_size > 5000
