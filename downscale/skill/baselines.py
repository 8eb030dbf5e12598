"""Reference downscaling methods every emulator should beat.

* ``bilinear``: the coarse field interpolated bilinearly onto the fine grid;
* ``bilinear_bc``: the same, then corrected cell by cell toward the target's training climatology --
  **additive** (``+ mean(truth - bilinear)``, for tas and other unbounded fields) or **multiplicative**
  (``* sum(truth) / sum(bilinear)``, for pr and other non-negative amounts).

Which correction applies comes from the variable's canonical units (:func:`correction_kind`) or is given as
``kind``; nothing here looks at variable names.  Both baselines share one interface::

    from downscale.skill.baselines import create_baseline
    bc = create_baseline("bilinear_bc", paired.coarse_grid, paired.fine_grid, kind="additive")
    bc.fit(coarse_train, truth_train)          # DataArrays (time, y, x) on the coarse / fine grid
    fine = bc.predict(coarse_test)             # DataArray (time, Y, X) on the fine grid

Fit and predict in the same units (canonical ones are simplest: the corrections do not depend on them, except
that an additive offset is in the units it was fitted in).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from downscale.data.grids import Grid
from downscale.registry import Registry

__all__ = [
    "BASELINES",
    "BiasCorrectedBilinear",
    "Bilinear",
    "baseline_predictors",
    "bilinear",
    "correction_kind",
    "create_baseline",
    "no_baseline_note",
]

Kind = Literal["additive", "multiplicative"]
KINDS: tuple[str, ...] = ("additive", "multiplicative")

BASELINES: Registry[type] = Registry("baseline")


def correction_kind(units: str) -> Kind:
    """``multiplicative`` for the units of precipitation (a flux, depth rate or amount: kg m-2 s-1, mm day-1, ...),
    else ``additive``."""
    from downscale.data.units import kind_from_units

    return "multiplicative" if kind_from_units(units) == "precipitation" else "additive"


def baseline_predictors(
    targets: Sequence[str], predictors: Sequence[str], explicit: Mapping[str, str] | None = None
) -> dict[str, str]:
    """target -> the predictor its baselines interpolate (bilinear, bilinear_bc, quantile mapping).

    For each target: the predictor ``explicit`` names (the recipe's ``baselines:``, recorded in the bundle), else
    the predictor of the target's own name, else a predictor with the target's CF standard name (``tasmin``,
    ``tasmax`` and ``ta850`` are all ``air_temperature`` like ``tas``): a single-level one before a pressure-level
    one, then the closest name, then the first listed.  A target with none is left out (see
    :func:`no_baseline_note`).  Entries of ``explicit`` that name no target or no predictor are ignored (the recipe
    refuses them).  The skill table of ``downscale train``, ``downscale evaluate`` and the transfer benchmark all
    take their baselines' predictors from here.
    """
    import difflib

    from downscale.data.variables import get_spec, parse_level_name

    def standard_name(name: str) -> str | None:
        try:
            return get_spec(name).standard_name
        except ValueError:  # a name the variable table does not know
            return None

    given = dict(explicit or {})
    out: dict[str, str] = {}
    for target in targets:
        if given.get(target) in predictors:
            out[target] = given[target]
            continue
        if target in predictors:
            out[target] = target
            continue
        cf = standard_name(target)
        same = [p for p in predictors if cf is not None and standard_name(p) == cf]
        if same:
            ranked = sorted(
                enumerate(same),
                key=lambda ip: (
                    parse_level_name(ip[1])[1] is not None,  # single-level first (tasmin before ta850)
                    -difflib.SequenceMatcher(None, target, ip[1]).ratio(),
                    ip[0],
                ),
            )
            out[target] = ranked[0][1]
    return out


def no_baseline_note(target: str, predictors: Sequence[str]) -> str:
    """Why ``target`` has no baseline rows, and how to give it some."""
    return (
        f"baseline: no predictor for {target} (none of that name or CF standard name among "
        f"{', '.join(predictors) or 'no predictors'}); set baselines: {{{target}: NAME}} in the recipe"
    )


def bilinear(coarse: xr.DataArray, coarse_grid: Grid, fine_grid: Grid) -> xr.DataArray:
    """``coarse`` (any leading dims, last two on ``coarse_grid``) interpolated bilinearly onto ``fine_grid``."""
    from downscale.data.regrid import create_regridder

    return create_regridder(coarse_grid, fine_grid, "bilinear")(coarse)


def _values_like(da: xr.DataArray, like: xr.DataArray) -> np.ndarray:
    """``da``'s values in ``like``'s dimension order (by name when they share names, else by position)."""
    if set(da.dims) == set(like.dims):
        da = da.transpose(*like.dims)
    values = np.asarray(da.values, dtype=np.float64)
    if values.shape != like.shape:
        raise ValueError(
            f"the target has shape {values.shape}, the bilinear field {like.shape}: "
            "give the target on the fine grid, over the same days as the coarse field"
        )
    return values


@BASELINES.register("bilinear")
class Bilinear:
    """Plain bilinear interpolation; ``fit`` does nothing (kept for the common baseline interface)."""

    name = "bilinear"

    def __init__(self, coarse_grid: Grid, fine_grid: Grid, kind: Kind | None = None, **_: Any) -> None:
        from downscale.data.regrid import create_regridder

        self.coarse_grid, self.fine_grid = coarse_grid, fine_grid
        self.regridder = create_regridder(coarse_grid, fine_grid, "bilinear")

    def fit(self, coarse_train: xr.DataArray, truth_train: xr.DataArray) -> Bilinear:
        return self

    def predict(self, coarse: xr.DataArray) -> xr.DataArray:
        return self.regridder(coarse)


@BASELINES.register("bilinear_bc")
class BiasCorrectedBilinear(Bilinear):
    """Bilinear interpolation with a per-cell correction fitted on a training period.

    ``kind="additive"``: ``correction = mean_t(truth - bilinear)`` and ``predict = bilinear + correction``.
    ``kind="multiplicative"``: ``correction = sum_t(truth) / sum_t(bilinear)`` and ``predict = bilinear *
    correction``; where the bilinear sum is ~0 (below ``1e-9`` of the largest cell's, or not positive) the
    factor is 1, and factors are clipped to ``ratio_limits`` (default [0.05, 20]).

    Only days where both fields are finite enter a cell's correction.  A cell with no valid training target
    (e.g. sea in E-OBS) keeps the uncorrected bilinear value (offset 0, factor 1); the fitted
    :attr:`correction` has NaN there so that it shows.
    """

    name = "bilinear_bc"

    def __init__(
        self,
        coarse_grid: Grid,
        fine_grid: Grid,
        kind: Kind = "additive",
        *,
        ratio_limits: tuple[float, float] = (0.05, 20.0),
        **_: Any,
    ) -> None:
        if kind not in KINDS:
            from downscale.errors import UnknownNameError

            raise UnknownNameError("bias-correction kind", kind, KINDS)
        super().__init__(coarse_grid, fine_grid)
        self.kind: Kind = kind
        self.ratio_limits = (float(ratio_limits[0]), float(ratio_limits[1]))
        self.correction: xr.DataArray | None = None
        self.units: str | None = None

    @classmethod
    def for_units(cls, coarse_grid: Grid, fine_grid: Grid, units: str, **kwargs: Any) -> BiasCorrectedBilinear:
        """The baseline with the correction that suits ``units`` (see :func:`correction_kind`)."""
        return cls(coarse_grid, fine_grid, correction_kind(units), **kwargs)

    def fit(self, coarse_train: xr.DataArray, truth_train: xr.DataArray) -> BiasCorrectedBilinear:
        b_da = self.regridder(coarse_train)
        b = np.asarray(b_da.values, dtype=np.float64)
        t = _values_like(truth_train, b_da)
        valid = np.isfinite(b) & np.isfinite(t)
        n = valid.sum(axis=0)
        bv, tv = np.where(valid, b, 0.0), np.where(valid, t, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.kind == "additive":
                corr = np.where(n > 0, (tv - bv).sum(axis=0) / np.maximum(n, 1), np.nan)
            else:
                sb, st = bv.sum(axis=0), tv.sum(axis=0)
                tiny = 1e-9 * max(float(np.max(sb, initial=0.0)), 0.0)
                ratio = np.where((sb > tiny) & (sb > 0), st / np.where(sb > 0, sb, 1.0), 1.0)
                corr = np.where(n > 0, np.clip(ratio, *self.ratio_limits), np.nan)
        spatial = b_da.dims[-2:]
        coords = {k: v for k, v in b_da.coords.items() if set(v.dims) <= set(spatial)}
        days = int(b.shape[0]) if b.ndim == 3 else 1
        self.correction = xr.DataArray(
            corr, dims=spatial, coords=coords, name="correction", attrs={"kind": self.kind, "training_days": days}
        )
        self.units = coarse_train.attrs.get("units") or truth_train.attrs.get("units")
        return self

    def predict(self, coarse: xr.DataArray) -> xr.DataArray:
        if self.correction is None:
            raise RuntimeError("fit the bias-corrected bilinear baseline before predicting")
        units = coarse.attrs.get("units")
        if units and self.units and " ".join(units.split()) != " ".join(self.units.split()):
            from downscale.errors import UnitsError

            raise UnitsError(
                "the baseline was fitted in other units",
                found=units,
                expected=self.units,
                fix="convert the coarse field to the units used in fit()",
            )
        b = self.regridder(coarse)
        corr = self.correction.values
        if self.kind == "additive":
            out = b + np.where(np.isfinite(corr), corr, 0.0)
        else:
            out = b * np.where(np.isfinite(corr), corr, 1.0)
        return out.astype(b.dtype).assign_attrs(b.attrs)


def create_baseline(name: str, coarse_grid: Grid, fine_grid: Grid, **kwargs: Any) -> Bilinear:
    """A registered baseline (``bilinear`` or ``bilinear_bc``) from ``coarse_grid`` to ``fine_grid``."""
    return BASELINES.get(name)(coarse_grid, fine_grid, **kwargs)


def _xsdba() -> Any:
    try:
        import xsdba
    except ImportError:
        from downscale.errors import NotAvailableError

        raise NotAvailableError("the quantile_mapping baseline needs xsdba", fix="pip install xsdba") from None
    return xsdba


@BASELINES.register("quantile_mapping")
class QuantileMapping(Bilinear):
    """Bilinear interpolation, then per-cell empirical quantile mapping onto the target's training distribution
    (``xsdba.EmpiricalQuantileMapping``).  The transfer function is interpolated additively between the
    ``nquantiles`` nodes for every variable (multiplicative factors blow up where the interpolated drizzle of a
    coarse precipitation field meets dry target quantiles).  For amounts (``kind="multiplicative"``) values under
    ``dry_threshold`` mm/day are jittered before fitting and adjusting (the ties of dry days otherwise leave
    the mapping undefined: NaN) and set to 0 afterwards.

    Only where `xsdba <https://github.com/Ouranosinc/xsdba>`_ is installed; :meth:`unavailable_reason` says
    why not otherwise (the evaluator then leaves it out with a note)."""

    name = "quantile_mapping"

    def __init__(
        self,
        coarse_grid: Grid,
        fine_grid: Grid,
        kind: Kind = "additive",
        *,
        nquantiles: int = 50,
        dry_threshold: float = 0.05,
        **_: Any,
    ) -> None:
        super().__init__(coarse_grid, fine_grid)
        self.kind: Kind = kind
        self.nquantiles = int(nquantiles)
        self.dry_threshold = float(dry_threshold)  # mm/day, amounts only
        self.units: str | None = None
        self.model: Any = None

    @staticmethod
    def unavailable_reason() -> str | None:
        try:
            _xsdba()
        except NotImplementedError as exc:
            return str(exc)
        return None

    def fit(self, coarse_train: xr.DataArray, truth_train: xr.DataArray) -> QuantileMapping:
        xsdba = _xsdba()
        hist = self.regridder(coarse_train)
        ref = hist.copy(data=_values_like(truth_train, hist))
        units = truth_train.attrs.get("units") or coarse_train.attrs.get("units")
        hist, ref = hist.assign_attrs(units=units), ref.assign_attrs(units=units)
        self.units = units
        hist, ref = self._jitter(hist), self._jitter(ref)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells (e.g. E-OBS sea)
            self.model = xsdba.EmpiricalQuantileMapping.train(
                ref, hist, nquantiles=self.nquantiles, kind="+", group="time"
            )
        return self

    def predict(self, coarse: xr.DataArray) -> xr.DataArray:
        if self.model is None:
            raise RuntimeError("fit the quantile-mapping baseline before predicting")
        sim = self.regridder(coarse).assign_attrs(units=self.units)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = self.model.adjust(self._jitter(sim), interp="linear", extrapolation="constant")
        out = out.transpose(*sim.dims).astype(sim.dtype)
        if self.kind == "multiplicative":  # undo the jitter: below the threshold is dry
            out = out.where((out >= self._threshold()) | out.isnull(), 0.0)
        return out.assign_attrs(sim.attrs)

    def _threshold(self) -> float:
        """``dry_threshold`` (mm/day) in the units the baseline works in."""
        from downscale.data.units import convert_units

        dry = xr.DataArray(self.dry_threshold, attrs={"units": "mm day-1", "standard_name": "lwe_precipitation_rate"})
        return float(convert_units(dry, str(self.units)).values)

    def _jitter(self, da: xr.DataArray) -> xr.DataArray:
        """Amounts: values under the dry threshold replaced by small random ones (``xsdba.processing.
        jitter_under_thresh``), so that the many tied dry quantiles do not leave the mapping undefined."""
        if self.kind != "multiplicative":
            return da
        return _xsdba().processing.jitter_under_thresh(da, thresh=f"{self._threshold()!r} {self.units}")
