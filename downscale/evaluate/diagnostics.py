"""Diagnostics beyond :mod:`downscale.skill.metrics`: index biases and ratios, distances between
distributions, spectra of time-mean fields, the pr–tas coupling, climate-change signals of any index, and
ensemble scores (CRPS, rank histograms), and the sub-daily diagnostics (hourly extremes, the bias of the mean
daily maximum, the regional mean diurnal curve).

The conventions are those of :mod:`downscale.skill.metrics`: DataArrays ``(time, y, x)`` (plain numpy
``(time, y, x)`` arrays too where noted), NaN = invalid, an optional boolean ``mask`` (``(y, x)``, True = valid),
plain spatial means over the valid cells.  Functions named ``*_bias`` reduce a map of biases to the spatial
mean of ``|bias|``.

The *distributional* diagnostics here never pair days: ``pred`` and ``truth`` may cover different days and
different numbers of days (a free-running GCM against an RCM run), which is what the imperfect tests need.
A cell counts where the truth has at least one valid value (and ``mask`` allows it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from downscale.evaluate.indices import compute_index
from downscale.skill import metrics as M
from downscale.skill.metrics import Field, Mask

__all__ = [
    "cc_signal_error",
    "cc_signal_map",
    "crps_ensemble",
    "daily_max_bias",
    "diurnal_curve",
    "index_bias",
    "index_bias_map",
    "index_ratio",
    "p999_abs_bias",
    "pr_tas_correlation_bias",
    "psd_distance",
    "rank_histogram",
    "rank_histogram_deviation",
    "spatial_correlation_of_index",
    "wasserstein",
]


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    finite = np.isfinite(a)
    return float(np.mean(a[finite])) if finite.any() else float("nan")


def _valid_cells(truth: xr.DataArray, mask: Mask = None) -> np.ndarray:
    """``(y, x)``: cells where the truth has a valid value on some day and ``mask`` is True."""
    t = truth.transpose("time", ...) if "time" in truth.dims else truth
    valid = np.isfinite(np.asarray(t.values, np.float64))
    if valid.ndim == 3:
        valid = np.any(valid, axis=0)
    if mask is not None:
        valid &= np.asarray(mask.values if isinstance(mask, xr.DataArray) else mask, dtype=bool)
    return valid


def _masked(field: xr.DataArray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, np.asarray(field.values, np.float64), np.nan)


# --------------------------------------------------------------------------- indices
def index_bias_map(
    pred: xr.DataArray, truth: xr.DataArray, index: str = "mean", mask: Mask = None, **params: Any
) -> xr.DataArray:
    """``(y, x)``: climatology of index ``index`` of pred minus that of truth (NaN outside the valid cells)."""
    ip, it = compute_index(pred, index, **params), compute_index(truth, index, **params)
    valid = _valid_cells(truth, mask)
    values = _masked(ip, valid) - _masked(it, valid)
    return it.copy(data=values).rename(f"{index}_bias")


def index_bias(pred: xr.DataArray, truth: xr.DataArray, index: str = "mean", mask: Mask = None, **params: Any) -> float:
    """Spatial mean of ``|I(pred) - I(truth)|``, ``I`` the climatology of index ``index`` (any registered index,
    with its options: ``index="quantile", q=0.99``; ``index="su", thresh="25 degC"``).  In the index's units."""
    return _nanmean(np.abs(index_bias_map(pred, truth, index, mask, **params).values))


def index_ratio(
    pred: xr.DataArray, truth: xr.DataArray, index: str = "mean", mask: Mask = None, **params: Any
) -> float:
    """Spatial mean of ``I(pred) / I(truth)`` over the valid cells where ``I(truth) != 0`` (1 is perfect).

    Meant for ratio-scale indices (precipitation amounts, counts, variabilities)."""
    ip, it = compute_index(pred, index, **params), compute_index(truth, index, **params)
    valid = _valid_cells(truth, mask)
    p, t = _masked(ip, valid), _masked(it, valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.isfinite(t) & (t != 0), p / np.where(t != 0, t, 1.0), np.nan)
    return _nanmean(ratio)


def spatial_correlation_of_index(
    pred: xr.DataArray, truth: xr.DataArray, index: str = "mean", mask: Mask = None, **params: Any
) -> float:
    """Pearson correlation across the valid cells of the two climatologies of ``index`` (default: time mean).

    Unlike :func:`downscale.skill.metrics.spatial_correlation` the two fields may cover different days."""
    ip, it = compute_index(pred, index, **params), compute_index(truth, index, **params)
    valid = _valid_cells(truth, mask)
    p, t = _masked(ip, valid).ravel(), _masked(it, valid).ravel()
    return float(M._corr(p, t, axis=0))


# --------------------------------------------------------------------------- sub-daily
def p999_abs_bias(
    pred: xr.DataArray, truth: xr.DataArray, mask: Mask = None, *, q: float = 0.999, season: str | None = None
) -> float:
    """Spatial mean of ``|P99.9(pred) - P99.9(truth)|``, the per-cell 99.9th percentile over every step (hourly
    extremes at hourly data), in the units of the inputs; ``q`` picks another quantile.  Days need not match."""
    return index_bias(pred, truth, "quantile", mask, q=q, season=season)


def daily_max_bias(pred: xr.DataArray, truth: xr.DataArray, mask: Mask = None, *, season: str | None = None) -> float:
    """Spatial mean of ``|bias|`` of the mean daily maximum (the largest step of each calendar day, then the
    time mean; index ``daily_max``), in the units of the inputs.  Days need not match."""
    return index_bias(pred, truth, "daily_max", mask, season=season)


def diurnal_curve(da: xr.DataArray, valid: Mask = None, *, regions: dict[str, Mask] | None = None) -> xr.DataArray:
    """``(region, hour)``: the mean diurnal curve (mean by UTC hour of day) averaged over the valid cells of
    each region.  ``valid``: ``(y, x)``, True = valid (e.g. the truth's valid cells, so that every method is
    averaged over the same cells; default: the cells of ``da`` valid at every step).  ``regions``: name ->
    ``(y, x)`` mask (default: one region ``domain``, every cell)."""
    cycle = M.diurnal_cycle(da)
    c = np.asarray(cycle.transpose("hour", ...).values, np.float64)
    if valid is None:
        keep = np.isfinite(np.asarray(da.transpose("time", ...).values, np.float64)).all(axis=0)
    else:
        keep = np.asarray(valid.values if isinstance(valid, xr.DataArray) else valid, dtype=bool)
    regions = regions or {"domain": None}
    rows = []
    for m in regions.values():
        cells = keep if m is None else keep & np.asarray(m.values if isinstance(m, xr.DataArray) else m, bool)
        rows.append([_nanmean(c[i][cells]) for i in range(c.shape[0])])
    return xr.DataArray(
        np.asarray(rows, np.float64).reshape(len(regions), c.shape[0]),
        dims=("region", "hour"),
        coords={"region": list(regions), "hour": cycle["hour"].values},
        name="diurnal_curve",
        attrs={"units": da.attrs.get("units", "")},
    )


# --------------------------------------------------------------------------- distributions
def _w1(a: np.ndarray, b: np.ndarray) -> float:
    """First Wasserstein distance between two 1-D samples (finite values only)."""
    from scipy.stats import wasserstein_distance

    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


def wasserstein(pred: xr.DataArray, truth: xr.DataArray, mask: Mask = None, *, per_cell: bool = False) -> float:
    """First Wasserstein (earth mover's) distance between the distributions of pred and truth, in their units.

    ``per_cell=False`` pools every valid (cell, day) value of each field; ``per_cell=True`` takes the distance
    in each valid cell (over its days) and returns the spatial mean.  Days need not match."""
    valid = _valid_cells(truth, mask)
    p = np.asarray(pred.transpose("time", ...).values, np.float64)
    t = np.asarray(truth.transpose("time", ...).values, np.float64)
    if p.shape[1:] != t.shape[1:]:
        raise ValueError(f"pred and truth differ in grid shape: {p.shape[1:]} vs {t.shape[1:]}")
    if not per_cell:
        return _w1(p[:, valid], t[:, valid])
    pc, tc = p[:, valid], t[:, valid]  # [days, cells]
    full = np.isfinite(pc).all(axis=0) & np.isfinite(tc).all(axis=0)
    out = np.full(pc.shape[1], np.nan)
    out[full] = _w1_columns(pc[:, full], tc[:, full])
    for c in np.flatnonzero(~full):  # cells with missing days: their own sample sizes
        out[c] = _w1(pc[:, c], tc[:, c])
    return _nanmean(out)


def _w1_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """First Wasserstein distance of every column of ``a`` [n, C] against the same column of ``b`` [m, C]
    (no NaN): the integral over u of |F_a^-1(u) - F_b^-1(u)|.  Both quantile functions are steps at
    multiples of 1/n and 1/m, common to every column, so one sort per array does all the columns."""
    n, m = a.shape[0], b.shape[0]
    if n == 0 or m == 0:
        return np.full(a.shape[1], np.nan)
    u = np.unique(np.concatenate([np.arange(n + 1) / n, np.arange(m + 1) / m]))
    mid = (u[:-1] + u[1:]) / 2
    qa = np.sort(a, axis=0)[np.minimum((mid * n).astype(int), n - 1)]
    qb = np.sort(b, axis=0)[np.minimum((mid * m).astype(int), m - 1)]
    return (np.diff(u)[:, None] * np.abs(qa - qb)).sum(axis=0)


def psd_distance(pred: xr.DataArray, truth: xr.DataArray, mask: Mask = None) -> float:
    """RALSD between the time-mean radially averaged spectra of pred and truth, in dB (days need not match).

    ``sqrt(mean_k (10 log10 P_pred(k) - 10 log10 P_truth(k))^2)`` with ``P`` from
    :func:`downscale.skill.metrics.radial_psd` on both fields restricted to the truth's valid cells."""
    valid = _valid_cells(truth, mask)
    sp = M.radial_psd(pred, mask=valid).values
    st = M.radial_psd(truth, mask=valid).values
    # floored as RALSD is (docs/metrics.md): at 1e-6 of the truth's mean power
    floor = max(M.SPECTRUM_FLOOR * float(np.nanmean(st)) if np.isfinite(st).any() else 0.0, 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 10 * np.log10(np.maximum(sp, floor)) - 10 * np.log10(np.maximum(st, floor))
    return float(np.sqrt(_nanmean(d**2)))


# --------------------------------------------------------------------------- multivariate
def pr_tas_correlation_bias(
    pred: dict[str, xr.DataArray],
    truth: dict[str, xr.DataArray],
    mask: Mask = None,
    *,
    pair: tuple[str, str] = ("pr", "tas"),
) -> float:
    """Spatial mean of ``|r_pred - r_truth|``, ``r`` the per-cell correlation over time of the two variables
    (``pair``, default pr and tas) within each dataset.  Unitless; days need not match between pred and truth."""
    a, b = pair
    r_pred = M.temporal_correlation(pred[a], pred[b], spatial_mean=False).values
    r_truth = M.temporal_correlation(truth[a], truth[b], spatial_mean=False).values
    valid = _valid_cells(truth[a], mask) & _valid_cells(truth[b])
    return _nanmean(np.abs(np.where(valid, r_pred - r_truth, np.nan)))


# --------------------------------------------------------------------------- climate-change signal
def cc_signal_map(hist: xr.DataArray, fut: xr.DataArray, index: str = "mean", **params: Any) -> xr.DataArray:
    """``(y, x)``: ``I(fut) - I(hist)`` for the climatology ``I`` of index ``index``."""
    ih, ifut = compute_index(hist, index, **params), compute_index(fut, index, **params)
    return ih.copy(data=np.asarray(ifut.values, np.float64) - np.asarray(ih.values, np.float64)).rename("cc_signal")


def cc_signal_error(
    pred_hist: xr.DataArray,
    pred_fut: xr.DataArray,
    truth_hist: xr.DataArray,
    truth_fut: xr.DataArray,
    index: str = "mean",
    mask: Mask = None,
    **params: Any,
) -> float:
    """Spatial mean of ``|ΔI(pred) - ΔI(truth)|`` with ``ΔI = I(future) - I(historical)``, in the index's units.

    With ``index="mean"`` this is :func:`downscale.skill.metrics.climate_change_signal_error`."""
    dp = cc_signal_map(pred_hist, pred_fut, index, **params).values
    dt = cc_signal_map(truth_hist, truth_fut, index, **params).values
    valid = _valid_cells(truth_hist, mask) & _valid_cells(truth_fut)
    return _nanmean(np.abs(np.where(valid, dp - dt, np.nan)))


# --------------------------------------------------------------------------- ensembles
def _ensemble(ens: Field, truth: Field, member_dim: str) -> tuple[np.ndarray, np.ndarray]:
    """``(member, time, y, x)`` and ``(time, y, x)`` float64 arrays, NaN where either is invalid."""
    if isinstance(ens, xr.DataArray):
        dims = [member_dim] + [
            d for d in (truth.dims if isinstance(truth, xr.DataArray) else ens.dims) if d != member_dim
        ]
        e = np.asarray(ens.transpose(*dims).values, np.float64)
    else:
        e = np.asarray(ens, np.float64)
    t = np.asarray(truth.values if isinstance(truth, xr.DataArray) else truth, np.float64)
    if e.shape[1:] != t.shape:
        raise ValueError(f"ensemble {e.shape} (member first) and truth {t.shape} do not match")
    valid = np.isfinite(t) & np.isfinite(e).all(axis=0)
    return np.where(valid, e, np.nan), np.where(valid, t, np.nan)


def crps_ensemble(
    ens: Field, truth: Field, mask: Mask = None, *, member_dim: str = "member", fair: bool = False
) -> float:
    """Mean CRPS of an ensemble over every valid (cell, day) value, in the units of the inputs.

    ``CRPS = mean_i |X_i - y| - 1/(2 M^2) sum_ij |X_i - X_j|``; ``fair=True`` divides the second term by
    ``M (M - 1)`` instead (Ferro 2014).  For one member it is the absolute error.  ``ens`` has a ``member_dim``
    dimension (or is a numpy array with members first); ``mask``: ``(y, x)`` or ``(time, y, x)``, True = valid."""
    e, t = _ensemble(ens, truth, member_dim)
    if mask is not None:
        keep = np.broadcast_to(np.asarray(mask.values if isinstance(mask, xr.DataArray) else mask, bool), t.shape)
        t = np.where(keep, t, np.nan)
    m = e.shape[0]
    skill = np.mean(np.abs(e - t[None]), axis=0)
    es = np.sort(e, axis=0)
    # sum_ij |X_i - X_j| = 2 sum_i (2i - m + 1) X_(i)  (sorted, i from 0)
    weights = (2 * np.arange(m) - m + 1).reshape(-1, *([1] * t.ndim))
    spread = 2.0 * np.sum(weights * es, axis=0)
    denom = m * (m - 1) if fair and m > 1 else m * m
    return _nanmean(skill - spread / (2.0 * denom))


def rank_histogram(
    ens: Field, truth: Field, mask: Mask = None, *, member_dim: str = "member", seed: int = 0
) -> xr.DataArray:
    """Frequency (summing to 1) of the rank of the truth among the members, ranks ``0..M``; ties broken at random.

    Flat for a reliable ensemble; U-shaped when it is under-dispersive, dome-shaped when over-dispersive."""
    e, t = _ensemble(ens, truth, member_dim)
    if mask is not None:
        keep = np.broadcast_to(np.asarray(mask.values if isinstance(mask, xr.DataArray) else mask, bool), t.shape)
        t = np.where(keep, t, np.nan)
    ok = np.isfinite(t)
    ev, tv = e[:, ok], t[ok]
    below = np.sum(ev < tv[None], axis=0)
    ties = np.sum(ev == tv[None], axis=0)
    rng = np.random.default_rng(seed)
    ranks = below + np.floor(rng.random(tv.size) * (ties + 1)).astype(int)
    m = e.shape[0]
    counts = np.bincount(ranks, minlength=m + 1).astype(np.float64)
    freq = counts / counts.sum() if counts.sum() else np.full(m + 1, np.nan)
    return xr.DataArray(
        freq, dims="rank", coords={"rank": np.arange(m + 1)}, name="rank_histogram", attrs={"units": "1"}
    )


def rank_histogram_deviation(
    ens: Field, truth: Field, mask: Mask = None, *, member_dim: str = "member", seed: int = 0
) -> float:
    """Root-mean-square relative departure of the rank histogram from flat: ``sqrt(mean((f (M+1) - 1)^2))``.

    0 for a perfectly flat histogram; unitless."""
    f = rank_histogram(ens, truth, mask, member_dim=member_dim, seed=seed).values
    return float(np.sqrt(np.mean((f * f.size - 1.0) ** 2)))
