"""Unit conversion to the canonical units of :mod:`downscale.data.variables`, with pint.

All factors come from pint through the UDUNITS-aware registry of cf-xarray
(``cf_xarray.units.units``); nothing here is a hand-written factor table.  Conversions are
affine (``x * scale + offset``) with the scale and offset computed by pint on scalars, so
dask-backed data stay lazy.

Precipitation gets two physical rules on top of plain unit algebra:

* depth rates (``mm day-1``, ``m s-1``: ``lwe_precipitation_rate``) <-> mass fluxes
  (``kg m-2 s-1``) through the density of liquid water, 1000 kg m-3;
* amounts (``mm``, ``m``, ``kg m-2`` with ``cell_methods: time: sum`` or a standard name ending
  in ``_amount``) -> rates by dividing by the accumulation period, taken from ``time_bnds``,
  else from the ``frequency`` attribute, else from the most common time step.

Every conversion is recorded as a :class:`Conversion`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from downscale.data.calendar import (
    calendar_of,
    check_time_axis,
    days_in_year,
    time_step_seconds,
    time_values,
)
from downscale.data.plausibility import check_plausible
from downscale.data.variables import MM_DAY, Kind, get_spec
from downscale.errors import UnitsError

if TYPE_CHECKING:
    import pint

__all__ = [
    "MM_DAY",
    "WATER_DENSITY",
    "Conversion",
    "check_units",
    "convert_units",
    "kind_from_units",
    "to_canonical",
]

#: Density of liquid water used for depth <-> mass precipitation (value, units).
WATER_DENSITY: tuple[float, str] = (1000.0, "kg m-3")

_PRECIP_NAMES = {
    "precipitation_flux",
    "lwe_precipitation_rate",
    "lwe_thickness_of_precipitation_amount",
    "precipitation_amount",
}
_SUM_RE = re.compile(r"time\s*:\s*sum")
_RANGE_ATTRS = ("valid_min", "valid_max", "valid_range", "actual_range")
# Fixed accumulation periods of CMIP ``frequency`` values, as pint-readable durations.
_FREQ_DURATION = {
    "day": "1 day",
    "1day": "1 day",
    "12hr": "12 hour",
    "6hr": "6 hour",
    "3hr": "3 hour",
    "1hr": "1 hour",
    "hr": "1 hour",
    "30min": "30 minute",
    "15min": "15 minute",
}


@dataclass(frozen=True)
class Conversion:
    """A record of one unit conversion applied to one variable of one file."""

    file: str | None
    variable: str
    from_units: str
    to_units: str
    method: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for JSON run records)."""
        return asdict(self)


def _ureg() -> pint.UnitRegistry:
    from cf_xarray.units import units

    return units


def _quantity(value: float, text: str, *, file: str | None, variable: str | None) -> pint.Quantity:
    """``pint.Quantity(value, text)`` or a one-line :class:`UnitsError`."""
    try:
        return _ureg().Quantity(value, text)
    except Exception:  # pint raises several exception types for bad strings
        raise UnitsError(
            f"cannot parse units '{text}'",
            file=file,
            variable=variable,
            fix="set a UDUNITS units attribute such as 'K', 'degC', 'kg m-2 s-1' or 'mm day-1'",
        ) from None


def _source_units(da: xr.DataArray, *, file: str | None, variable: str | None, expected: str | None) -> str:
    units = da.attrs.get("units")
    if units is None or not str(units).strip():
        raise UnitsError(
            "missing units attribute",
            file=file,
            variable=variable,
            expected=f"units '{expected}'" if expected else None,
            fix="set the variable's units attribute to the units the values are in",
        )
    return str(units).strip()


def _is_amount(da: xr.DataArray) -> bool:
    """True for accumulated amounts (``cell_methods: time: sum`` or ``*_amount`` standard names)."""
    cell_methods = str(da.attrs.get("cell_methods", ""))
    return bool(_SUM_RE.search(cell_methods)) or str(da.attrs.get("standard_name", "")).endswith("_amount")


def _affine(src: str, tgt: str) -> tuple[float, float]:
    """``scale, offset`` with ``value_in_tgt = value_in_src * scale + offset`` (pint on scalars)."""
    q = _ureg().Quantity
    one = q(1.0, src)
    if one._is_multiplicative and q(1.0, tgt)._is_multiplicative:
        return float(one.to(tgt).magnitude), 0.0
    offset = float(q(0.0, src).to(tgt).magnitude)
    scale = float(q(1.0, src).to(tgt).magnitude) - offset
    return float(f"{scale:.12g}"), offset  # undo the rounding of (1 + offset) - offset


def _accumulation_seconds(
    da: xr.DataArray, time_bounds: xr.DataArray | None, frequency: str | None, *, file: str | None, variable: str | None
) -> tuple[float | np.ndarray, str]:
    """Length of the accumulation period of each time step in seconds, and where it came from."""
    if "time" not in da.dims:
        raise UnitsError(
            "an accumulated amount needs a time axis to become a rate",
            file=file,
            variable=variable,
            fix="give rates (e.g. units 'mm day-1') for fields without time",
        )
    q = _ureg().Quantity
    if time_bounds is not None:
        tb = time_bounds
        if "time" in tb.dims and tb.sizes["time"] != da.sizes["time"]:
            tb = tb.sel(time=da["time"].values)
        bounds = np.asarray(tb.values)
        diffs = bounds[:, 1] - bounds[:, 0]
        if np.issubdtype(np.asarray(diffs).dtype, np.timedelta64):
            seconds = np.asarray(diffs, "timedelta64[ms]").astype(np.float64) / 1000.0
        else:
            seconds = np.fromiter((d.total_seconds() for d in diffs), np.float64, count=diffs.size)
        how = "time_bnds"
    else:
        freq = frequency or da.attrs.get("frequency")
        freq = str(freq).strip() if freq else None
        if freq in _FREQ_DURATION:
            seconds_f = float(q(_FREQ_DURATION[freq]).to("s").magnitude)
            return seconds_f, f"frequency '{freq}', {seconds_f:g} s"
        if freq not in ("mon", "yr"):
            step = time_step_seconds(da["time"])
            day = float(q(1.0, "day").to("s").magnitude)
            freq = "mon" if 28 * day <= step <= 31 * day else "yr" if 360 * day <= step <= 366 * day else None
            if freq is None:
                return step, f"time step {step:g} s"
            how = f"time step '{freq}'"
        else:
            how = f"frequency '{freq}'"
        times = time_values(da["time"])
        if freq == "mon":
            days = np.fromiter((t.daysinmonth for t in times), np.float64, count=times.size)
        else:
            cal = calendar_of(times)
            days = np.fromiter((days_in_year(int(t.year), cal) for t in times), np.float64, count=times.size)
        seconds = days * float(q(1.0, "day").to("s").magnitude)
    if np.any(seconds <= 0):
        raise UnitsError(
            "time bounds give a non-positive accumulation period",
            file=file,
            variable=variable,
            fix="check time_bnds (upper bound must follow lower bound)",
        )
    if np.all(seconds == seconds[0]):
        return float(seconds[0]), f"{how}, {seconds[0]:g} s"
    return seconds, how


def _plan(
    da: xr.DataArray,
    src: str,
    tgt: str,
    *,
    file: str | None,
    variable: str | None,
    time_bounds: xr.DataArray | None,
    frequency: str | None,
    hint: str,
) -> tuple[float | np.ndarray, float, str]:
    """``(scale, offset, method)`` turning ``da`` from ``src`` into ``tgt`` units."""
    q = _ureg().Quantity
    one = _quantity(1.0, src, file=file, variable=variable)
    target = _quantity(1.0, tgt, file=file, variable=variable)
    tdim = target.dimensionality
    if one.dimensionality == tdim:
        scale, offset = _affine(src, tgt)
        method = "relabel (factor 1)" if (scale, offset) == (1.0, 0.0) else f"pint: {src} -> {tgt}"
        return scale, offset, method
    rho = q(*WATER_DENSITY)
    rho_txt = f"water density {WATER_DENSITY[0]:g} {WATER_DENSITY[1]}"
    for candidate, label in ((one * rho, f"x {rho_txt}"), (one / rho, f"/ {rho_txt}")):
        if candidate.dimensionality == tdim:
            return float(candidate.to(tgt).magnitude), 0.0, f"pint: {src} -> {tgt}, depth rate {label}"
    per_second = q(1.0, "s")
    for candidate, label in ((one / per_second, ""), (one * rho / per_second, f", x {rho_txt}")):
        if candidate.dimensionality == tdim:
            if not _is_amount(da):
                raise UnitsError(
                    f"units '{src}' are an amount, not a rate",
                    file=file,
                    variable=variable,
                    found=src,
                    expected=tgt,
                    fix="set cell_methods='time: sum' if the values are totals per time step, "
                    f"or units='{src} day-1' if they are daily rates",
                )
            seconds, how = _accumulation_seconds(da, time_bounds, frequency, file=file, variable=variable)
            factor = float(candidate.to(tgt).magnitude)
            return factor / seconds, 0.0, f"pint: amount {src} / accumulation period ({how}){label} -> {tgt}"
    raise UnitsError(
        f"units '{src}' cannot be converted to {tgt}",
        file=file,
        variable=variable,
        found=src,
        expected=tgt,
        fix=hint,
    )


def _apply(da: xr.DataArray, scale: float | np.ndarray, offset: float) -> xr.DataArray:
    """``da * scale + offset``, lazily; float32 data stay float32."""
    out = da.copy(deep=False)
    floating = np.issubdtype(da.dtype, np.floating)
    if isinstance(scale, np.ndarray):
        arr = scale.astype(da.dtype) if floating else scale
        out = out * xr.DataArray(arr, dims=("time",))
    elif scale != 1.0:
        out = out * float(scale)
    if offset != 0.0:
        out = out + float(offset)
    out = out.transpose(*da.dims)
    out.name = da.name
    return out


def _new_attrs(da: xr.DataArray, src: str, tgt: str, standard_name: str | None, amount: bool) -> dict[Any, Any]:
    attrs = {k: v for k, v in da.attrs.items() if k not in _RANGE_ATTRS}
    attrs["units"] = tgt
    attrs.setdefault("original_units", src)
    if standard_name:
        attrs["standard_name"] = standard_name
    if amount and "cell_methods" in attrs:
        attrs["cell_methods"] = _SUM_RE.sub("time: mean", str(attrs["cell_methods"]))
    return attrs


def to_canonical(
    da: xr.DataArray,
    name: str,
    file: str | PathLike | None = None,
    *,
    time_bounds: xr.DataArray | None = None,
    frequency: str | None = None,
    check: bool = True,
) -> tuple[xr.DataArray, Conversion | None]:
    """Convert ``da`` to the canonical units of variable ``name``; returns ``(data, conversion)``.

    ``attrs`` of the result: ``units`` canonical, ``standard_name`` canonical, ``original_units``
    kept (or added).  ``conversion`` is None when the units string already is the canonical one.
    ``time_bounds`` (``time_bnds`` of the file) and ``frequency`` (its ``frequency`` attribute)
    give the accumulation period of precipitation amounts.

    This is where data enter ``downscale`` (training files, ``apply`` chunks, the API's datasets), so with
    ``check`` (the default) it also refuses a time axis that does not strictly increase
    (:func:`~downscale.data.calendar.check_time_axis`) and values outside the variable's plausible range
    (:func:`~downscale.data.plausibility.check_plausible`, as the ``plausibility`` setting says; this reads
    the data once, for min/max).  ``check=False``: units only, nothing is read.
    """
    spec = get_spec(name)
    file_txt = str(file) if file is not None else None
    if check and "time" in da.dims:
        check_time_axis(da["time"], file=file_txt, variable=name)
    src = _source_units(da, file=file_txt, variable=name, expected=spec.units)
    if src == spec.units:
        out = da.copy(deep=False)
        out.attrs = dict(da.attrs)
        out.attrs["standard_name"] = spec.standard_name
        if check:
            out = check_plausible(out, name, file_txt, source_units=src)
        return out, None
    scale, offset, method = _plan(
        da,
        src,
        spec.units,
        file=file_txt,
        variable=name,
        time_bounds=time_bounds,
        frequency=frequency,
        hint=f"check that the file holds {name}, or set the right units attribute",
    )
    out = _apply(da, scale, offset)
    out.attrs = _new_attrs(da, src, spec.units, spec.standard_name, _is_amount(da) and "amount" in method)
    if check:
        out = check_plausible(out, name, file_txt, source_units=src)
    return out, Conversion(file_txt, name, src, spec.units, method)


def check_units(da: xr.DataArray, name: str, file: str | PathLike | None = None) -> Conversion | None:
    """Validate that ``da`` can be converted to the canonical units of ``name`` (nothing is computed).

    Raises :class:`UnitsError`; returns the :class:`Conversion` that :func:`to_canonical` would do.
    """
    spec = get_spec(name)
    file_txt = str(file) if file is not None else None
    src = _source_units(da, file=file_txt, variable=name, expected=spec.units)
    if src == spec.units:
        return None
    _, _, method = _plan(
        da,
        src,
        spec.units,
        file=file_txt,
        variable=name,
        time_bounds=None,
        frequency=None,
        hint=f"check that the file holds {name}, or set the right units attribute",
    )
    return Conversion(file_txt, name, src, spec.units, method)


def convert_units(
    da: xr.DataArray,
    units: str,
    *,
    time_bounds: xr.DataArray | None = None,
    frequency: str | None = None,
) -> xr.DataArray:
    """Convert ``da`` to any compatible ``units`` (lazy), e.g. pr ``kg m-2 s-1`` -> ``mm day-1``.

    Uses the same rules as :func:`to_canonical` (water density for precipitation depths,
    accumulation period for amounts).  Precipitation standard names follow the new units.
    """
    name = da.name if isinstance(da.name, str) else None
    src = _source_units(da, file=None, variable=name, expected=units)
    if src == units:
        return da
    scale, offset, method = _plan(
        da,
        src,
        units,
        file=None,
        variable=name,
        time_bounds=time_bounds,
        frequency=frequency,
        hint="choose units of the same kind (same dimensionality)",
    )
    out = _apply(da, scale, offset)
    standard_name = da.attrs.get("standard_name")
    if standard_name in _PRECIP_NAMES:
        dim = _ureg().Quantity(1.0, units).dimensionality
        if dim == _ureg().Quantity(1.0, "kg m-2 s-1").dimensionality:
            standard_name = "precipitation_flux"
        elif dim == _ureg().Quantity(1.0, "m s-1").dimensionality:
            standard_name = "lwe_precipitation_rate"
    out.attrs = _new_attrs(da, src, units, standard_name, _is_amount(da) and "amount" in method)
    return out


def kind_from_units(units: str) -> Kind | None:
    """The kind of a variable known only by its units (evaluation of arbitrary fields): ``temperature`` for units
    convertible to K, ``precipitation`` for a water flux, depth rate or amount (kg m-2 s-1, mm day-1, kg m-2),
    else None.  A variable of the canonical table is asked by name instead (:attr:`VariableSpec.kind`)."""
    ureg = _ureg()
    try:
        dim = ureg.Quantity(1.0, str(units)).dimensionality
    except Exception:
        return None
    if dim == ureg.Quantity(1.0, "K").dimensionality:
        return "temperature"
    if dim in {ureg.Quantity(1.0, u).dimensionality for u in ("kg m-2 s-1", "mm day-1", "kg m-2")}:
        return "precipitation"
    return None
