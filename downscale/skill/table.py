"""The test-period skill table of one emulator beside the baselines, built in one place.

For each target: the emulator's *estimate* (ensemble mean of ``mode="mean"`` predictions;
for a deterministic model simply its prediction) is scored on RMSE, and a single
*realisation* (member 0 of ``mode="sample"``) on the distributional metrics (P99 |bias|,
RALSD, wet-day frequency |bias|), against bilinear interpolation and bias-corrected
bilinear interpolation fitted on the training days.  Units are the ones people read:
K for temperatures, mm/day for precipitation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from downscale.skill import metrics as M
from downscale.skill.baselines import baseline_predictors, correction_kind, create_baseline, no_baseline_note

if TYPE_CHECKING:
    from downscale.data.pairing import PairedData
    from downscale.emulator import Emulator

__all__ = ["skill_rows", "skill_table_markdown"]

_WET = "mm day-1"
_METRIC_UNITS = {"ralsd": "dB", "wet_day_freq_abs_bias": "pp"}


def _human(da: xr.DataArray, name: str) -> xr.DataArray:
    from downscale.data.units import convert_units
    from downscale.data.variables import get_spec

    spec = get_spec(name)
    return convert_units(da.assign_attrs(units=spec.units), spec.human_units)


def _scores(pred: xr.DataArray, truth: xr.DataArray, sample: xr.DataArray, units: str) -> dict[str, float]:
    out = {
        "rmse": M.rmse(pred, truth),
        "p99_abs_bias": M.p99_abs_bias(sample, truth),
        "ralsd": M.ralsd(sample, truth),
    }
    if units == _WET:
        out["wet_day_freq_abs_bias"] = M.wet_day_frequency_abs_bias(sample, truth, threshold=1.0)
    return out


def skill_rows(
    emulator: Emulator,
    paired: PairedData,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    members: int | None = None,
    seed: int = 0,
    baselines: Mapping[str, str] | None = None,
    notes: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Tidy rows: (variable, method, metric, value, units) on the test days.

    The baselines of each target interpolate the predictor ``baselines`` maps it to (default: the bundle's
    record, else :func:`~downscale.skill.baselines.baseline_predictors`, so ``tasmin`` serves ``tas``); the
    bias correction is fitted toward the target on ``train_idx``.  A target without a predictor gets no baseline
    rows, and the reason is appended to ``notes``."""
    n = members or (8 if emulator.stochastic else 1)
    x = np.asarray(paired.x.isel(time=test_idx).values, np.float32)
    f = paired.f[test_idx]
    est = emulator.predict(x, f, members=n, mode="mean", seed=seed).mean(axis=1)
    real = emulator.predict(x, f, members=1, mode="sample", seed=seed + 1)[:, 0]
    truth_all = paired.y.isel(time=test_idx).load()
    if baselines is None:
        baselines = emulator.meta.baselines
    if baselines is None:
        baselines = baseline_predictors(paired.targets, paired.predictors)
    rows: list[dict[str, Any]] = []
    for v, name in enumerate(paired.targets):
        truth = truth_all.isel(channel=v, drop=True)
        t = _human(truth, name)
        units = t.attrs["units"]
        methods = {"emulator": (truth.copy(data=est[:, v]), truth.copy(data=real[:, v]))}
        source = baselines.get(name)
        if source in paired.predictors:
            coarse_train = paired.x.sel(channel=source).isel(time=train_idx).load()
            coarse_test = paired.x.sel(channel=source).isel(time=test_idx).load()
            kind = correction_kind(_canonical(name))
            for base in ("bilinear", "bilinear_bc"):
                model = create_baseline(base, paired.coarse_grid, paired.fine_grid, kind=kind)
                model.fit(coarse_train, paired.y.sel(channel=name).isel(time=train_idx).load())
                p = model.predict(coarse_test)
                methods[base] = (p, p)
            if source != name and notes is not None:
                notes.append(f"baseline: bilinear and bilinear_bc of {name} interpolate the predictor {source}")
        elif notes is not None:
            notes.append(no_baseline_note(name, paired.predictors))
        for method, (p_est, p_real) in methods.items():
            scores = _scores(_human(p_est, name), t, _human(p_real, name), units)
            rows += [
                {
                    "variable": name,
                    "method": method,
                    "metric": k,
                    "value": float(val),
                    "units": _METRIC_UNITS.get(k, units),
                }
                for k, val in scores.items()
            ]
    return rows


def _canonical(name: str) -> str:
    from downscale.data.variables import get_spec

    return get_spec(name).units


def skill_table_markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: one row per (variable, metric), one column per method."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    keys = list(dict.fromkeys((r["variable"], r["metric"], r["units"]) for r in rows))
    value = {(r["variable"], r["metric"], r["method"]): r["value"] for r in rows}
    lines = ["| variable | metric | units | " + " | ".join(methods) + " |", "|---|---|---|" + "---|" * len(methods)]
    for var, metric, units in keys:
        cells = [f"{value[(var, metric, m)]:.3f}" if (var, metric, m) in value else "–" for m in methods]
        lines.append(f"| {var} | {metric} | {units} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
