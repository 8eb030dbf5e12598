"""Scores used when a training run reports its skill (the full evaluator builds on them).

Pure functions on numpy arrays or xarray objects; NaN marks invalid cells and is ignored.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bias", "rmse"]


def rmse(pred, truth) -> float:
    """Root-mean-square error over every valid (finite in both) value."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    valid = np.isfinite(p) & np.isfinite(t)
    if not valid.any():
        return float("nan")
    return float(np.sqrt(np.mean((p[valid] - t[valid]) ** 2)))


def bias(pred, truth) -> float:
    """Mean error over every valid value."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    valid = np.isfinite(p) & np.isfinite(t)
    return float(np.mean(p[valid] - t[valid])) if valid.any() else float("nan")
