"""Postprocessing that :meth:`downscale.emulator.Emulator.predict` applies to every prediction.

The wet-day thresholds are fitted after training (:mod:`downscale.train.calibration`) and stored in the bundle;
applying them belongs to inference, so that ``apply``, ``evaluate`` and the skill table see the same field.
"""

from __future__ import annotations

import numpy as np

__all__ = ["apply_wet_day_thresholds"]


def apply_wet_day_thresholds(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Set ``values`` [..., Y, X] below their cell's threshold to 0 (in place; NaN thresholds: unchanged)."""
    with np.errstate(invalid="ignore"):
        below = values < thresholds
    values[below] = 0.0
    return values
