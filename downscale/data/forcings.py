"""1-D forcings: the ``f`` part of a sample.

Each forcing turns a time axis (cftime, any calendar) into one or more features
per time step.  They are scaled by fixed physical rules, not by statistics of
the training period, so that a model trained on the past can be fed 2100:

- ``season``: cos and sin of the day of year (any calendar);
- ``time_of_day``: cos and sin of the hour of the day (UTC, from the time stamp: any calendar, cftime or
  datetime64), for sub-daily data (constant on daily data: every step at the same time of day);
- ``local_time_of_day``: the same at local solar time of the domain's centre (UTC + longitude / 15 h, the
  circular mean longitude of the fine grid's cells, recorded in the bundle's ``forcing_longitude``): the same
  phase for a domain over Europe or America, which matters when one model serves several domains;
- ``ghg``: log(CO2-equivalent / 280 ppm), from the CMIP5 RCP concentration table
  shipped with the package (Meinshausen et al. 2011), by scenario.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from downscale.errors import DataError
from downscale.registry import Registry

if TYPE_CHECKING:
    from downscale.data.calendar import TimeLike
    from downscale.data.grids import Grid

__all__ = ["FORCINGS", "Forcing", "compute_forcings", "domain_longitude", "forcing_names", "needs_longitude"]


@dataclass(frozen=True)
class Forcing:
    names: tuple[str, ...]
    compute: Callable[..., np.ndarray]  # (time values, scenario, longitude) -> [T, len(names)]
    needs_longitude: bool = False


FORCINGS: Registry[Forcing] = Registry("forcing")

_SCENARIOS = {"rcp26": "rcp26", "rcp45": "rcp45", "rcp60": "rcp60", "rcp85": "rcp85"}
_LAST_HISTORICAL_YEAR = 2005


def _season(time: TimeLike, scenario: str, longitude: float | None = None) -> np.ndarray:
    from downscale.data.calendar import day_of_year_features

    return day_of_year_features(time)


def _time_of_day(time: TimeLike, scenario: str, longitude: float | None = None) -> np.ndarray:
    """``[T, 2]``: cos and sin of ``2π * (seconds since 00:00 UTC) / 86400`` of each stamp."""
    from downscale.data.calendar import seconds_of_day

    angle = 2.0 * np.pi * seconds_of_day(time) / 86400.0
    return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)


def _local_time_of_day(time: TimeLike, scenario: str, longitude: float | None = None) -> np.ndarray:
    """``[T, 2]``: cos and sin of the local solar hour at ``longitude`` (UTC + longitude / 15 h)."""
    from downscale.data.calendar import seconds_of_day

    if longitude is None:
        raise DataError(
            "the local_time_of_day forcing needs the domain's longitude",
            fix="pass longitude= (downscale.data.forcings.domain_longitude(fine_grid)) to compute_forcings",
        )
    seconds = seconds_of_day(time) + float(longitude) / 360.0 * 86400.0
    angle = 2.0 * np.pi * seconds / 86400.0
    return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)


def domain_longitude(grid: Grid) -> float:
    """The circular mean longitude (degrees east, in [-180, 180)) of the cell centres of ``grid``."""
    lon = np.deg2rad(np.asarray(grid.lon2d, np.float64))
    mean = np.arctan2(np.nanmean(np.sin(lon)), np.nanmean(np.cos(lon)))
    return float((np.rad2deg(mean) + 180.0) % 360.0 - 180.0)


@lru_cache(maxsize=1)
def _ghg_table() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import pandas as pd

    ref = resources.files("downscale") / "resources" / "ghg_concentrations_rcp_1850-2300.csv"
    with resources.as_file(ref) as path:
        table = pd.read_csv(path)
    return {
        scen: (grp["year"].to_numpy(float), grp["CO2EQ"].to_numpy(float)) for scen, grp in table.groupby("scenario")
    }


def _fractional_year(time: TimeLike) -> np.ndarray:
    from downscale.data.calendar import calendar_of, days_in_year, time_values

    values = time_values(time)
    if values.size == 0:
        return np.zeros(0)
    cal = calendar_of(values)
    years = np.fromiter((t.year for t in values), float, count=values.size)
    doy = np.fromiter((t.dayofyr for t in values), float, count=values.size)
    ndays = np.fromiter((days_in_year(int(t.year), cal) for t in values), float, count=values.size)
    return years + (doy - 0.5) / ndays


def _ghg(time: TimeLike, scenario: str, longitude: float | None = None) -> np.ndarray:
    fyear = _fractional_year(time)
    scen = _SCENARIOS.get(scenario.lower().replace(".", "").replace("ssp5-8", "rcp8"))
    if scen is None:
        if scenario == "historical" and (fyear.size == 0 or fyear.max() < _LAST_HISTORICAL_YEAR + 1):
            scen = "rcp85"  # identical historical values in every RCP table
        else:
            raise DataError(
                f"no GHG concentrations for scenario '{scenario}'",
                expected=f"one of historical (to {_LAST_HISTORICAL_YEAR}), {', '.join(_SCENARIOS)}",
                fix="set data.scenario in the recipe, or --scenario for apply",
            )
    years, co2eq = _ghg_table()[scen]
    value = np.interp(fyear, years + 0.5, co2eq)
    return np.log(value / 280.0)[:, None].astype(np.float32)


FORCINGS.register("season")(Forcing(("season_cos", "season_sin"), _season))
FORCINGS.register("time_of_day")(Forcing(("time_of_day_cos", "time_of_day_sin"), _time_of_day))
FORCINGS.register("local_time_of_day")(
    Forcing(("local_time_of_day_cos", "local_time_of_day_sin"), _local_time_of_day, needs_longitude=True)
)
FORCINGS.register("ghg")(Forcing(("log_co2eq",), _ghg))


def forcing_names(forcings: Sequence[str]) -> list[str]:
    return [n for f in forcings for n in FORCINGS.get(f).names]


def needs_longitude(forcings: Sequence[str]) -> bool:
    """Whether any of ``forcings`` depends on the domain's longitude (``local_time_of_day``)."""
    return any(FORCINGS.get(name).needs_longitude for name in forcings)


def compute_forcings(
    time: TimeLike, forcings: Sequence[str], scenario: str = "historical", *, longitude: float | None = None
) -> np.ndarray:
    """Features ``[T, F]`` (float32) for the named forcings on a cftime axis; ``longitude``: the domain's
    (:func:`domain_longitude`), needed by ``local_time_of_day`` only."""
    n = len(np.asarray(getattr(time, "values", time)))
    parts = [FORCINGS.get(name).compute(time, scenario, longitude) for name in forcings]
    if not parts:
        return np.zeros((n, 0), dtype=np.float32)
    return np.concatenate(parts, axis=1).astype(np.float32)
