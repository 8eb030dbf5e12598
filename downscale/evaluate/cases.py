"""The data of one (emulator, test case) pair: the truth and what each method predicts, in the units people read.

:func:`load_case` reads a test case's target and predictors through the data layer (file patterns, canonical
units, calendars, periods, regridding onto the emulator's coarse grid), pairing them by date when the test is
*perfect* and leaving them apart when it is *imperfect* (a free-running GCM is not day-matched with the RCM).
:func:`predict_case` then runs the emulator and every baseline on the same predictors:

* the emulator's *estimate* (ensemble mean; a deterministic model's prediction), scored by point metrics;
* one *realisation* (member 0 of ``mode="sample"``), scored by distributions and spectra;
* the *ensemble* (stochastic emulators only), scored by CRPS and rank histograms;
* the baselines (:mod:`downscale.skill.baselines`), fitted once per emulator on its training period.

All fields come back as ``(time, y, x)`` DataArrays on the fine grid, in human units (K, mm day-1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from downscale.data.calendar import format_date
from downscale.errors import DataError, GridMismatchError, MissingVariableError

if TYPE_CHECKING:
    from downscale.data.grids import Grid
    from downscale.emulator import Emulator
    from downscale.recipe import PeriodSpec, Recipe
    from downscale.skill.baselines import Bilinear

__all__ = [
    "CaseData",
    "Predictions",
    "TrainingBaselines",
    "fit_baselines",
    "load_case",
    "predict_case",
]

logger = logging.getLogger(__name__)


@dataclass
class CaseData:
    x: xr.DataArray  # (time, channel, y, x) canonical predictors on the emulator's coarse grid
    truth: dict[str, xr.DataArray]  # variable -> (time, Y, X) canonical target
    f: np.ndarray  # [time, F] forcings of the predictor days
    matched: bool  # predictors and truth share their days
    scenario: str = "historical"


@dataclass
class Predictions:
    truth: dict[str, xr.DataArray]  # variable -> (time, Y, X), human units
    estimate: dict[str, dict[str, xr.DataArray]]  # method -> variable -> field (point metrics)
    realisation: dict[str, dict[str, xr.DataArray]]  # method -> variable -> field (distributions)
    ensemble: dict[str, xr.DataArray] = field(default_factory=dict)  # variable -> (member, time, Y, X)
    matched: bool = True

    @property
    def methods(self) -> list[str]:
        return list(self.estimate)


@dataclass
class TrainingBaselines:
    """The baselines of one emulator, fitted on its training period: variable -> baseline name -> model, and
    the predictor each variable's baselines interpolate (``tas`` -> ``tasmin``: the bundle's ``baselines``)."""

    models: dict[str, dict[str, Bilinear]]
    notes: list[str]
    sources: dict[str, str] = field(default_factory=dict)


def _human(da: xr.DataArray, name: str) -> xr.DataArray:
    from downscale.data.units import convert_units
    from downscale.data.variables import get_spec

    spec = get_spec(name)
    out = convert_units(da.assign_attrs(units=spec.units), spec.human_units)
    return out.rename(name)


def _open(files: list[str], name: str, period: PeriodSpec, resolve: Callable[[str], str], where: str) -> xr.DataArray:
    from downscale.data.calendar import select_period
    from downscale.data.io import open_variable

    da, _ = open_variable([resolve(p) for p in files], name)
    first = (da.attrs.get("source_files") or [where])[0]
    return select_period(da, period.to_period(), file=first)


def _grid(da: xr.DataArray) -> Grid:
    from downscale.data.grids import Grid

    return Grid.from_dataset(da, file=(da.attrs.get("source_files") or [None])[0])


def _check_frequency(da: xr.DataArray, emulator: Emulator, name: str, test: str) -> None:
    """The test's fields have the bundle's frequency (hourly bundles take hourly files), else a one-line error."""
    from downscale.data.io import check_frequency

    if da.sizes["time"] < 2:
        return
    file = (da.attrs.get("source_files") or [test])[0]
    try:
        check_frequency(da["time"], emulator.meta.frequency, file=file, frequency=da.attrs.get("source_frequency"))
    except DataError as err:
        raise DataError(
            f"test '{test}': {err.message}",
            file=file,
            variable=name,
            found=err.found,
            expected=err.expected,
            fix=err.fix,
        ) from None


def _files_for(spec: dict[str, list[str]] | None, name: str, role: str, test: str) -> list[str]:
    if not spec or name not in spec:
        raise MissingVariableError(
            f"test '{test}' gives no {role} files for '{name}'",
            variable=name,
            expected=f"{role} files for {name}",
            fix=f"add '{name}: <files>' to the test's {role}",
        )
    return spec[name]


def load_case(
    emulator: Emulator,
    target: dict[str, list[str]],
    predictors: dict[str, list[str]] | None,
    period: PeriodSpec,
    *,
    matched: bool,
    scenario: str,
    resolve: Callable[[str], str],
    test: str,
) -> CaseData:
    """The target and predictors of a test (or of its reference period) for ``emulator``; see the module doc."""
    from downscale.data.forcings import compute_forcings
    from downscale.data.pairing import common_steps, stack_channels
    from downscale.data.regrid import create_regridder

    truth: dict[str, xr.DataArray] = {}
    for name in emulator.targets:
        da = _open(_files_for(target, name, "target", test), name, period, resolve, test)
        grid = _grid(da)
        if grid.id != emulator.fine_grid.id:
            raise GridMismatchError(
                f"test '{test}': the target is not on the emulator's fine grid",
                variable=name,
                file=(da.attrs.get("source_files") or [None])[0],
                found=grid.describe(),
                expected=emulator.fine_grid.describe(),
                fix="give targets on the grid the emulator was trained for, or leave this "
                "emulator out of the test (its 'emulators' list)",
            )
        truth[name] = da.transpose("time", *emulator.fine_grid.dims)
    for name, da in truth.items():
        _check_frequency(da, emulator, name, test)
    truth = common_steps(truth, emulator.meta.frequency)

    fields: dict[str, xr.DataArray] = {}
    if predictors is None:  # perfect-model predictors: the target upscaled onto the coarse grid
        missing = [p for p in emulator.predictors if p not in truth]
        if missing:
            raise DataError(
                f"test '{test}' gives no predictors and the emulator's predictor '{missing[0]}' is not "
                "a target to upscale",
                fix="list the test's predictors files",
            )
        method = emulator.meta.upscale
        logger.debug(
            "test %s: predictors %s are the target upscaled (%s)", test, ", ".join(emulator.predictors), method
        )
        up = create_regridder(emulator.fine_grid, emulator.coarse_grid, method)
        fields = {p: up(truth[p]) for p in emulator.predictors}
    else:
        for name in emulator.predictors:
            da = _open(_files_for(predictors, name, "predictors", test), name, period, resolve, test)
            grid = _grid(da)
            if grid.id != emulator.coarse_grid.id:
                method = emulator.meta.regrid
                logger.debug("test %s: predictor %s regridded (%s) from %s", test, name, method, grid.describe())
                da = create_regridder(grid, emulator.coarse_grid, method)(da)
            _check_frequency(da, emulator, name, test)
            fields[name] = da
        fields = common_steps(fields, emulator.meta.frequency)
    if matched:
        both = {**{f"y:{k}": v for k, v in truth.items()}, **{f"x:{k}": v for k, v in fields.items()}}
        both = common_steps(both, emulator.meta.frequency)
        truth = {k[2:]: v for k, v in both.items() if k.startswith("y:")}
        fields = {k[2:]: v for k, v in both.items() if k.startswith("x:")}
        if not next(iter(truth.values())).sizes["time"]:
            raise DataError(
                f"test '{test}': the predictors and the target share no day in {period.describe()}",
                fix="check the files and the period, or make the test imperfect",
            )
    ref_time = next(iter(fields.values()))["time"].values
    fields = {n: da.assign_coords(time=ref_time) for n, da in fields.items()}
    x = stack_channels(fields, emulator.coarse_grid.dims).load()
    bad = ~np.isfinite(x.values)
    if bad.any():
        t, c = np.argwhere(bad)[0][:2]
        raise DataError(
            f"test '{test}': missing (NaN) predictor value on {format_date(ref_time[t])}",
            variable=str(emulator.predictors[c]),
            fix="fill the gaps or choose another period",
        )
    f = compute_forcings(x["time"], emulator.forcings, scenario, longitude=emulator.meta.forcing_longitude)
    truth = {n: da.load() for n, da in truth.items()}
    return CaseData(x=x, truth=truth, f=f, matched=matched, scenario=scenario)


def fit_baselines(emulator: Emulator, recipe: Recipe, names: list[str]) -> TrainingBaselines:
    """Every baseline of ``names`` for each target with a baseline predictor (the bundle's ``baselines``
    mapping, else :func:`~downscale.skill.baselines.baseline_predictors`: same name, else same CF standard name),
    fitted toward the target on the training period of ``recipe`` (the emulator's own training data).  A target
    without one, and quantile mapping without xsdba, are skipped with a note."""
    from downscale.data.pairing import build_pairs
    from downscale.data.variables import get_spec
    from downscale.skill.baselines import (
        BASELINES,
        baseline_predictors,
        correction_kind,
        create_baseline,
        no_baseline_note,
    )

    notes: list[str] = []
    usable = []
    for name in names:
        cls = BASELINES.get(name)
        reason = getattr(cls, "unavailable_reason", lambda: None)()
        if reason:
            notes.append(f"baseline {name} skipped: {reason}")
        else:
            usable.append(name)
    sources = emulator.meta.baselines
    if sources is None:
        sources = baseline_predictors(emulator.targets, emulator.predictors)
    sources = {t: sources[t] for t in emulator.targets if sources.get(t) in emulator.predictors}
    if usable:
        notes += [no_baseline_note(t, emulator.predictors) for t in emulator.targets if t not in sources]
        notes += [
            f"baseline: {', '.join(usable)} of {t} interpolate the predictor {p}" for t, p in sources.items() if p != t
        ]
    if not sources or not usable:
        return TrainingBaselines({}, notes, sources)
    paired = build_pairs(recipe)
    idx = paired.indices(recipe.data.periods.train)
    if paired.coarse_grid.id != emulator.coarse_grid.id or paired.fine_grid.id != emulator.fine_grid.id:
        raise GridMismatchError(
            "the training recipe's grids are not the bundle's",
            found=paired.fine_grid.describe(),
            expected=emulator.fine_grid.describe(),
            fix="give the recipe the emulator was trained from (emulators[].recipe)",
        )
    models: dict[str, dict[str, Bilinear]] = {}
    for var, source in sources.items():
        units = get_spec(var).units  # the stacked channels do not carry each variable's units
        xc = paired.x.sel(channel=source).isel(time=idx).load().assign_attrs(units=get_spec(source).units)
        yt = paired.y.sel(channel=var).isel(time=idx).load().assign_attrs(units=units)
        kind = correction_kind(units)
        models[var] = {
            b: create_baseline(b, paired.coarse_grid, paired.fine_grid, kind=kind).fit(xc, yt) for b in usable
        }
    return TrainingBaselines(models, notes, sources)


def _as_field(values: np.ndarray, truth: xr.DataArray, time: xr.DataArray, name: str) -> xr.DataArray:
    spatial = truth.dims[1:]
    coords = {k: v for k, v in truth.coords.items() if set(v.dims) <= set(spatial)}
    coords["time"] = time.values
    return xr.DataArray(
        values, dims=("time", *spatial), coords=coords, name=name, attrs={"units": truth.attrs.get("units")}
    )


def predict_case(
    emulator: Emulator, case: CaseData, baselines: TrainingBaselines, *, members: int, seed: int
) -> Predictions:
    """The emulator's estimate, realisation and (stochastic emulators) ensemble, and every fitted baseline, on the
    case's predictors; with the truth, all in human units."""
    from downscale.data.variables import get_spec

    x = np.asarray(case.x.values, np.float32)
    time = case.x["time"]
    truth_c = case.truth
    estimate: dict[str, dict[str, xr.DataArray]] = {"emulator": {}}
    realisation: dict[str, dict[str, xr.DataArray]] = {"emulator": {}}
    ensemble: dict[str, xr.DataArray] = {}
    n = members if emulator.stochastic else 1
    est = emulator.predict(x, case.f, members=n, mode="mean", seed=seed).mean(axis=1)
    real = emulator.predict(x, case.f, members=1, mode="sample", seed=seed + 1)[:, 0]
    ens = emulator.predict(x, case.f, members=n, mode="sample", seed=seed + 2) if emulator.stochastic else None
    for v, name in enumerate(emulator.targets):
        t = truth_c[name]
        estimate["emulator"][name] = _human(_as_field(est[:, v], t, time, name), name)
        realisation["emulator"][name] = _human(_as_field(real[:, v], t, time, name), name)
        if ens is not None:
            e = xr.concat([_human(_as_field(ens[:, m, v], t, time, name), name) for m in range(n)], dim="member")
            ensemble[name] = e
    for var, models in baselines.models.items():
        source = baselines.sources.get(var, var)
        coarse = case.x.sel(channel=source, drop=True).assign_attrs(units=get_spec(source).units)
        for bname, model in models.items():
            p = model.predict(coarse)
            p = _as_field(np.asarray(p.transpose("time", ...).values, np.float64), truth_c[var], time, var)
            p = p.where(np.isfinite(truth_c[var].values).any(axis=0))  # the cells the truth has (E-OBS: land)
            estimate.setdefault(bname, {})[var] = realisation.setdefault(bname, {})[var] = _human(p, var)
    truth = {n: _human(da, n) for n, da in case.truth.items()}
    return Predictions(truth, estimate, realisation, ensemble, case.matched)
