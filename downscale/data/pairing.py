"""Pairing predictors with targets, for both training frameworks.

- ``emulator``: GCM or reanalysis predictors, regridded onto the emulator's
  coarse grid, paired in time with RCM or observed targets.
- ``perfect_model``: RCM targets plus their own fields upscaled onto the coarse
  grid (RCMu), e.g. by the area mean of the fine cells whose centres fall
  inside each coarse cell.

Pairing in time (:class:`Matching`): every field's frequency is inferred from its steps (and checked against
its ``frequency`` attribute); predictors and targets must have the same one.  Sub-daily data (``1hr``,
``3hr``, ``6hr``...) pair on exact time stamps; daily data by calendar day, whatever the time of day of the
stamps (00:00 pairs with 12:00 of the same day: the tolerance is recorded); monthly data by calendar month.
Two steps of one field on one key (two stamps of one day in daily data, a duplicated stamp), or sub-daily
stamps offset from each other, are one-line errors, never a silent choice.

The result, :class:`PairedData`, is lazy (dask) and in canonical units.  The
train/validation/test split comes from the recipe's periods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from downscale.errors import CalendarError, DataError, GridMismatchError, RecipeError

if TYPE_CHECKING:
    from downscale.data.grids import Grid
    from downscale.recipe import PeriodSpec, Recipe

__all__ = ["Matching", "PairedData", "build_pairs", "stack_channels"]


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
    frequency: str = "day"  # of predictors and targets alike (infer_frequency's labels: 1hr, 6hr, day, mon...)
    matching: str = "calendar day"  # how the steps were paired, e.g. "exact time stamps, 1hr"
    matched_steps: int = 0  # time steps paired (after every field's coverage was intersected)
    forcing_longitude: float | None = None  # the domain centre's longitude of local_time_of_day (else None)

    @property
    def pairing(self) -> dict[str, Any]:
        """The record of the pairing in time, as the bundle stores it."""
        return {"frequency": self.frequency, "matching": self.matching, "matched_steps": self.matched_steps}

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
        da, conv = open_variable([recipe.resolve(p) for p in patterns], name, plausibility=True)
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


def _words(frequency: str) -> str:
    from downscale.data.io import FREQUENCY_WORDS

    return FREQUENCY_WORDS.get(frequency, frequency)


def _clock(seconds: float) -> str:
    s = round(seconds) % 86400
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}"
    return text + (f":{s % 60:02d}" if s % 60 else "")


@dataclass
class Matching:
    """How time steps of several fields are paired: by exact stamp (sub-daily), calendar day or calendar month.

    :meth:`keys` gives each step of a field its pairing key, refusing two steps of one field on one key;
    :meth:`describe` says what was matched (``"exact time stamps, 1hr"``, ``"calendar day, stamps 00:00 vs
    12:00 within 1 day"``) once :meth:`note` has seen the stamps of every field.
    """

    frequency: str
    clocks: dict[str, set[int]] = field(default_factory=dict)  # role -> seconds of the day of its stamps

    @property
    def how(self) -> str:
        from downscale.data.io import is_subdaily

        if self.frequency == "mon":
            return "calendar month"
        if self.frequency == "yr":
            return "calendar year"
        if is_subdaily(self.frequency) or self.frequency != "day":
            return "exact time stamps"
        return "calendar day"

    def keys(self, da: xr.DataArray, name: str) -> np.ndarray:
        from downscale.data.calendar import date_keys, format_stamp, month_keys, stamp_keys, time_values

        values = time_values(da["time"])
        how = self.how
        if how == "calendar day":
            keys = date_keys(values)
        elif how == "calendar month":
            keys = month_keys(values)
        elif how == "calendar year":
            keys = month_keys(values) // 100
        else:
            keys = stamp_keys(values)
        if keys.size > 1:
            order = np.argsort(keys, kind="stable")
            same = np.flatnonzero(keys[order][1:] == keys[order][:-1])
            if same.size:
                i, j = sorted((int(order[same[0]]), int(order[same[0] + 1])))
                a, b = format_stamp(values[i]), format_stamp(values[j])
                unit = {"calendar day": "day", "calendar month": "month", "calendar year": "year"}.get(how)
                if unit is None:
                    msg = f"two steps at the same time stamp ({a} and {b}, steps {i} and {j})"
                    fix = "remove the duplicated steps (e.g. ds.drop_duplicates('time'))"
                else:
                    msg = f"two steps fall in the same {unit} of {_words(self.frequency)} data ({a} and {b})"
                    fix = (
                        f"give one step per {unit}: remove the extra steps, or, if the data are sub-daily, "
                        "set the file's 'frequency' attribute and pair them on exact time stamps"
                    )
                raise CalendarError(msg, file=_first_file(da), variable=name, fix=fix)
        return keys

    def note(self, role: str, da: xr.DataArray) -> None:
        """Remember the times of day of a field's stamps (for the description of a calendar-day matching)."""
        from downscale.data.calendar import seconds_of_day

        clocks = {round(float(c)) for c in np.unique(seconds_of_day(da["time"]))}
        self.clocks.setdefault(role, set()).update(clocks)

    def describe(self) -> str:
        how = self.how
        if how == "exact time stamps":
            return f"exact time stamps, {self.frequency}"
        sides = [
            ", ".join(_clock(c) for c in sorted(cl)[:3]) + (" ..." if len(cl) > 3 else "")
            for cl in self.clocks.values()
            if cl
        ]
        unit = {"calendar day": "1 day", "calendar month": "1 month", "calendar year": "1 year"}[how]
        if not sides:
            return f"{how} within {unit}"
        stamps = " vs ".join(sides if len(sides) > 1 else [*sides, sides[0]])
        return f"{how}, stamps {stamps} within {unit}"

    def check_offset(self, a: xr.DataArray, b: xr.DataArray, a_name: str, b_name: str) -> None:
        """Sub-daily: stamps of ``a`` and ``b`` at different times of the step (e.g. 00:00 vs 00:30) never pair."""
        from downscale.data.calendar import format_stamp, seconds_of_day, stamp_keys, time_step_seconds, time_values

        if self.how != "exact time stamps" or a.sizes["time"] < 1 or b.sizes["time"] < 1:
            return
        try:
            step = time_step_seconds(a["time"] if a.sizes["time"] > 1 else b["time"])
        except DataError:
            return
        pa = np.round(np.mod(seconds_of_day(a["time"]), step)).astype(np.int64)
        pb = np.round(np.mod(seconds_of_day(b["time"]), step)).astype(np.int64)
        if set(pa.tolist()) & set(pb.tolist()):
            return
        ta, tb = time_values(a["time"]), time_values(b["time"])
        i = int(np.argmin(np.abs(stamp_keys(tb) - stamp_keys(ta[:1])[0])))
        offset = int(pb[i] - pa[0]) % int(step)
        raise CalendarError(
            f"time stamps are offset by {_clock(offset)} (hh:mm) from those of {_first_file(b) or b_name}: "
            f"{format_stamp(ta[0])} here, {format_stamp(tb[i])} there, so no {_words(self.frequency)} step pairs",
            file=_first_file(a),
            variable=a_name,
            fix=(
                f"give fields stamped at the same times of the {_words(self.frequency)} step; only if both "
                f"describe the same interval, shift this file's time axis by +{_clock(offset)} (e.g. ds['time'] = "
                f"ds.time + datetime.timedelta(seconds={offset}))"
            ),
        )


def _frequency_of(da: xr.DataArray, name: str) -> str | None:
    from downscale.data.io import check_file_frequency

    return check_file_frequency(da["time"], da.attrs.get("source_frequency"), file=_first_file(da))


def _same_frequency(fields: dict[str, xr.DataArray], role: str) -> tuple[str | None, str | None]:
    """The frequency shared by ``fields`` (and the name of its first field); an error when they differ."""
    found: str | None = None
    first: str | None = None
    for name, da in fields.items():
        freq = _frequency_of(da, name)
        if freq is None:
            continue
        if found is None:
            found, first = freq, name
        elif freq != found:
            assert first is not None
            raise DataError(
                f"{role}s of different frequencies: {name} is {_words(freq)} ({freq}), {first} {_words(found)} "
                f"({found}) in {_first_file(fields[first])}",
                file=_first_file(da),
                variable=name,
                fix=f"give every {role} at one frequency (aggregate the finer ones, e.g. with ds.resample(time=...).mean())",
            )
    return found, first


def _matching(
    targets: dict[str, xr.DataArray], predictors: dict[str, xr.DataArray], *, what: str = "predictor"
) -> Matching:
    """The matching of ``predictors`` with ``targets``: one frequency for all, else a one-line error."""
    t_freq, t_name = _same_frequency(targets, "target")
    p_freq, p_name = _same_frequency(predictors, what)
    if t_freq is not None and p_freq is not None and t_freq != p_freq:
        assert t_name is not None and p_name is not None
        p_file, t_file = _first_file(predictors[p_name]), _first_file(targets[t_name])
        coarse, fine = (p_freq, t_freq) if _seconds(p_freq) > _seconds(t_freq) else (t_freq, p_freq)
        fine_role, other_role = ("predictors", "targets") if fine == p_freq else ("targets", "predictors")
        rule = {"1hr": "1h", "3hr": "3h", "6hr": "6h", "12hr": "12h", "day": "1D", "mon": "MS"}.get(coarse, coarse)
        raise CalendarError(
            f"{what}s are {_words(p_freq)} ({p_freq}) in {p_file} but targets are {_words(t_freq)} ({t_freq}) "
            f"in {t_file}; predictors and targets must have the same frequency",
            file=p_file,
            variable=p_name,
            found=p_freq,
            expected=t_freq,
            fix=(
                f"aggregate the {_words(fine)} {fine_role} to {_words(coarse)} means "
                f"(e.g. ds.resample(time='{rule}').mean()), or give {_words(fine)} {other_role}"
            ),
        )
    return Matching(t_freq or p_freq or "day")


def _seconds(frequency: str) -> float:
    from downscale.data.io import frequency_seconds

    return frequency_seconds(frequency)


def _align_times(
    fields: dict[str, xr.DataArray], reference: xr.DataArray, matching: Matching
) -> dict[str, xr.DataArray]:
    """Select, in every field, the steps of ``reference`` (same key); refuse other calendars and missing steps."""
    from downscale.data.calendar import check_same_calendar

    ref_keys = matching.keys(reference, str(reference.name))
    out = {}
    for name, da in fields.items():
        check_same_calendar(da["time"], reference["time"], _first_file(da), _first_file(reference))
        matching.check_offset(da, reference, name, str(reference.name))
        keys = matching.keys(da, name)
        pos = {k: i for i, k in enumerate(keys)}
        idx = [pos.get(k, -1) for k in ref_keys]
        if min(idx, default=0) < 0:
            missing = int(np.sum(np.array(idx) < 0))
            unit = "days" if matching.how == "calendar day" else "time steps"
            raise CalendarError(
                f"{missing} of the {len(ref_keys)} paired {unit} are missing",
                file=_first_file(da),
                variable=name,
                fix="give predictors that cover the targets' dates",
            )
        out[name] = da.isel(time=idx).assign_coords(time=reference["time"].values)
    return out


def common_steps(fields: dict[str, xr.DataArray], matching: Matching | str) -> dict[str, xr.DataArray]:
    """Restrict every field to the steps all of them have -- calendar days, or exact stamps for sub-daily data
    (``matching``: a :class:`Matching` or a frequency) -- with the first field's stamps; two steps of one field
    on one key, another calendar, or sub-daily stamps offset from each other are one-line errors."""
    if isinstance(matching, str):
        matching = Matching(matching)
    from downscale.data.calendar import check_same_calendar

    names = list(fields)
    first = fields[names[0]]
    common = set(matching.keys(first, names[0]).tolist())
    for name in names[1:]:
        check_same_calendar(fields[name]["time"], first["time"], _first_file(fields[name]), _first_file(first))
        matching.check_offset(fields[name], first, name, names[0])
        common &= set(matching.keys(fields[name], name).tolist())
    out = {}
    for name, da in fields.items():
        keys = matching.keys(da, name)
        keep = np.flatnonzero(np.isin(keys, list(common)))
        out[name] = da.isel(time=keep)
    ref = out[names[0]]["time"].values
    return {n: da.assign_coords(time=ref) for n, da in out.items()}


def build_pairs(recipe: Recipe) -> PairedData:
    """Open, check, convert, regrid and pair everything the recipe names.

    Every field is checked as it is converted to canonical units (:func:`~downscale.data.units.to_canonical`):
    strictly increasing time, and values in the variable's plausible range, as the recipe's
    ``data.plausibility`` says (``raise``, ``warn`` or ``off``; unset: the ``downscale.set_options`` setting).
    """
    import contextlib

    from downscale.data.options import set_options

    setting = recipe.data.plausibility
    with set_options(plausibility=setting) if setting else contextlib.nullcontext():
        return _build_pairs(recipe)


def _build_pairs(recipe: Recipe) -> PairedData:
    from downscale.data.calendar import calendar_of
    from downscale.data.forcings import compute_forcings, domain_longitude, forcing_names, needs_longitude
    from downscale.data.grids import Grid
    from downscale.data.io import canonical_layout, open_dataset
    from downscale.data.regrid import create_regridder

    data = recipe.data
    steps: list[str] = []
    targets, conversions, files = _open_all(recipe, data.targets)
    fine_grid = _grid_of(next(iter(targets.values())))
    _check_on_grid(targets, fine_grid, "target")
    matching, _ = _same_frequency(targets, "target")
    targets = common_steps(targets, Matching(matching or "day"))

    coarse_grid: Grid | None = None
    if data.coarse_grid:
        path = recipe.resolve(data.coarse_grid)
        coarse_grid = Grid.from_dataset(canonical_layout(open_dataset(path), file=path), file=path)

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
            match = _matching(targets, fine_pred)
            match.note("predictors", next(iter(fine_pred.values())))
            fine_pred = _align_times(fine_pred, next(iter(targets.values())), match)
        else:
            fine_pred = dict(targets)
            match = _matching(targets, {})
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
        match = _matching(targets, predictors)
        predictors = common_steps(predictors, match)
        # keep the target steps that the predictors have, then align
        ref = next(iter(targets.values()))
        first_pred = next(iter(predictors.values()))
        match.check_offset(first_pred, ref, next(iter(predictors)), next(iter(targets)))
        match.note("predictors", first_pred)
        keep = np.flatnonzero(np.isin(match.keys(ref, next(iter(targets))), match.keys(first_pred, "predictors")))
        if keep.size == 0:
            from downscale.data.calendar import format_stamp, time_values

            tv, pv = time_values(ref["time"]), time_values(first_pred["time"])
            raise CalendarError(
                "predictors and targets have no time step in common",
                file=_first_file(first_pred),
                found=f"predictors {format_stamp(pv[0])} to {format_stamp(pv[-1])}"
                if pv.size
                else "no predictor steps",
                expected=(
                    f"steps of {format_stamp(tv[0])} to {format_stamp(tv[-1])} in {_first_file(ref)}"
                    if tv.size
                    else None
                ),
                fix="give predictors and targets of the same period",
            )
        targets = {n: da.isel(time=keep) for n, da in targets.items()}
        predictors = _align_times(predictors, next(iter(targets.values())), match)

    ref = next(iter(targets.values()))
    match.note("targets", ref)
    if "predictors" in match.clocks:  # targets first in the description
        match.clocks = {"targets": match.clocks["targets"], "predictors": match.clocks["predictors"]}
    steps.append(f"paired {ref.sizes['time']} {match.frequency} steps by {match.describe()}")
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

    longitude = domain_longitude(fine_grid) if needs_longitude(data.forcings) else None
    if longitude is not None:
        steps.append(f"local_time_of_day: local solar time at the domain centre's longitude {longitude:.2f}")
    f = compute_forcings(ref["time"], data.forcings, data.scenario, longitude=longitude)
    return PairedData(
        x=x,
        y=y,
        static=static,
        f=f,
        coarse_grid=coarse_grid,
        fine_grid=fine_grid,
        forcings=list(data.forcings),
        forcing_names=forcing_names(data.forcings),
        forcing_longitude=longitude,
        calendar=calendar_of(ref),
        conversions=conversions,
        files=sorted(set(files)),
        steps=steps,
        target_file=_first_file(ref),
        frequency=match.frequency,
        matching=match.describe(),
        matched_steps=int(ref.sizes["time"]),
    )
