"""Canonical variables (CMIP conventions): names, CF standard names, units, plausible ranges.

Every field that enters ``downscale`` is converted to the canonical units listed here
(see :mod:`downscale.data.units`).  Pressure-level fields use CMIP level names such as
``ta850`` (air temperature at 850 hPa): :func:`parse_level_name` splits them and
:func:`get_spec` returns the spec of the base variable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal, get_args

from downscale.errors import UnknownNameError

__all__ = ["KINDS", "MM_DAY", "VARIABLES", "Kind", "VariableSpec", "get_spec", "parse_level_name"]

#: 1 mm/day of liquid water in kg m-2 s-1 (1 mm over 1 m2 weighs 1 kg).  The one copy of this factor; its public
#: home is :mod:`downscale.data.units` (defined here, the bottom of the data layer, so that the table can use it).
MM_DAY = 1.0 / 86400.0

#: What a variable is: every "is this precipitation / a temperature?" question asks :attr:`VariableSpec.kind`.
Kind = Literal["temperature", "precipitation", "pressure", "humidity", "geopotential", "wind", "surface", "coordinate"]
KINDS: tuple[str, ...] = get_args(Kind)


@dataclass(frozen=True)
class VariableSpec:
    """One canonical variable.

    ``units`` are the canonical (CMIP) units every input is converted to;
    ``human_units`` are how people read the field (plots, reports);
    ``plausible`` is a (lo, hi) range in canonical units used for sanity checks;
    ``alt_standard_names`` are other CF standard names that describe the same
    quantity (e.g. precipitation given as a depth rate or as an amount);
    ``kind`` says what the variable is (:data:`KINDS`) and ``non_negative``
    whether a negative value is physically impossible (precipitation, humidity).
    """

    name: str
    standard_name: str
    units: str
    long_name: str
    human_units: str
    plausible: tuple[float, float]
    kind: Kind
    alt_standard_names: tuple[str, ...] = ()
    has_levels: bool = False

    @property
    def non_negative(self) -> bool:
        """A negative value is impossible: the plausible range starts at 0."""
        return self.plausible[0] == 0.0

    @property
    def standard_names(self) -> tuple[str, ...]:
        """The canonical standard name followed by the accepted alternatives."""
        return (self.standard_name, *self.alt_standard_names)


_PR_ALT = (
    "lwe_precipitation_rate",
    "lwe_thickness_of_precipitation_amount",
    "precipitation_amount",
)

_T: Kind = "temperature"
_P: Kind = "precipitation"
_H: Kind = "humidity"
_SPECS: tuple[VariableSpec, ...] = (
    VariableSpec("tas", "air_temperature", "K", "Near-surface air temperature", "K", (150.0, 350.0), _T),
    VariableSpec(
        "tasmax", "air_temperature", "K", "Daily maximum near-surface air temperature", "K", (150.0, 350.0), _T
    ),
    VariableSpec(
        "tasmin", "air_temperature", "K", "Daily minimum near-surface air temperature", "K", (150.0, 350.0), _T
    ),
    VariableSpec(
        "pr", "precipitation_flux", "kg m-2 s-1", "Precipitation", "mm day-1", (0.0, 1000.0 * MM_DAY), _P, _PR_ALT
    ),
    VariableSpec(
        "psl", "air_pressure_at_mean_sea_level", "Pa", "Sea-level pressure", "hPa", (85000.0, 110000.0), "pressure"
    ),
    VariableSpec("ps", "surface_air_pressure", "Pa", "Surface air pressure", "hPa", (40000.0, 110000.0), "pressure"),
    VariableSpec("ta", "air_temperature", "K", "Air temperature", "K", (150.0, 350.0), _T, has_levels=True),
    VariableSpec("hus", "specific_humidity", "1", "Specific humidity", "g kg-1", (0.0, 0.1), _H, has_levels=True),
    VariableSpec("huss", "specific_humidity", "1", "Near-surface specific humidity", "g kg-1", (0.0, 0.1), _H),
    VariableSpec(
        "zg",
        "geopotential_height",
        "m",
        "Geopotential height",
        "m",
        (-1000.0, 40000.0),
        "geopotential",
        has_levels=True,
    ),
    VariableSpec("ua", "eastward_wind", "m s-1", "Eastward wind", "m s-1", (-150.0, 150.0), "wind", has_levels=True),
    VariableSpec("va", "northward_wind", "m s-1", "Northward wind", "m s-1", (-150.0, 150.0), "wind", has_levels=True),
    VariableSpec("uas", "eastward_wind", "m s-1", "Eastward near-surface wind", "m s-1", (-150.0, 150.0), "wind"),
    VariableSpec("vas", "northward_wind", "m s-1", "Northward near-surface wind", "m s-1", (-150.0, 150.0), "wind"),
    VariableSpec("orog", "surface_altitude", "m", "Surface altitude", "m", (-500.0, 9000.0), "surface"),
    VariableSpec("sftlf", "land_area_fraction", "%", "Land area fraction", "%", (0.0, 100.0), "surface"),
    # grid coordinates, usable as static fields (data.static_from_grid)
    VariableSpec(
        "lat", "latitude", "degrees_north", "Latitude of the cell centre", "degrees_north", (-90.0, 90.0), "coordinate"
    ),
    VariableSpec(
        "lon",
        "longitude",
        "degrees_east",
        "Longitude of the cell centre",
        "degrees_east",
        (-180.0, 360.0),
        "coordinate",
    ),
)

#: name -> spec, in table order.
VARIABLES: dict[str, VariableSpec] = {spec.name: spec for spec in _SPECS}

#: suffix of the static fields made by ``data.static_climatology``.
CLIMATOLOGY_SUFFIX = "_clim"

_LEVEL_RE = re.compile(r"^([A-Za-z_]+?)(\d+)$")


def parse_level_name(name: str) -> tuple[str, int | None]:
    """Split a CMIP level name: ``"ta850"`` -> ``("ta", 850)``, ``"tas"`` -> ``("tas", None)``.

    Only trailing digits make a level, so ``"tas"`` is never read as ``"ta"`` plus a level.
    The level is in hPa.
    """
    match = _LEVEL_RE.match(name)
    if match is None:
        return name, None
    return match.group(1), int(match.group(2))


def get_spec(name: str) -> VariableSpec:
    """The :class:`VariableSpec` of ``name``; a pressure-level suffix is stripped (``ta850`` -> ``ta``).

    Raises :class:`~downscale.errors.UnknownNameError` for names not in the table.
    """
    if name in VARIABLES:
        return VARIABLES[name]
    if name.endswith(CLIMATOLOGY_SUFFIX):  # a training-period climatology used as a static field
        spec = get_spec(name[: -len(CLIMATOLOGY_SUFFIX)])
        return replace(spec, name=name, long_name=f"{spec.long_name}, per-cell mean over the training days")
    base, level = parse_level_name(name)
    if level is not None and base in VARIABLES:
        return VARIABLES[base]
    raise UnknownNameError("variable", name, VARIABLES)
