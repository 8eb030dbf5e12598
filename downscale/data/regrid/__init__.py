"""Regridding between :class:`~downscale.data.grids.Grid` objects.

::

    from downscale.data.regrid import create_regridder
    up = create_regridder(rcm_grid, gcm_grid, "area_mean")   # weights computed once
    coarse = up(ds["tas"])                                   # any leading dims, numpy or dask

Backends: ``native`` (numpy/scipy, always there: bilinear, conservative between rectilinear grids, area_mean,
nearest) and ``xesmf`` (optional, conda-only; conservative between any grid kinds, patch).  ``backend="auto"``
takes native when it supports the (source, target, method) triple, else xesmf when it is installed.
"""

from __future__ import annotations

from downscale.data.grids import Grid
from downscale.data.regrid import native as _native  # noqa: F401 - registers "native"
from downscale.data.regrid import xarray_regrid_backend as _xarray_regrid  # noqa: F401 - registers "xarray_regrid"
from downscale.data.regrid import xesmf_backend as _xesmf_backend  # noqa: F401 - registers "xesmf" (lazy import)
from downscale.data.regrid.base import BACKENDS, METHODS, XESMF_FIX, Regridder
from downscale.errors import RegridError, UnknownNameError

__all__ = ["BACKENDS", "METHODS", "Regridder", "available_methods", "create_regridder", "known_methods"]


def known_methods() -> list[str]:
    """Every method name a registered backend knows (installed or not)."""
    names = list(METHODS)
    for b in BACKENDS:
        names += [m for m in getattr(BACKENDS.get(b), "methods", ()) if m not in names]
    return names


def available_methods(source: Grid, target: Grid) -> list[str]:
    """Methods that an installed backend can do from ``source`` to ``target``."""
    classes = [BACKENDS.get(b) for b in BACKENDS]
    return [m for m in known_methods() if any(c.supports(source, target, m) and c.available() for c in classes)]


def create_regridder(source: Grid, target: Grid, method: str, backend: str = "auto") -> Regridder:
    """A regridder from ``source`` to ``target`` (weights computed now, reused at every call).

    Raises UnknownNameError for an unknown method or backend, RegridError when no installed backend can do it.
    """
    if method not in known_methods():
        raise UnknownNameError("regrid method", method, known_methods())
    what = f"'{method}' regridding from a {source.kind} grid onto a {target.kind} grid"
    if backend != "auto":
        cls = BACKENDS.get(backend)
        if not cls.available():
            raise RegridError(
                f"the '{backend}' regrid backend is not installed (asked for {what})",
                fix=XESMF_FIX if backend == "xesmf" else f"install the '{backend}' backend",
            )
        if not cls.supports(source, target, method):
            others = [m for m in known_methods() if cls.supports(source, target, m)]
            raise RegridError(
                f"the '{backend}' regrid backend cannot do {what}",
                expected=", ".join(others),
                fix="use backend='auto' or one of the expected methods",
            )
        return cls(source, target, method)
    installed = []
    for name in ("native", "xesmf", *[b for b in BACKENDS if b not in ("native", "xesmf")]):
        cls = BACKENDS.get(name)
        if not cls.available():
            continue
        installed.append(name)
        if cls.supports(source, target, method):
            return cls(source, target, method)
    xesmf_ok = "xesmf" in installed
    can = available_methods(source, target)
    raise RegridError(
        f"{what} is not supported by the installed regrid backends ({', '.join(installed)})",
        expected=f"one of {', '.join(can)}" if can else None,
        fix=(
            "choose another method"
            if xesmf_ok
            else f"{XESMF_FIX} for '{method}' onto {target.kind} grids, or choose another method"
        ),
    )
