"""Evaluation: skill metrics (:mod:`downscale.skill.metrics`), climate indices (:mod:`~.indices`), further
diagnostics (:mod:`~.diagnostics`), the metric registry (:mod:`~.metric_registry`), baselines
(:mod:`~.baselines`) and the evaluator behind ``downscale evaluate`` (:func:`evaluate`, :mod:`~.runner`).

::

    from downscale.skill import metrics
    from downscale.skill.baselines import create_baseline
    bc = create_baseline("bilinear_bc", paired.coarse_grid, paired.fine_grid, kind="additive").fit(xc, yt)
    metrics.rmse(bc.predict(xc_test), y_test)

    from downscale.evaluate import evaluate
    evaluate("recipes/evaluate-iberia.yaml", "docs/evaluation")     # report.html, report.md, metrics.csv/json
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from downscale.evaluate import diagnostics, indices
from downscale.evaluate.metric_registry import (
    METRICS,
    Metric,
    create_metric,
    register_metric,
)
from downscale.skill import metrics
from downscale.skill.baselines import (
    BASELINES,
    BiasCorrectedBilinear,
    Bilinear,
    bilinear,
    correction_kind,
    create_baseline,
)
from downscale.skill.metrics import (
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

if TYPE_CHECKING:
    from downscale.evaluate.config import EvaluateConfig
    from downscale.evaluate.runner import EvaluationResult

__all__ = [
    "BASELINES",
    "METRICS",
    "BiasCorrectedBilinear",
    "Bilinear",
    "Metric",
    "bias",
    "bilinear",
    "climate_change_signal",
    "climate_change_signal_error",
    "correction_kind",
    "create_baseline",
    "create_metric",
    "diagnostics",
    "evaluate",
    "indices",
    "metrics",
    "p99_abs_bias",
    "quantile_bias",
    "radial_psd",
    "ralsd",
    "register_metric",
    "rmse",
    "spatial_correlation",
    "temporal_correlation",
    "wet_day_frequency",
    "wet_day_frequency_abs_bias",
]


def evaluate(config: EvaluateConfig | str | Path, out_dir: str | Path, **kwargs: Any) -> EvaluationResult:
    """Run an evaluation config (a YAML path or an EvaluateConfig); see :func:`downscale.evaluate.runner.evaluate`."""
    from downscale.evaluate.runner import evaluate as run

    return run(config, out_dir, **kwargs)
