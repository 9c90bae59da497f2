"""Platt scaling: the fitted temperature and bias undo an over-confident, shifted logit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.calibration import fit_platt, plot_reliability, probabilities, reliability


def _miscalibrated(n: int, true_t: float, true_b: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z + true_b), reported as the margin z * true_t: over-confident,
    and with matches rarer (or commoner) than a zero margin says."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(z + true_b)))).astype(int)
    return z * true_t, labels


def test_the_fitted_temperature_and_bias_recover_the_logit_and_lower_the_ece(tmp_path: Path) -> None:
    margin, labels = _miscalibrated(20000, 4.0, -1.5)
    t, b = fit_platt(margin, labels)
    assert 3.6 < t < 4.4 and -1.7 < b < -1.3
    test_margin, test_labels = _miscalibrated(20000, 4.0, -1.5, seed=1)
    before = reliability(probabilities(test_margin), test_labels)
    temperature_only = reliability(probabilities(test_margin, t), test_labels)
    after = reliability(probabilities(test_margin, t, b), test_labels)
    assert before["ece"] > 0.1 and temperature_only["ece"] > 0.1 and after["ece"] < 0.02
    assert sum(x["count"] for x in after["bins"]) == after["pairs"] == 20000
    png = plot_reliability({"before": before, "after": after}, tmp_path / "r.png", "test")
    assert png.stat().st_size > 5000


def test_a_logit_that_orders_pairs_backwards_is_refused() -> None:
    margin, labels = _miscalibrated(5000, 1.0, 0.0)
    with pytest.raises(ValueError, match="does not separate"):
        fit_platt(-margin, labels)
