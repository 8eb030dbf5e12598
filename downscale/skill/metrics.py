"""Skill metrics of a downscaled field against its reference (CORDEX ML-Bench style).

Every function is pure and takes xarray DataArrays with a ``time`` dimension and two spatial dimensions (any
names: ``rlat``/``rlon``, ``lat``/``lon``, ``y``/``x``); plain numpy arrays ``(time, y, x)`` work too.

* **Validity.**  NaN marks an invalid value (e.g. E-OBS sea cells).  A (cell, day) value counts only where
  *both* fields are finite and the optional ``mask`` is True (``mask``: boolean, ``(y, x)`` or ``(time, y, x)``,
  True = valid).  Per-cell statistics use the jointly valid days of that cell; cells with none are NaN and are
  left out of every spatial mean.
* **Spatial means** are plain (unweighted) means over the valid cells.
* **Units** are whatever comes in: convert first (pr to mm/day, tas to K) so that thresholds and scores read in
  the units people use.  Each docstring says what the result is in.
* ``pred`` and ``truth`` must have the same shape; when both are DataArrays with the same dimension names,
  ``pred`` is transposed to ``truth``'s order.  Values are compared position by position (the coordinates of
  ``truth`` label the per-cell results), so a regridded field whose coordinates differ in the last digit still
  lines up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeAlias, overload

import numpy as np
import xarray as xr

__all__ = [
    "Field",
    "Mask",
    "bias",
    "climate_change_signal",
    "climate_change_signal_error",
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

#: relative floor added to every power spectrum before its logarithm (times the largest power of the day)
SPECTRUM_EPS = 1e-12

#: a field: a DataArray with a ``time`` dimension and two spatial ones, or a numpy array ``(time, y, x)``
Field: TypeAlias = xr.DataArray | np.ndarray
#: which values are valid (True): boolean, ``(y, x)`` or ``(time, y, x)``; None: all of them
Mask: TypeAlias = xr.DataArray | np.ndarray | None


# --------------------------------------------------------------------------- plumbing
def _as_array(da: Field, dim: str, like: xr.DataArray | None = None) -> tuple[np.ndarray, xr.DataArray | None]:
    """float64 ``(time, y, x)`` values (time first) and the DataArray they came from (None for numpy)."""
    if isinstance(da, xr.DataArray):
        out: xr.DataArray = da
        if like is not None and set(da.dims) == set(like.dims):
            out = da.transpose(*like.dims)
        elif dim in da.dims:
            out = da.transpose(dim, ...)
        return np.asarray(out.values, dtype=np.float64), out
    return np.asarray(da, dtype=np.float64), None


def _mask_array(mask: Mask, shape: tuple[int, ...], dim: str) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    m = mask.transpose(dim, ...).values if isinstance(mask, xr.DataArray) and dim in mask.dims else np.asarray(mask)
    m = np.asarray(m).astype(bool)
    try:
        return np.broadcast_to(m, shape)
    except ValueError:
        raise ValueError(f"mask of shape {m.shape} does not broadcast to the fields' shape {shape}") from None


def _pair(pred: Field, truth: Field, mask: Mask, dim: str) -> tuple[np.ndarray, np.ndarray, xr.DataArray | None]:
    """pred and truth as ``(time, y, x)`` float64 with NaN wherever either is invalid or ``mask`` is False."""
    t, tda = _as_array(truth, dim)
    p, _ = _as_array(pred, dim, like=tda)
    if p.shape != t.shape:
        raise ValueError(f"pred and truth differ in shape: {p.shape} vs {t.shape}")
    valid = np.isfinite(p) & np.isfinite(t) & _mask_array(mask, t.shape, dim if tda is not None else "time")
    return np.where(valid, p, np.nan), np.where(valid, t, np.nan), tda


def _single(da: Field, mask: Mask, dim: str) -> tuple[np.ndarray, xr.DataArray | None]:
    a, ada = _as_array(da, dim)
    valid = np.isfinite(a) & _mask_array(mask, a.shape, dim if ada is not None else "time")
    return np.where(valid, a, np.nan), ada


def _cell_field(values: np.ndarray, template: xr.DataArray | None, name: str, units: str | None) -> xr.DataArray:
    """A ``(y, x)`` result, labelled with the template's spatial dims and coordinates."""
    if template is None:
        return xr.DataArray(values, dims=("y", "x")[-values.ndim :], name=name, attrs={"units": units} if units else {})
    spatial = template.dims[1:]
    coords = {k: v for k, v in template.coords.items() if set(v.dims) <= set(spatial)}
    attrs = {"units": units} if units else {}
    return xr.DataArray(values, dims=spatial, coords=coords, name=name, attrs=attrs)


def _units(da: Field) -> str | None:
    return da.attrs.get("units") if isinstance(da, xr.DataArray) else None


def _nanmean(a: np.ndarray) -> float:
    finite = np.isfinite(a)
    return float(np.mean(a[finite])) if finite.any() else float("nan")


def _quiet(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with np.errstate(invalid="ignore", divide="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return func(*args, **kwargs)


# --------------------------------------------------------------------------- point scores
def rmse(pred: Field, truth: Field, mask: Mask = None, *, dim: str = "time") -> float:
    """Root-mean-square error over every valid (cell, day) value: ``sqrt(mean((pred - truth)^2))``.

    In the units of the inputs; NaN when nothing is valid.
    """
    p, t, _ = _pair(pred, truth, mask, dim)
    return float(np.sqrt(_nanmean((p - t) ** 2)))


def bias(pred: Field, truth: Field, mask: Mask = None, *, dim: str = "time") -> float:
    """Mean error ``mean(pred - truth)`` over every valid (cell, day) value, in the units of the inputs."""
    p, t, _ = _pair(pred, truth, mask, dim)
    return _nanmean(p - t)


# --------------------------------------------------------------------------- distribution scores
def quantile_bias(pred: Field, truth: Field, q: float = 0.99, mask: Mask = None, *, dim: str = "time") -> xr.DataArray:
    """Per-cell ``quantile_q(pred) - quantile_q(truth)`` over time, as a ``(y, x)`` DataArray.

    Both quantiles are taken over the cell's jointly valid days (numpy's default linear interpolation between
    order statistics, as xarray's ``quantile``).  In the units of the inputs; NaN where a cell has no valid day.
    """
    p, t, tda = _pair(pred, truth, mask, dim)
    qp = _quiet(np.nanquantile, p, q, axis=0)
    qt = _quiet(np.nanquantile, t, q, axis=0)
    return _cell_field(qp - qt, tda, f"q{q:g}_bias", _units(truth))


def p99_abs_bias(pred: Field, truth: Field, mask: Mask = None, *, q: float = 0.99, dim: str = "time") -> float:
    """Spatial mean over valid cells of ``|P99(pred) - P99(truth)|`` (per-cell 99th percentile over time).

    In the units of the inputs (K for tas, mm/day for pr); ``q`` picks another quantile.
    """
    return _nanmean(np.abs(quantile_bias(pred, truth, q, mask, dim=dim).values))


def wet_day_frequency(da: Field, threshold: float = 1.0, mask: Mask = None, *, dim: str = "time") -> xr.DataArray:
    """Per-cell fraction (0..1) of valid days with ``da >= threshold``.

    ``threshold`` is in the units of ``da`` (1.0 for mm/day).  NaN days are left out of the count and of the
    denominator; cells with no valid day are NaN.
    """
    a, ada = _single(da, mask, dim)
    n = np.sum(np.isfinite(a), axis=0)
    wet = np.sum(np.where(np.isfinite(a), a >= threshold, False), axis=0)
    freq = np.where(n > 0, wet / np.maximum(n, 1), np.nan)
    return _cell_field(freq, ada, "wet_day_frequency", "1")


def wet_day_frequency_abs_bias(
    pred: Field, truth: Field, threshold: float = 1.0, mask: Mask = None, *, dim: str = "time"
) -> float:
    """Spatial mean over valid cells of ``|freq(pred) - freq(truth)|``, in **percentage points** (0..100).

    ``freq`` is :func:`wet_day_frequency` (days ``>= threshold``) on the jointly valid days of each cell.
    """
    p, t, _ = _pair(pred, truth, mask, dim)
    fp = wet_day_frequency(p, threshold).values
    ft = wet_day_frequency(t, threshold).values
    return 100.0 * _nanmean(np.abs(fp - ft))


# --------------------------------------------------------------------------- spectra
def _radial_bins(ny: int, nx: int) -> tuple[np.ndarray, int]:
    """Integer radial wavenumber of every fft2 coefficient, and the largest bin kept.

    ``k = round(sqrt(ky^2 + kx^2))`` with ``ky, kx`` the integer wavenumbers (cycles per domain) of
    ``np.fft.fftfreq(n) * n``.  Bins ``1 .. (max(ny, nx) - 1) // 2`` are kept (the range of pysteps' ``rapsd``,
    which Harris et al. 2022 use): ``k = 0`` (the spatial mean) is skipped, and so are the corner coefficients
    beyond half the longer side.
    """
    ky = np.fft.fftfreq(ny) * ny
    kx = np.fft.fftfreq(nx) * nx
    k = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(int)
    return k, (max(ny, nx) - 1) // 2


def _filled(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each day's NaN cells filled with that day's spatial mean of the valid cells; and which days have any."""
    means = _quiet(np.nanmean, a, axis=(-2, -1))
    ok = np.isfinite(means)
    out = np.where(np.isfinite(a), a, np.where(ok, means, 0.0)[:, None, None])
    return out, ok


def _power(fields: np.ndarray) -> np.ndarray:
    """``|fft2|^2 / (ny * nx)`` of each ``(time, y, x)`` field."""
    f = np.fft.fft2(fields, axes=(-2, -1))
    return (f.real**2 + f.imag**2) / (fields.shape[-1] * fields.shape[-2])


def _radial_average(power: np.ndarray, k: np.ndarray, kmax: int) -> np.ndarray:
    """``(time, kmax)``: the mean power in each integer-wavenumber bin 1..kmax."""
    flat_k = k.ravel()
    keep = (flat_k >= 1) & (flat_k <= kmax)
    counts = np.bincount(flat_k[keep], minlength=kmax + 1)[1:]
    p = power.reshape(power.shape[0], -1)[:, keep]
    sums = np.zeros((power.shape[0], kmax + 1))
    np.add.at(sums.T, flat_k[keep], p.T)  # sums[:, k] += p[:, j] for each kept coefficient j of bin k
    return sums[:, 1:] / np.maximum(counts, 1)


def _spectra(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Radially averaged spectra ``(time, K)``, the 2-D power maximum of each day (``k = 0`` included), which
    days have a valid cell, and which days have no spatial structure (every ``k >= 1`` power below
    ``SPECTRUM_EPS`` times that maximum: a constant field, e.g. a day without rain anywhere)."""
    filled, ok = _filled(a)
    power = _power(filled)
    k, kmax = _radial_bins(*a.shape[-2:])
    spec = _radial_average(power, k, kmax)
    peak = power.reshape(power.shape[0], -1).max(axis=1)
    flat = spec.max(axis=1, initial=0.0) <= SPECTRUM_EPS * peak
    return spec, peak, ok, flat


def radial_psd(da: Field, mask: Mask = None, *, dim: str = "time") -> xr.DataArray:
    """Mean over days of the radially averaged power spectrum of ``da``, by integer wavenumber ``k >= 1``.

    Each day: NaN (or masked) cells are filled with that day's spatial mean of the valid cells; the power is
    ``|fft2(field)|^2 / (ny * nx)`` on the ``(y, x)`` index grid (units of the input squared); it is averaged
    over the coefficients whose ``round(|k|)`` falls in each bin (see :func:`_radial_bins`).  ``k`` is in cycles
    per domain along the index grid (grid spacing is not used).  Days without a valid cell are skipped.
    """
    a, _ = _single(da, mask, dim)
    spec, _, ok, _ = _spectra(a)
    mean = spec[ok].mean(axis=0) if ok.any() else np.full(spec.shape[1], np.nan)
    units = _units(da)
    return xr.DataArray(
        mean,
        dims="wavenumber",
        coords={"wavenumber": np.arange(1, mean.size + 1)},
        name="radial_psd",
        attrs={"units": f"({units})^2" if units else ""},
    )


def _db(spec: np.ndarray, floor: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(spec + floor[:, None])


def ralsd(pred: Field, truth: Field, mask: Mask = None, *, dim: str = "time", reduce: str = "day") -> float:
    """Radially averaged log-spectral distance, in dB (Harris et al. 2022, with the square root).

    For each day, the radially averaged power spectra ``P(k)`` of both fields (as :func:`radial_psd`, with the
    cells invalid in *either* field filled by each field's own spatial mean of that day) give::

        RALSD_day = sqrt( mean_k ( 10 log10 P_pred(k) - 10 log10 P_truth(k) )^2 ),   k = 1 .. kmax

    and the metric is the mean of ``RALSD_day`` over the usable days.  ``k = 0`` (the domain mean) is left out;
    ``kmax = (max(ny, nx) - 1) // 2``; ``log10`` and the factor 10 make it decibels.  A floor of
    ``SPECTRUM_EPS`` (1e-12) times the day's largest 2-D power (of either field, ``k = 0`` included) is added to
    both spectra before the logarithm, so a single empty bin cannot give ``log(0)``.

    Days are skipped when either field has no valid cell, or no spatial structure at all (a constant field, as
    a day without rain anywhere in the domain): its log-spectrum is undefined, and the floor would turn the
    day into a ~100 dB outlier that swamps the mean.  NaN when no day is usable.

    ``reduce="mean_spectrum"`` instead compares the two time-mean spectra once (as the CORDEX ML-Bench ``psd``
    + ``ralsd`` diagnostics do); it is much smaller, as day-to-day spectral differences average out.
    """
    if reduce not in ("day", "mean_spectrum"):
        raise ValueError(f"reduce must be 'day' or 'mean_spectrum', not {reduce!r}")
    p, t, _ = _pair(pred, truth, mask, dim)
    sp, maxp, okp, flatp = _spectra(p)
    st, maxt, okt, flatt = _spectra(t)
    ok = okp & okt & ~flatp & ~flatt
    if not ok.any():
        return float("nan")
    sp, st = sp[ok], st[ok]
    floor = SPECTRUM_EPS * np.maximum(maxp[ok], maxt[ok])
    floor = np.where(floor > 0, floor, np.finfo(np.float64).tiny)
    if reduce == "mean_spectrum":
        mp, mt = sp.mean(axis=0, keepdims=True), st.mean(axis=0, keepdims=True)
        f = np.array([floor.mean()])
        return float(np.sqrt(np.mean((_db(mp, f) - _db(mt, f)) ** 2)))
    per_day = np.sqrt(np.mean((_db(sp, floor) - _db(st, floor)) ** 2, axis=1))
    return float(per_day.mean())


# --------------------------------------------------------------------------- climate change signal
def climate_change_signal(hist: Field, fut: Field, mask: Mask = None, *, dim: str = "time") -> xr.DataArray:
    """Per-cell ``mean_time(fut) - mean_time(hist)`` as a ``(y, x)`` DataArray, in the units of the inputs.

    Each period's mean uses its own valid days; a cell without any in either period is NaN.
    """
    h, hda = _single(hist, mask, dim)
    f, _ = _single(fut, mask, dim)
    if h.shape[1:] != f.shape[1:]:
        raise ValueError(f"historical and future fields differ in grid shape: {h.shape[1:]} vs {f.shape[1:]}")
    return _cell_field(
        _quiet(np.nanmean, f, axis=0) - _quiet(np.nanmean, h, axis=0), hda, "climate_change_signal", _units(hist)
    )


def climate_change_signal_error(
    pred_hist: Field, pred_fut: Field, truth_hist: Field, truth_fut: Field, mask: Mask = None, *, dim: str = "time"
) -> float:
    """Spatial mean over valid cells of ``|Δpred - Δtruth|``, ``Δ = mean_time(future) - mean_time(historical)``.

    A cell counts where all four time means exist (NaN cells of the truth, e.g. sea in E-OBS, drop out).
    ``mask`` (``(y, x)``) removes further cells.  In the units of the inputs.
    """
    dp = climate_change_signal(pred_hist, pred_fut, dim=dim).values
    dt = climate_change_signal(truth_hist, truth_fut, dim=dim).values
    if dp.shape != dt.shape:
        raise ValueError(f"pred and truth differ in grid shape: {dp.shape} vs {dt.shape}")
    err = np.abs(dp - dt)
    if mask is not None:
        err = np.where(np.asarray(mask, dtype=bool), err, np.nan)
    return _nanmean(err)


# --------------------------------------------------------------------------- correlations
def _corr(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    """Pearson correlation along ``axis`` over the values finite in both (NaN when either is constant)."""
    valid = np.isfinite(a) & np.isfinite(b)
    a, b = np.where(valid, a, np.nan), np.where(valid, b, np.nan)
    da = a - _quiet(np.nanmean, a, axis=axis, keepdims=True)
    db = b - _quiet(np.nanmean, b, axis=axis, keepdims=True)
    num = np.nansum(da * db, axis=axis)
    den = np.sqrt(np.nansum(da**2, axis=axis) * np.nansum(db**2, axis=axis))
    n = valid.sum(axis=axis)
    return np.where((den > 0) & (n >= 2), num / np.where(den > 0, den, 1.0), np.nan)


def spatial_correlation(pred: Field, truth: Field, mask: Mask = None, *, dim: str = "time") -> float:
    """Pearson correlation, across the valid cells, of the time-mean fields of pred and truth (unitless).

    Each cell's time means use its jointly valid days.
    """
    p, t, _ = _pair(pred, truth, mask, dim)
    mp, mt = _quiet(np.nanmean, p, axis=0), _quiet(np.nanmean, t, axis=0)
    return float(_corr(mp.ravel(), mt.ravel(), axis=0))


@overload
def temporal_correlation(
    pred: Field, truth: Field, mask: Mask = None, *, dim: str = "time", spatial_mean: Literal[True] = True
) -> float: ...
@overload
def temporal_correlation(
    pred: Field, truth: Field, mask: Mask = None, *, dim: str = "time", spatial_mean: Literal[False]
) -> xr.DataArray: ...
@overload
def temporal_correlation(
    pred: Field, truth: Field, mask: Mask = None, *, dim: str = "time", spatial_mean: bool = True
) -> float | xr.DataArray: ...
def temporal_correlation(
    pred: Field, truth: Field, mask: Mask = None, *, dim: str = "time", spatial_mean: bool = True
) -> float | xr.DataArray:
    """Mean over valid cells of the per-cell Pearson correlation over time of pred and truth (unitless).

    Cells with fewer than two valid days or a constant series in either field are left out.  With
    ``spatial_mean=False`` the per-cell correlations come back as a ``(y, x)`` DataArray.
    """
    p, t, tda = _pair(pred, truth, mask, dim)
    r = _corr(p, t, axis=0)
    if not spatial_mean:
        return _cell_field(r, tda, "temporal_correlation", "1")
    return _nanmean(r)
