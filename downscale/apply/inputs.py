"""Inputs of ``downscale apply``: CMIP files -> projections -> periods, and the region an emulator reads.

* :func:`parse_drs` reads a CMIP5/CMIP6 DRS file name (``tas_day_CNRM-CM5_rcp85_r1i1p1_20060101-20151231.nc``);
* :func:`scan` opens each file once (lazily) and groups the files into :class:`Projection` s -- one per model,
  experiment and member, from the global attributes, falling back to the DRS name -- picking the files that hold
  each predictor the bundle needs (``ta850`` may come from a ``ta`` file on ``plev``);
* each predictor's grid is checked with :func:`downscale.data.region.check_input_grid` before any data is read.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downscale.data.calendar import format_date, format_stamp
from downscale.data.io import check_frequency, is_subdaily
from downscale.errors import CalendarError, DataError, MissingVariableError

__all__ = [
    "DRS",
    "OutputSpan",
    "Projection",
    "parse_drs",
    "scan",
]

# global attributes naming the driving model, experiment and member, most specific first
ATTR_KEYS = {
    "model": ("driving_model_id", "source_id", "model_id"),
    "experiment": ("driving_experiment_name", "experiment_id", "experiment"),
    "member": ("driving_model_ensemble_member", "variant_label", "ensemble_member", "parent_experiment_rip"),
}
_MEMBER_RE = re.compile(r"^r\d+i\d+p\d+(f\d+)?$")
_GRID_LABEL_RE = re.compile(r"^g[nrlm]\w*$")
_CLEAN_RE = re.compile(r"[^A-Za-z0-9.+-]")


def clean(text: str) -> str:
    """A file-name-safe token."""
    return _CLEAN_RE.sub("-", str(text).strip())


@dataclass(frozen=True)
class DRS:
    """The parts of a CMIP DRS file name; None where the name does not follow the DRS."""

    variable: str | None = None
    table: str | None = None
    model: str | None = None
    experiment: str | None = None
    member: str | None = None
    grid: str | None = None
    dates: str | None = None


def parse_drs(path: str | Path) -> DRS:
    """``<var>_<table>_<model>_<exp>_<member>[_<grid>][_<dates>].nc`` (CMIP6, and CMIP5 without ``<grid>``)."""
    parts = Path(path).name.removesuffix(".nc").split("_")
    if len(parts) < 5 or not _MEMBER_RE.match(parts[4]):
        return DRS(variable=parts[0] if len(parts) > 1 else None)
    rest = parts[5:]
    grid = rest.pop(0) if rest and _GRID_LABEL_RE.match(rest[0]) else None
    return DRS(parts[0], parts[1], parts[2], parts[3], parts[4], grid, rest[0] if rest else None)


def _member_from_attrs(attrs: dict[str, Any]) -> str:
    for key in ATTR_KEYS["member"]:
        value = str(attrs.get(key, "")).strip()
        if value:
            return value
    rip = [attrs.get(k) for k in ("realization", "initialization_method", "physics_version")]
    if all(v is not None and str(v).strip() for v in rip):  # CMIP5 global attributes
        return "r{}i{}p{}".format(*(int(np.asarray(v).ravel()[0]) for v in rip))
    return ""


def projection_key(attrs: dict[str, Any], path: str | Path) -> tuple[str, str, str]:
    """(model, experiment, member) from global attributes, else from the DRS file name."""
    drs = parse_drs(path)
    out = []
    for part, fallback in (("model", drs.model), ("experiment", drs.experiment)):
        value = next((str(attrs[k]).strip() for k in ATTR_KEYS[part] if str(attrs.get(k, "")).strip()), "")
        out.append(clean(value or fallback or f"unknown-{part}"))
    out.append(clean(_member_from_attrs(attrs) or drs.member or "r0i0p0"))
    return out[0], out[1], out[2]


# ------------------------------------------------------------------------------------------- region
# ------------------------------------------------------------------------------------------- scanning
@dataclass
class FileInfo:
    path: Path
    attrs: dict[str, Any]
    drs: DRS
    times: np.ndarray  # cftime objects
    calendar: str
    time_units: str | None
    variables: dict[str, str] = field(default_factory=dict)  # predictor -> data variable name
    misses: dict[str, MissingVariableError] = field(default_factory=dict)  # predictor -> why not here
    ds: xr.Dataset | None = field(default=None, repr=False)  # the lazily opened file


@dataclass
class OutputSpan:
    """One output file's span: days ``[start, stop)`` of the projection's time axis."""

    start: int
    stop: int
    label: str  # YYYYMMDD-YYYYMMDD (daily), YYYYMMDDHHMM-YYYYMMDDHHMM (sub-daily), as CMIP names files

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class Projection:
    """The files of one model, experiment and member."""

    model: str
    experiment: str
    member: str
    files: dict[str, list[Path]]  # predictor -> its files, in time order
    time: np.ndarray  # the common days of all predictors (cftime objects)
    calendar: str
    time_units: str | None
    attrs: dict[str, Any]  # global attributes of the first file
    periods: list[OutputSpan]
    spans: dict[Path, tuple[Any, Any]] = field(default_factory=dict)  # file -> (first day, last day)
    varnames: dict[str, str] = field(default_factory=dict)  # predictor -> its variable in the files ("ta")
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.experiment, self.member)

    @property
    def name(self) -> str:
        return "_".join(self.key)

    def files_for(self, period: OutputSpan) -> dict[str, list[str]]:
        """For each predictor, the files that hold days of ``period``."""
        t0, t1 = self.time[period.start], self.time[period.stop - 1]
        out = {}
        for name, files in self.files.items():
            out[name] = [str(p) for p in files if self.spans[p][0] <= t1 and self.spans[p][1] >= t0]
        return out

    def sources_for(self, period: OutputSpan) -> dict[str, tuple[str, list[str]]]:
        """What to read for ``period``: dataset key -> (variable to look up, files).  Predictors that are levels
        of one variable in the same files (ta850, ta700 and ta500 of ``ta`` on plev) are read together, once:
        the key is then that variable, and the levels are picked from it in memory."""
        files = self.files_for(period)
        groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for name, fs in files.items():
            groups.setdefault((self.varnames.get(name, name), tuple(fs)), []).append(name)
        out: dict[str, tuple[str, list[str]]] = {}
        for (var, shared_files), names in groups.items():
            shared = len(names) > 1 and var not in files and var not in out
            for name in [var] if shared else names:
                out[name] = (name, list(shared_files))
        return out


def scan(
    files: Sequence[Path], predictors: Sequence[str], *, emulator: Any = None, halo: float = 0.0
) -> list[Projection]:
    """Group ``files`` into projections and find each predictor's files.  With ``emulator``, also run every
    check that needs no data: grids (on the coarse grid, or rectilinear and covering its domain plus ``halo``),
    units (convertible to the canonical ones), calendars and the daily frequency."""
    from downscale.data.calendar import calendar_of, check_time_axis
    from downscale.data.io import find_variable, open_dataset
    from downscale.data.variables import parse_level_name

    infos: list[FileInfo] = []
    for path in files:
        ds = open_dataset(path)
        if "time" not in ds.coords or ds["time"].size == 0:
            continue  # fixed fields (orog, sftlf) are not predictors of apply
        times = np.asarray(ds["time"].values)
        info = FileInfo(
            path,
            dict(ds.attrs),
            parse_drs(path),
            times,
            calendar_of(ds["time"]),
            ds["time"].encoding.get("units"),
            ds=ds,
        )
        for name in predictors:
            try:
                find_variable(ds, name, file=path)
            except MissingVariableError as exc:
                info.misses[name] = exc
                continue
            base, _ = parse_level_name(name)
            info.variables[name] = name if name in ds.data_vars else base if base in ds.data_vars else name
        if info.variables:  # a duplicated or backward step: an error naming both stamps, never a silent choice
            check_time_axis(times, file=path, variable=", ".join(info.variables))
        infos.append(info)
    if not infos:
        raise DataError(
            "no input file has a time axis",
            file=", ".join(map(str, files)),
            fix="give the daily predictor files of a projection",
        )
    groups: dict[tuple[str, str, str], list[FileInfo]] = {}
    for info in infos:
        groups.setdefault(projection_key(info.attrs, info.path), []).append(info)
    expected = str(getattr(getattr(emulator, "meta", None), "frequency", "day"))  # the bundle's (day without one)
    projections = [_projection(key, members, predictors, expected) for key, members in sorted(groups.items())]
    if emulator is not None:
        by_path = {i.path: i for i in infos}
        for proj in projections:
            for name, files in proj.files.items():  # in the bundle's order of predictors
                for path in files:
                    opened = by_path[path].ds
                    assert opened is not None  # opened by the scan above, closed only below
                    _validate(emulator, opened, find_variable(opened, name, file=path), name, path, halo)
    for info in infos:
        if info.ds is not None:
            info.ds.close()
            info.ds = None
    return projections


def _validate(emu: Any, ds: xr.Dataset, da: xr.DataArray, name: str, path: Path, halo: float) -> None:
    """The grid and units checks of one predictor in one file (no data is read)."""
    from downscale.data.calendar import time_bounds
    from downscale.data.grids import Grid
    from downscale.data.region import check_input_grid
    from downscale.data.units import to_canonical

    grid = Grid.from_dataset(da, file=str(path))
    check_input_grid(grid, emu.coarse_grid, halo, file=path, variable=name)
    # units only: the values (plausibility) are checked chunk by chunk, by Emulator.coarse_fields, as they are read
    to_canonical(da, name, path, time_bounds=time_bounds(ds), frequency=ds.attrs.get("frequency"), check=False)


def _projection(
    key: tuple[str, str, str], infos: list[FileInfo], predictors: Sequence[str], frequency: str = "day"
) -> Projection:
    files: dict[str, list[FileInfo]] = {}
    for name in predictors:
        have = [i for i in infos if name in i.variables]
        if not have:
            raise _missing(name, infos, key)
        files[name] = sorted(have, key=lambda i: i.times.min())
    ref = files[predictors[0]]
    calendar = ref[0].calendar
    for name, group in files.items():
        for info in group:
            if info.calendar != calendar:
                raise CalendarError(
                    f"calendar {info.calendar} differs from {calendar} in {ref[0].path.name}",
                    file=info.path,
                    variable=name,
                    found=info.calendar,
                    expected=calendar,
                    fix="keep the files of one model together; convert them with xarray's convert_calendar",
                )
    for name, group in files.items():
        _check_overlap(name, group)
    axes = {name: np.concatenate([i.times for i in group]) for name, group in files.items()}
    axes = {name: np.sort(axis) for name, axis in axes.items()}
    time = axes[predictors[0]]
    notes = []
    unit = "days" if not is_subdaily(frequency) else "time steps"
    for name, axis in axes.items():
        common = np.intersect1d(time, axis)
        if common.size < time.size or common.size < axis.size:
            notes.append(f"{name} covers {axis.size} {unit}, {axes[predictors[0]].size} in {predictors[0]}")
        time = common
    label = "_".join(key)
    if time.size == 0:
        raise DataError(
            f"the predictors have no {'day' if unit == 'days' else 'time step'} in common",
            file=ref[0].path,
            found="; ".join(notes),
            fix=f"give files of the same period for every predictor ({label})",
        )
    check_frequency(time, frequency, file=ref[0].path, frequency=ref[0].attrs.get("frequency"))
    periods = _periods(time, [i.times for i in ref], subdaily=is_subdaily(frequency))
    spans = {i.path: (i.times.min(), i.times.max()) for g in files.values() for i in g}
    varnames = {n: g[0].variables[n] for n, g in files.items() if all(i.variables[n] == g[0].variables[n] for i in g)}
    return Projection(
        *key,
        files={n: [i.path for i in g] for n, g in files.items()},
        time=time,
        calendar=calendar,
        time_units=ref[0].time_units,
        attrs=dict(ref[0].attrs),
        periods=periods,
        spans=spans,
        varnames=varnames,
        notes=notes,
    )


def _check_overlap(name: str, group: list[FileInfo]) -> None:
    """The same time stamp of predictor ``name`` in two files: an error naming both files (each file's own axis
    is checked by :func:`scan`)."""
    if len(group) < 2:
        return
    values = np.concatenate([i.times for i in group])
    origin = np.concatenate([np.full(i.times.size, k) for k, i in enumerate(group)])
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if same.size:
        a, b = (group[int(origin[order[k]])].path for k in (same[0], same[0] + 1))
        raise CalendarError(
            f"{same.size} time stamp(s) are in two files: {format_stamp(ordered[same[0]])} is in both "
            f"{a.name} and {b.name}",
            file=f"{a}, {b}",
            variable=name,
            fix="give each time step once: remove one of the overlapping files from the inputs, or cut the "
            "overlap out of one of them (e.g. ds.sel(time=slice(...)))",
        )


def _missing(name: str, infos: list[FileInfo], key: tuple[str, str, str]) -> MissingVariableError:
    """The most telling error for a predictor no file holds: a missing level beats a missing variable."""
    from downscale.data.variables import parse_level_name

    base, _ = parse_level_name(name)
    errors = [(i, i.misses[name]) for i in infos if name in i.misses]
    for _, err in errors:
        if "level" in err.message:
            return err
    for info, err in errors:
        if info.drs.variable in (name, base):
            return err
    if len(errors) == 1:
        return errors[0][1]
    names = sorted({i.path.name for i in infos})
    return MissingVariableError(
        f"no variable '{name}' in the {len(infos)} files of {'_'.join(key)}",
        file=", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else ""),
        fix=f"add the files holding {name} to the inputs",
    )


def _label(t: Any, subdaily: bool) -> str:
    """``YYYYMMDD``, or ``YYYYMMDDHHMM`` for sub-daily files (the CMIP file-name convention)."""
    text = format_date(t, compact=True)
    return text + f"{t.hour:02d}{t.minute:02d}" if subdaily else text


def _periods(time: np.ndarray, file_times: list[np.ndarray], *, subdaily: bool = False) -> list[OutputSpan]:
    """Output periods follow the files of the first predictor: one per file (e.g. per decade)."""
    starts = sorted({int(np.searchsorted(time, t.min())) for t in file_times})
    starts = [s for s in starts if s < time.size]
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    bounds = [*starts, time.size]
    return [
        OutputSpan(a, b, f"{_label(time[a], subdaily)}-{_label(time[b - 1], subdaily)}")
        for a, b in itertools.pairwise(bounds)
        if b > a
    ]
