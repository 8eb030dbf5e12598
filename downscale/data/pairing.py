"""Pairing predictors with targets, for both training frameworks.

- ``emulator``: GCM or reanalysis predictors, regridded onto the emulator's
  coarse grid, paired by calendar date with RCM or observed targets.
- ``perfect_model``: RCM targets plus their own fields upscaled onto the coarse
  grid (RCMu), e.g. by the area mean of the fine cells whose centres fall
  inside each coarse cell.

The result, :class:`PairedData`, is lazy (dask) and in canonical units.  The
train/validation/test split comes from the recipe's periods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from downscale.errors import CalendarError, GridMismatchError, RecipeError

if TYPE_CHECKING:
    from downscale.data.grids import Grid
    from downscale.recipe import PeriodSpec, Recipe

__all__ = ["PairedData", "build_pairs", "stack_channels"]


@dataclass
class PairedData:
    x: xr.DataArray  # (time, channel, y, x) coarse predictors
    y: xr.DataArray  # (time, channel, Y, X) fine targets
    static: xr.DataArray | None  # (channel, Y, X)
    f: np.ndarray  # [time, F] forcings
    coarse_grid: Grid
    fine_grid: Grid
    forcings: list[str]
    forcing_names: list[str]
    calendar: str
    conversions: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    target_file: str | None = None

    @property
    def predictors(self) -> list[str]:
        return [str(c) for c in self.x["channel"].values]

    @property
    def targets(self) -> list[str]:
        return [str(c) for c in self.y["channel"].values]

    @property
    def static_names(self) -> list[str]:
        return [] if self.static is None else [str(c) for c in self.static["channel"].values]

    @property
    def time(self) -> xr.DataArray:
        return self.y["time"]

    def indices(self, period: PeriodSpec, *, exclude: PeriodSpec | None = None) -> np.ndarray:
        """Time indices inside ``period`` (a PeriodSpec), minus those in ``exclude``."""
        from downscale.data.calendar import select_period

        t = xr.DataArray(
            np.arange(self.time.size), dims="time", coords={"time": self.time.values}, name=", ".join(self.targets)
        )
        chosen = select_period(t, period.to_period(), file=self.target_file).values
        if exclude is not None:
            chosen = np.setdiff1d(chosen, select_period(t, exclude.to_period(), file=self.target_file).values)
        return np.sort(chosen)

    def with_climatology(self, names: list[str], idx: np.ndarray) -> PairedData:
        """Add the per-cell mean of the targets ``names`` over the days ``idx`` as static fields.

        ``idx`` must be training days only (the caller's split), so that no test
        or validation information reaches the model.  The fields are named
        ``<target>_clim`` and stored in the bundle like orography.
        """
        import dataclasses

        from downscale.data.variables import CLIMATOLOGY_SUFFIX

        if not names:
            return self
        clim = self.y.sel(channel=list(names)).isel(time=idx).mean("time", skipna=True).load()
        clim = clim.assign_coords(channel=[f"{n}{CLIMATOLOGY_SUFFIX}" for n in names]).reset_coords(drop=True)
        clim = clim.astype("float32")
        static = clim if self.static is None else xr.concat([self.static.reset_coords(drop=True), clim], dim="channel")
        step = f"static {', '.join(map(str, clim['channel'].values))}: per-cell mean of the targets over {len(idx)} training days"
        return dataclasses.replace(self, static=static, steps=[*self.steps, step])


def stack_channels(fields: dict[str, xr.DataArray], dims: tuple[str, str]) -> xr.DataArray:
    """Stack same-grid fields into one (time?, channel, y, x) array."""
    arrays = []
    for name, da in fields.items():
        da = da.reset_coords(drop=True) if da.coords else da
        arrays.append(da.expand_dims(channel=[name]).astype("float32"))
    out = xr.concat(arrays, dim="channel", coords="minimal", compat="override", join="override")
    lead = [d for d in out.dims if d not in ("channel", *dims)]
    return out.transpose(*lead, "channel", *dims)


def _open_all(recipe: Recipe, spec: dict[str, list[str]]) -> tuple[dict[str, xr.DataArray], list[dict], list[str]]:
    from downscale.data.io import open_variable

    out, conversions, files = {}, [], []
    for name, patterns in spec.items():
        da, conv = open_variable([recipe.resolve(p) for p in patterns], name)
        out[name] = da
        conversions += [c.to_dict() for c in conv]
        files += list(da.attrs.get("source_files", []))
    return out, conversions, files


def _first_file(da: xr.DataArray) -> str | None:
    files = da.attrs.get("source_files") or [None]
    return files[0]


def _grid_of(da: xr.DataArray) -> Grid:
    from downscale.data.grids import Grid

    return Grid.from_dataset(da, file=_first_file(da))


def _check_on_grid(fields: dict[str, xr.DataArray], grid: Grid, role: str) -> None:
    for name, da in fields.items():
        g = _grid_of(da)
        if g.id != grid.id:
            raise GridMismatchError(
                f"{role} is not on the {role} grid",
                file=_first_file(da),
                variable=name,
                found=g.describe(),
                expected=grid.describe(),
                fix=f"give every {role} on the same grid",
            )


def _align_times(fields: dict[str, xr.DataArray], reference: xr.DataArray) -> dict[str, xr.DataArray]:
    """Select, in every field, the calendar days of ``reference``; refuse other calendars."""
    from downscale.data.calendar import check_same_calendar, date_keys

    ref_keys = date_keys(reference["time"])
    out = {}
    for name, da in fields.items():
        check_same_calendar(da["time"], reference["time"], _first_file(da), _first_file(reference))
        keys = date_keys(da["time"])
        pos = {k: i for i, k in enumerate(keys)}
        idx = [pos.get(k, -1) for k in ref_keys]
        if min(idx, default=0) < 0:
            missing = int(np.sum(np.array(idx) < 0))
            raise CalendarError(
                f"{missing} of the {len(ref_keys)} paired days are missing",
                file=_first_file(da),
                variable=name,
                fix="give predictors that cover the targets' dates",
            )
        out[name] = da.isel(time=idx).assign_coords(time=reference["time"].values)
    return out


def _common_days(fields: dict[str, xr.DataArray]) -> dict[str, xr.DataArray]:
    """Restrict every field to the calendar days that all of them have."""
    from downscale.data.calendar import check_same_calendar, date_keys

    names = list(fields)
    first = fields[names[0]]
    common = set(date_keys(first["time"]).tolist())
    for name in names[1:]:
        check_same_calendar(fields[name]["time"], first["time"], _first_file(fields[name]), _first_file(first))
        common &= set(date_keys(fields[name]["time"]).tolist())
    out = {}
    for name, da in fields.items():
        keys = date_keys(da["time"])
        keep = np.flatnonzero(np.isin(keys, list(common)))
        out[name] = da.isel(time=keep)
    ref = out[names[0]]["time"].values
    return {n: da.assign_coords(time=ref) for n, da in out.items()}


def build_pairs(recipe: Recipe) -> PairedData:
    """Open, check, convert, regrid and pair everything the recipe names."""
    from downscale.data.calendar import calendar_of
    from downscale.data.forcings import compute_forcings, forcing_names
    from downscale.data.grids import Grid
    from downscale.data.io import open_dataset
    from downscale.data.regrid import create_regridder

    data = recipe.data
    steps: list[str] = []
    targets, conversions, files = _open_all(recipe, data.targets)
    fine_grid = _grid_of(next(iter(targets.values())))
    _check_on_grid(targets, fine_grid, "target")
    targets = _common_days(targets)

    coarse_grid: Grid | None = None
    if data.coarse_grid:
        path = recipe.resolve(data.coarse_grid)
        coarse_grid = Grid.from_dataset(open_dataset(path), file=path)

    if recipe.framework == "perfect_model":
        if coarse_grid is None:
            raise RecipeError(
                "the perfect_model framework needs data.coarse_grid",
                fix="set data.coarse_grid to a file on the GCM grid",
            )
        if data.predictors:
            fine_pred, conv, more = _open_all(recipe, data.predictors)
            conversions += conv
            files += more
            _check_on_grid(fine_pred, fine_grid, "target")
            fine_pred = _align_times(fine_pred, next(iter(targets.values())))
        else:
            fine_pred = dict(targets)
        upscale = create_regridder(fine_grid, coarse_grid, data.upscale)
        predictors = {name: upscale(da) for name, da in fine_pred.items()}
        steps.append(f"predictors = {data.upscale} upscaling of the RCM fields onto {coarse_grid.describe()}")
    else:
        if not data.predictors:
            raise RecipeError("the emulator framework needs data.predictors", fix="list the GCM predictor files")
        raw, conv, more = _open_all(recipe, data.predictors)
        conversions += conv
        files += more
        if coarse_grid is None:
            coarse_grid = _grid_of(next(iter(raw.values())))
        predictors = {}
        for name, da in raw.items():
            grid = _grid_of(da)
            if grid.id != coarse_grid.id:
                predictors[name] = create_regridder(grid, coarse_grid, data.regrid)(da)
                steps.append(f"{name}: {data.regrid} regridding from {grid.describe()}")
            else:
                predictors[name] = da
        predictors = _common_days(predictors)
        # keep the target days that the predictors have, then align
        ref = next(iter(targets.values()))
        from downscale.data.calendar import date_keys

        keep = np.flatnonzero(np.isin(date_keys(ref["time"]), date_keys(next(iter(predictors.values()))["time"])))
        targets = {n: da.isel(time=keep) for n, da in targets.items()}
        predictors = _align_times(predictors, next(iter(targets.values())))

    ref = next(iter(targets.values()))
    predictors = {n: da.assign_coords(time=ref["time"].values) for n, da in predictors.items()}
    x = stack_channels(predictors, coarse_grid.dims)
    y = stack_channels(targets, fine_grid.dims)

    static = None
    fields: dict[str, xr.DataArray] = {}
    if data.static:
        fields, conv, more = _open_all(recipe, data.static)
        conversions += conv
        files += more
        fields = {n: (da.isel(time=0, drop=True) if "time" in da.dims else da) for n, da in fields.items()}
        if data.static_regrid:
            for name, da in list(fields.items()):
                grid = _grid_of(da)
                if grid.id != fine_grid.id:
                    fields[name] = create_regridder(grid, fine_grid, data.static_regrid)(da)
                    steps.append(f"static {name}: {data.static_regrid} regridding from {grid.describe()}")
        _check_on_grid(fields, fine_grid, "static field")
    for name in data.static_from_grid:  # the grid's own coordinates as static fields
        values = {"lat": fine_grid.lat2d, "lon": fine_grid.lon2d}[name]
        fields[name] = xr.DataArray(np.asarray(values, np.float32), dims=fine_grid.dims)
    if fields:
        static = stack_channels(fields, fine_grid.dims).load()

    f = compute_forcings(ref["time"], data.forcings, data.scenario)
    return PairedData(
        x=x,
        y=y,
        static=static,
        f=f,
        coarse_grid=coarse_grid,
        fine_grid=fine_grid,
        forcings=list(data.forcings),
        forcing_names=forcing_names(data.forcings),
        calendar=calendar_of(ref),
        conversions=conversions,
        files=sorted(set(files)),
        steps=steps,
        target_file=_first_file(ref),
    )
