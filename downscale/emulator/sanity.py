"""Sanity checks of downscaled values: every chunk of ``downscale apply`` before it is written, and every block
the Python API computes (:meth:`~downscale.emulator.Emulator.downscale`, :meth:`~downscale.emulator.Emulator.predict`).

* no NaN/inf where the target grid is valid (the bundle's ``valid_mask``);
* no negative value of a non-negative variable (precipitation);
* every value inside the variable's plausible range, in canonical units: ``BundleMeta.targets[i].plausible``
  of the bundle when present, else :data:`downscale.data.variables.VARIABLES` (tas 150..350 K, pr 0..1000 mm/day).

A violation stops the run with one line naming the variable, date, cell and value, or -- ``on_implausible="warn"``
-- is written, reported in a warning line (apply: and listed in the output file's attributes).  Never silent.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from downscale.bundle import BundleMeta
from downscale.data.calendar import format_date
from downscale.errors import DataError

__all__ = ["ON_IMPLAUSIBLE", "Violation", "check_chunk", "check_on_implausible", "check_output", "plausible_bounds"]

#: the choices of ``on_implausible`` in the Python API ("error" is apply's spelling of "raise")
ON_IMPLAUSIBLE = ("raise", "warn", "error")

#: at most this many violations are listed per variable and chunk (the count is always exact)
MAX_LISTED = 5


@dataclass
class Violation:
    variable: str
    kind: str  # "NaN", "negative", "too low", "too high"
    date: str
    member: int | None
    cell: tuple[int, int]
    dims: tuple[str, str]
    lat: float
    lon: float
    value: float
    units: str
    bounds: tuple[float, float]
    count: int  # violations of this variable in the chunk

    def where(self) -> str:
        member = f" member {self.member}" if self.member is not None else ""
        return (
            f"{self.date}{member} at cell ({self.dims[0]} {self.cell[0]}, {self.dims[1]} {self.cell[1]}; "
            f"lat {self.lat:.2f}, lon {self.lon:.2f})"
        )

    def describe(self) -> str:
        lo, hi = self.bounds
        what = "NaN" if self.kind == "NaN" else f"{self.value:.6g} {self.units}"
        return (
            f"implausible downscaled {self.variable} ({self.kind}): {what} on {self.where()}; plausible range "
            f"{lo:g}..{hi:g} {self.units}; {self.count} such value(s) in the chunk"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Violation:
        d = dict(d)
        d["cell"], d["dims"], d["bounds"] = tuple(d["cell"]), tuple(d["dims"]), tuple(d["bounds"])
        return cls(**d)

    def error(self, file: str | None = None, *, api: bool = False) -> DataError:
        how = (
            'on_implausible="warn" returns such values with a warning'
            if api
            else "--on-implausible warn writes such values and flags them in the output"
        )
        return DataError(
            self.describe(),
            file=file,
            variable=self.variable,
            fix=f"check the inputs (units, variables, period) and the bundle; {how}",
        )


def plausible_bounds(meta: BundleMeta) -> dict[str, tuple[float, float]]:
    """Per target: (lo, hi) in canonical units, as the bundle records them."""
    return {t.name: (float(t.plausible[0]), float(t.plausible[1])) for t in meta.targets}


def check_chunk(
    y: np.ndarray,
    time: np.ndarray | None,
    targets: list[str],
    bounds: dict[str, tuple[float, float]],
    units: dict[str, str],
    valid_mask: np.ndarray | None,
    grid: Any,
) -> list[Violation]:
    """Violations in ``y`` [T, (M,) V, H, W]: the first of each kind per variable, with exact counts (``time``:
    the stamps of the steps; None names them by index)."""
    members = y.ndim == 5
    found: list[Violation] = []
    mask = np.ones(y.shape[-2:], bool) if valid_mask is None else np.asarray(valid_mask, bool)
    for v, name in enumerate(targets):
        valid = mask[v] if mask.ndim == 3 else mask  # one mask per target, or one for all
        field = y[:, :, v] if members else y[:, v]
        lo, hi = bounds[name]
        nan = ~np.isfinite(field) & valid
        with np.errstate(invalid="ignore"):
            low = ("negative" if lo == 0.0 else "too low", (field < lo) & valid)
            tests = [("NaN", nan), low, ("too high", (field > hi) & valid)]
        for kind, bad in tests:
            count = int(bad.sum())
            if not count:
                continue
            first = np.argwhere(bad)
            # the worst offender is the one to show (for NaN: the first)
            if kind != "NaN":
                vals = field[bad]
                k = int(np.argmax(vals) if kind == "too high" else np.argmin(vals))  # argwhere order = field[bad]
            else:
                k = 0
            pos = tuple(int(i) for i in first[k])
            t, member, (i, j) = pos[0], (pos[1] if members else None), pos[-2:]
            found.append(
                Violation(
                    variable=name,
                    kind=kind,
                    date=format_date(time[t]) if time is not None else f"time step {t}",
                    member=member,
                    cell=(i, j),
                    dims=tuple(grid.dims),
                    lat=float(grid.lat2d[i, j]),
                    lon=float(grid.lon2d[i, j]),
                    value=float(field[pos]),
                    units=units[name],
                    bounds=(lo, hi),
                    count=count,
                )
            )
    return found


def check_on_implausible(value: Any) -> str:
    """``on_implausible`` of the Python API: ``raise`` or ``warn`` (``error``, apply's spelling, means raise)."""
    if not isinstance(value, str) or value not in ON_IMPLAUSIBLE:
        raise DataError(
            "unknown on_implausible choice",
            found=repr(value),
            expected="'raise' or 'warn'",
            fix='use on_implausible="raise" (stop at an implausible value) or "warn" (return it, with a warning)',
        )
    return "raise" if value == "error" else value


def check_output(
    emu: Any, y: np.ndarray, time: np.ndarray | None, on_implausible: str = "raise", *, file: str | None = None
) -> list[Violation]:
    """The checks of apply on values ``y`` [T, (M,) V, H, W] computed by emulator ``emu`` on ``time``: raise the
    first violation as one line (``on_implausible="raise"``) or warn one line per violation (``"warn"``)."""
    how = check_on_implausible(on_implausible)
    units = {t.name: t.units for t in emu.meta.targets}
    found = check_chunk(y, time, emu.targets, plausible_bounds(emu.meta), units, emu.valid_mask, emu.fine_grid)
    if found and how == "raise":
        raise found[0].error(file=file, api=True)
    for v in found:
        where = f"{file}: " if file else ""
        warnings.warn(f"{where}{v.describe()} (returned: on_implausible='warn')", RuntimeWarning, stacklevel=3)
    return found
