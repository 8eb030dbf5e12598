"""Wet-day frequency adaptation of precipitation, fitted on the training days.

A network trained on the mean squared error predicts the conditional mean; where
rain is uncertain that is a little rain on many days ("drizzle"), so it has too
many wet days.  Frequency adaptation (Themeßl et al. 2012, as in bias-correction
methods) fixes this with one threshold per cell: on the training days, the
emulator's frequency of values at or above the threshold equals the truth's
frequency of wet days (>= ``wet_day_threshold`` mm/day); below it, predictions
are set to 0.  The thresholds are fitted once, after training, stored in the
bundle (array ``wet_day_threshold``, in the target's canonical units) and applied
by :meth:`downscale.emulator.Emulator.predict` to every prediction, so ``apply``,
``evaluate`` and the skill table all see the same field.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from downscale.data.units import MM_DAY

__all__ = ["fit_bundle_thresholds", "fit_wet_day_thresholds"]


def fit_wet_day_thresholds(pred: np.ndarray, truth: np.ndarray, wet_mm_day: float = 1.0) -> np.ndarray:
    """Per-cell thresholds [Y, X] (canonical units) from training predictions and truth [T, Y, X].

    For a cell whose truth is dry (< ``wet_mm_day``) on a fraction ``d`` of its valid
    days, the threshold is the emulator's ``d``-quantile there, so that the emulator is
    at or above it on a fraction ``1 - d`` of the days.  It is never below 0; cells with
    no valid day get NaN (left unchanged by :func:`apply_wet_day_thresholds`).
    """
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"pred and truth must both be [T, Y, X], got {pred.shape} and {truth.shape}")
    wet = wet_mm_day * MM_DAY
    valid = np.isfinite(truth) & np.isfinite(pred)
    n = valid.sum(axis=0)
    dry_frac = np.where(n > 0, np.sum(valid & (truth < wet), axis=0) / np.maximum(n, 1), np.nan)
    # the d-quantile per cell: sort the valid predictions (invalid ones go last as +inf)
    p = np.sort(np.where(valid, pred, np.inf), axis=0)
    pos = np.clip(dry_frac * (n - 1), 0, None)
    lo = np.floor(np.nan_to_num(pos)).astype(int)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    w = np.nan_to_num(pos) - lo
    q_lo = np.take_along_axis(p, lo[None], axis=0)[0]
    q_hi = np.take_along_axis(p, hi[None], axis=0)[0]
    with np.errstate(invalid="ignore"):
        q = q_lo + w * (q_hi - q_lo)
    # a cell that is wet on every training day needs no threshold: keep everything
    q = np.where(dry_frac == 0.0, 0.0, q)
    return np.where(n > 0, np.maximum(q, 0.0), np.nan).astype(np.float32)


def fit_bundle_thresholds(
    emulator: Any, paired: Any, idx: np.ndarray, names: list[str], wet_mm_day: float, batch_days: int = 256
) -> tuple[np.ndarray, dict[str, Any]]:
    """Predict the training days ``idx`` with ``emulator`` (one deterministic pass, ``mode="mean"``)
    and fit the thresholds of ``names``: (array [len(names), Y, X], its bundle metadata)."""
    chans = [emulator.targets.index(n) for n in names]
    preds, truths = [], []
    for start in range(0, len(idx), batch_days):
        part = idx[start : start + batch_days]
        x = np.asarray(paired.x.isel(time=part).values, np.float32)
        out = emulator.predict(x, paired.f[part], mode="mean")  # [T, V, H, W]
        preds.append(out[:, chans])
        truths.append(np.asarray(paired.y.sel(channel=names).isel(time=part).values, np.float32))
    pred, truth = np.concatenate(preds), np.concatenate(truths)
    thr = np.stack([fit_wet_day_thresholds(pred[:, k], truth[:, k], wet_mm_day) for k in range(len(names))])
    meta = {
        "variables": list(names),
        "wet_day_threshold_mm_day": float(wet_mm_day),
        "fitted_on_days": len(idx),
        "method": "per-cell frequency adaptation (Themessl et al. 2012): predictions below the cell's threshold are set to 0",
    }
    return thr, meta
