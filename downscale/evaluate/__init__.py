"""Evaluation: skill metrics (:mod:`downscale.evaluate.metrics`) and baselines (:mod:`downscale.evaluate.baselines`).

::

    from downscale.evaluate import metrics, create_baseline
    bc = create_baseline("bilinear_bc", paired.coarse_grid, paired.fine_grid, kind="additive").fit(xc, yt)
    metrics.rmse(bc.predict(xc_test), y_test)
"""

from __future__ import annotations

from downscale.evaluate import metrics
from downscale.evaluate.baselines import (
    BASELINES,
    BiasCorrectedBilinear,
    Bilinear,
    bilinear,
    correction_kind,
    create_baseline,
)
from downscale.evaluate.metrics import (
    bias,
    climate_change_signal,
    climate_change_signal_error,
    p99_abs_bias,
    quantile_bias,
    radial_psd,
    ralsd,
    rmse,
    spatial_correlation,
    temporal_correlation,
    wet_day_frequency,
    wet_day_frequency_abs_bias,
)

__all__ = [
    "BASELINES",
    "BiasCorrectedBilinear",
    "Bilinear",
    "bias",
    "bilinear",
    "climate_change_signal",
    "climate_change_signal_error",
    "correction_kind",
    "create_baseline",
    "metrics",
    "p99_abs_bias",
    "quantile_bias",
    "radial_psd",
    "ralsd",
    "rmse",
    "spatial_correlation",
    "temporal_correlation",
    "wet_day_frequency",
    "wet_day_frequency_abs_bias",
]
