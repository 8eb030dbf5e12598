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

from downscale.data.calendar import time_values

__all__ = [
    "Field",
    "Mask",
    "bias",
    "circular_hour_difference",
    "climate_change_signal",
    "climate_change_signal_error",
    "diurnal_amplitude",
    "diurnal_amplitude_abs_bias",
    "diurnal_cycle",
    "diurnal_phase",
    "diurnal_phase_error",
    "hour_of_day",
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

#: RALSD floors both spectra at this fraction of the step's mean truth power (``docs/metrics.md``, step 3)
SPECTRUM_FLOOR = 1e-6

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
def _radial_bins(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer radial wavenumber of every fft2 coefficient, and the bins kept (``docs/metrics.md``).

    The frequencies of both axes are scaled to the longer side, ``L = max(ny, nx)``:
    ``k = round(hypot(fy * L, fx * L))`` with ``fy, fx`` of ``np.fft.fftfreq`` (cycles per cell), so a bin is
    one wavelength on either axis of a non-square grid.  Bins ``k = 1 .. L // 2`` that hold at least one
    coefficient are kept (``k = 0``, the spatial mean, never; empty bins are skipped).
    """
    size = max(ny, nx)
    ky = np.fft.fftfreq(ny) * size
    kx = np.fft.fftfreq(nx) * size
    k = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(int)
    counts = np.bincount(k.ravel(), minlength=size // 2 + 1)[: size // 2 + 1]
    bins = np.flatnonzero(counts[1:] > 0) + 1
    return k, bins


def _filled(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each step's cells outside ``valid`` (``(y, x)``) filled with that step's spatial mean over ``valid``."""
    means = a[:, valid].mean(axis=1)
    return np.where(valid[None], a, means[:, None, None])


def _power(fields: np.ndarray) -> np.ndarray:
    """``|fft2|^2 / (ny * nx)`` of each ``(time, y, x)`` field."""
    f = np.fft.fft2(fields, axes=(-2, -1))
    return (f.real**2 + f.imag**2) / (fields.shape[-1] * fields.shape[-2])


def _radial_average(power: np.ndarray, k: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """``(time, len(bins))``: the mean power of the coefficients in each integer-wavenumber bin."""
    flat_k = k.ravel()
    size = int(bins.max(initial=0)) + 1
    keep = flat_k < size
    counts = np.bincount(flat_k[keep], minlength=size)
    sums = np.zeros((power.shape[0], size))
    np.add.at(sums.T, flat_k[keep], power.reshape(power.shape[0], -1)[:, keep].T)
    return sums[:, bins] / counts[bins]


def _spectra(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Radially averaged power spectra ``(time, K)`` of ``a`` with the cells outside ``valid`` filled."""
    k, bins = _radial_bins(*a.shape[-2:])
    return _radial_average(_power(_filled(a, valid)), k, bins)


def _valid_cells(truth: np.ndarray, mask: Mask, dim: str) -> np.ndarray:
    """``(y, x)``: where the truth is finite at every scored step (and ``mask``, reduced over time, allows)."""
    valid = np.isfinite(truth).all(axis=0)
    if mask is not None:
        valid &= _mask_array(mask, truth.shape, dim).all(axis=0)
    return valid


def radial_psd(da: Field, mask: Mask = None, *, dim: str = "time") -> xr.DataArray:
    """Mean over steps of the radially averaged power spectrum of ``da``, by integer wavenumber ``k >= 1``.

    The cells where ``da`` is not finite at every step (or ``mask`` is False) are filled, at each step, with that
    step's spatial mean over the other cells; the power is ``|fft2(field)|^2 / (ny * nx)`` on the ``(y, x)``
    index grid (units of the input squared), averaged over the coefficients whose wavenumber (scaled to the
    longer side, see :func:`_radial_bins`) falls in each bin.  ``k`` is in cycles per longer side of the domain
    along the index grid (grid spacing is not used).  The spectrum :func:`ralsd` compares.
    """
    a, _ = _as_array(da, dim)
    valid = _valid_cells(a, mask, dim)
    _, bins = _radial_bins(*a.shape[-2:])
    if not valid.any() or a.shape[0] == 0:
        mean = np.full(bins.size, np.nan)
    else:
        mean = _spectra(a, valid).mean(axis=0)
    units = _units(da)
    return xr.DataArray(
        mean,
        dims="wavenumber",
        coords={"wavenumber": bins},
        name="radial_psd",
        attrs={"units": f"({units})^2" if units else ""},
    )


def _db(spec: np.ndarray, floor: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(spec, floor[:, None]))


def ralsd(pred: Field, truth: Field, mask: Mask = None, *, dim: str = "time", reduce: str = "day") -> float:
    """Radially averaged log-spectral distance, in dB (Harris et al. 2022), exactly as ``docs/metrics.md``.

    Valid cells are those where the truth is finite at every step (and ``mask`` allows); a NaN of the prediction
    at a valid cell is an error.  For each step:

    1. each field's invalid cells are filled with that field's spatial mean over the valid cells;
    2. the 2-D power ``|FFT|^2`` is radially averaged in integer wavenumber bins ``k = 1 .. max(ny, nx) // 2``
       (both axes' frequencies scaled to the longer side; empty bins skipped; see :func:`_radial_bins`);
    3. both spectra are floored at ``SPECTRUM_FLOOR`` (1e-6) times the step's mean truth power (the mean of its
       radial spectrum over the bins);
    4. ``RALSD_t = sqrt(mean_k (10 log10 P_truth(k) - 10 log10 P_pred(k))^2)``.

    Steps whose **truth** is spatially uniform (a day without rain anywhere) are skipped; a uniform prediction
    on a step whose truth is not (an all-dry prediction on a day when it rains somewhere) is *not*: the floor
    makes it count, as it should.  The metric is the mean over the steps kept; NaN when none is.

    ``reduce="mean_spectrum"`` instead compares the two time-mean spectra once (as the CORDEX ML-Bench ``psd``
    + ``ralsd`` diagnostics do; not the METRICS.md figure): much smaller, as step-to-step differences average out.
    """
    if reduce not in ("day", "mean_spectrum"):
        raise ValueError(f"reduce must be 'day' or 'mean_spectrum', not {reduce!r}")
    t, tda = _as_array(truth, dim)
    p, _ = _as_array(pred, dim, like=tda)
    if p.shape != t.shape:
        raise ValueError(f"pred and truth differ in shape: {p.shape} vs {t.shape}")
    valid = _valid_cells(t, mask, dim)
    if not valid.any() or t.shape[0] == 0:
        return float("nan")
    holes = ~np.isfinite(p[:, valid])
    if holes.any():
        raise ValueError(
            f"the prediction is NaN at {int(holes.any(axis=0).sum())} cells where the truth is valid at every step: "
            "a prediction must cover the truth's valid cells"
        )
    tv = t[:, valid]
    keep = tv.max(axis=1) > tv.min(axis=1)  # truth not spatially uniform
    if not keep.any():
        return float("nan")
    st = _spectra(t[keep], valid)
    sp = _spectra(p[keep], valid)
    floor = SPECTRUM_FLOOR * st.mean(axis=1)
    if reduce == "mean_spectrum":
        mt, mp = st.mean(axis=0, keepdims=True), sp.mean(axis=0, keepdims=True)
        f = np.array([floor.mean()])
        return float(np.sqrt(np.mean((_db(mt, f) - _db(mp, f)) ** 2)))
    per_step = np.sqrt(np.mean((_db(st, floor) - _db(sp, floor)) ** 2, axis=1))
    return float(per_step.mean())


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


# --------------------------------------------------------------------------- diurnal cycle (sub-daily fields)
#: hours in a day: the period of every phase
HOURS_PER_DAY = 24.0


def hour_of_day(time: Any) -> np.ndarray:
    """The UTC hour (0..23, int64) of each time stamp: cftime dates (any calendar) or numpy datetime64.

    The hour is the stamp's hour, minutes dropped (an hourly mean stamped 13:30 counts as hour 13)."""
    values = time_values(time)
    if values.size == 0:
        return np.zeros(0, np.int64)
    if np.issubdtype(values.dtype, np.datetime64):
        return (values.astype("datetime64[h]").astype(np.int64) % 24).astype(np.int64)
    return np.fromiter((t.hour for t in values), np.int64, count=values.size)


def _hours_of(da: Field, hours: np.ndarray | None, dim: str) -> np.ndarray:
    if hours is not None:
        return np.asarray(hours, np.int64).reshape(-1) % 24
    if isinstance(da, xr.DataArray) and dim in da.coords:
        return hour_of_day(da[dim])
    raise ValueError(f"a diurnal cycle needs time stamps: a DataArray with a '{dim}' coordinate, or hours=")


def diurnal_cycle(da: Field, mask: Mask = None, *, hours: np.ndarray | None = None, dim: str = "time") -> xr.DataArray:
    """``(hour, y, x)``: the mean of each cell by UTC hour of day (:func:`hour_of_day`), over its valid steps.

    The ``hour`` coordinate lists the hours present.  ``hours`` gives the hour of each step of a numpy field.
    Raises ValueError when the steps fall on fewer than two hours of day (daily data have no diurnal cycle)."""
    a, ada = _single(da, mask, dim)
    h = _hours_of(da, hours, dim)
    if h.size != a.shape[0]:
        raise ValueError(f"{h.size} hours for {a.shape[0]} time steps")
    present = np.unique(h)
    if present.size < 2:
        raise ValueError(
            f"a diurnal cycle needs sub-daily data: every step is at hour {present.tolist()} of the day"
            if present.size
            else "a diurnal cycle needs sub-daily data: no time step"
        )
    curve = np.stack([_quiet(np.nanmean, a[h == k], axis=0) for k in present])
    if ada is None:
        return xr.DataArray(
            curve, dims=("hour", "y", "x")[-curve.ndim :], coords={"hour": present}, name="diurnal_cycle"
        )
    spatial = ada.dims[1:]
    coords: dict[Any, Any] = {k: v for k, v in ada.coords.items() if set(v.dims) <= set(spatial)}
    coords["hour"] = present
    attrs = {"units": _units(da)} if _units(da) else {}
    return xr.DataArray(curve, dims=("hour", *spatial), coords=coords, name="diurnal_cycle", attrs=attrs)


def diurnal_amplitude(cycle: xr.DataArray) -> xr.DataArray:
    """``(y, x)``: max minus min of a mean diurnal curve (:func:`diurnal_cycle`), in its units; NaN where a
    cell has no valid hour."""
    c = np.asarray(cycle.transpose("hour", ...).values, np.float64)
    amp = _quiet(np.nanmax, c, axis=0) - _quiet(np.nanmin, c, axis=0)
    return cycle.isel(hour=0, drop=True).copy(data=amp).rename("diurnal_amplitude")


def diurnal_phase(cycle: xr.DataArray, *, method: str = "max") -> xr.DataArray:
    """``(y, x)``: the hour (UTC, 0..24) of the maximum of a mean diurnal curve (:func:`diurnal_cycle`).

    ``method="max"``: the hour of the largest mean (resolution: the step); ``"harmonic"``: the peak hour of the
    curve's first harmonic (24 h period), continuous, for evenly spaced hours.  NaN where a cell has no valid
    hour or a flat curve (no maximum to place)."""
    if method not in ("max", "harmonic"):
        raise ValueError(f"method must be 'max' or 'harmonic', not {method!r}")
    c = np.asarray(cycle.transpose("hour", ...).values, np.float64)
    h = np.asarray(cycle["hour"].values, np.float64)
    finite = np.isfinite(c)
    level = _quiet(np.nanmean, c, axis=0)
    amp = _quiet(np.nanmax, c, axis=0) - _quiet(np.nanmin, c, axis=0)
    flat = ~(amp > 1e-12 * np.maximum(np.abs(level), 1.0))
    if method == "max":
        i = np.argmax(np.where(finite, c, -np.inf), axis=0)
        phase = h[i].astype(np.float64)
    else:
        w = 2.0 * np.pi * h / HOURS_PER_DAY
        anom = np.where(finite, c - level, 0.0)
        shape = (-1,) + (1,) * (c.ndim - 1)
        s = np.sum(anom * np.sin(w).reshape(shape), axis=0)
        co = np.sum(anom * np.cos(w).reshape(shape), axis=0)
        phase = (np.arctan2(s, co) * HOURS_PER_DAY / (2.0 * np.pi)) % HOURS_PER_DAY
    phase = np.where(finite.any(axis=0) & ~flat, phase, np.nan)
    out = cycle.isel(hour=0, drop=True).copy(data=phase).rename("diurnal_phase")
    out.attrs = {"units": "h"}
    return out


def circular_hour_difference(a: Any, b: Any, *, period: float = HOURS_PER_DAY) -> Any:
    """``|a - b|`` of two hours of day, the short way round the clock (0..12 h): 23 h vs 1 h is 2 h."""
    d = np.mod(np.asarray(a, np.float64) - np.asarray(b, np.float64), period)
    return np.minimum(d, period - d)


def _diurnal_pair(
    pred: Field, truth: Field, mask: Mask, hours: np.ndarray | None, dim: str
) -> tuple[xr.DataArray, xr.DataArray, np.ndarray]:
    """The diurnal cycles of pred and truth and the valid cells ``(y, x)``: the truth finite at every step and
    ``mask`` True (a ``(y, x)`` mask, or ``(time, y, x)`` then True at every step).  Days need not match."""
    t, _ = _as_array(truth, dim)
    valid = np.all(
        np.isfinite(t) & _mask_array(mask, t.shape, dim if isinstance(truth, xr.DataArray) else "time"), axis=0
    )
    cp = diurnal_cycle(pred, hours=hours, dim=dim)
    ct = diurnal_cycle(truth, hours=hours, dim=dim)
    if cp.shape[1:] != ct.shape[1:]:
        raise ValueError(f"pred and truth differ in grid shape: {cp.shape[1:]} vs {ct.shape[1:]}")
    return cp, ct, valid


def diurnal_amplitude_abs_bias(
    pred: Field, truth: Field, mask: Mask = None, *, hours: np.ndarray | None = None, dim: str = "time"
) -> float:
    """Spatial mean over valid cells of ``|A(pred) - A(truth)|``, ``A`` the amplitude (max - min) of the cell's
    mean diurnal curve.  In the units of the inputs; a cell counts where the truth is valid at every step."""
    cp, ct, valid = _diurnal_pair(pred, truth, mask, hours, dim)
    d = np.asarray(diurnal_amplitude(cp).values) - np.asarray(diurnal_amplitude(ct).values)
    return _nanmean(np.abs(np.where(valid, d, np.nan)))


def diurnal_phase_error(
    pred: Field,
    truth: Field,
    mask: Mask = None,
    *,
    method: str = "max",
    hours: np.ndarray | None = None,
    dim: str = "time",
) -> float:
    """Spatial mean over valid cells of the circular distance (hours, 0..12, wrapping at 24) between the hours
    of the maximum of the mean diurnal curves of pred and truth (:func:`diurnal_phase`, ``method``).

    A cell counts where the truth is valid at every step and its curve is not flat; a flat pred curve (no
    cycle at all) scores the worst error, 12 h; a cell where pred has no valid value drops out."""
    cp, ct, valid = _diurnal_pair(pred, truth, mask, hours, dim)
    pp = np.asarray(diurnal_phase(cp, method=method).values)
    pt = np.asarray(diurnal_phase(ct, method=method).values)
    has_pred = np.isfinite(np.asarray(cp.values)).any(axis=0)
    err = np.where(np.isfinite(pp), circular_hour_difference(pp, pt), np.where(has_pred, HOURS_PER_DAY / 2, np.nan))
    return _nanmean(np.where(valid & np.isfinite(pt), err, np.nan))
