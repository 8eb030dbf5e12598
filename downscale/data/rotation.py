"""Rotated-pole geometry: exact spherical rotations between geographic and rotated coordinates,
and recovering a CF ``rotated_latitude_longitude`` pole from 2-D lat/lon."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "ROTATED",
    "TOL",
    "fit_error",
    "infer_pole",
    "latlon_of_xyz",
    "mismatched_pole",
    "normalise_lon",
    "rotate",
    "unrotate",
    "xyz",
]

ROTATED = "rotated_latitude_longitude"
TOL = 5e-3  # degrees: 2-D lat/lon that agree with a rotated pole to this are taken to be on it


def normalise_lon(lon: ArrayLike) -> np.ndarray:
    """Longitudes mapped to [-180, 180)."""
    return (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0


def xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def latlon_of_xyz(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = np.rad2deg(np.arcsin(np.clip(xyz[..., 2], -1.0, 1.0)))
    return lat, normalise_lon(np.rad2deg(np.arctan2(xyz[..., 1], xyz[..., 0])))


def _rz(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _ry(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _pole_matrix(mapping: Mapping[str, Any]) -> np.ndarray:
    """M with geographic_xyz = M @ rotated_xyz for a CF rotated_latitude_longitude mapping."""
    plat = float(mapping["grid_north_pole_latitude"])
    plon = float(mapping["grid_north_pole_longitude"])
    g0 = float(mapping.get("north_pole_grid_longitude", 0.0))
    return _rz(plon) @ _ry(90.0 - plat) @ _rz(180.0) @ _rz(-g0)


def unrotate(rlat: ArrayLike, rlon: ArrayLike, mapping: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Geographic (lat, lon) of rotated-pole coordinates (exact spherical rotation, lon in [-180, 180))."""
    return latlon_of_xyz(xyz(np.asarray(rlat, float), np.asarray(rlon, float)) @ _pole_matrix(mapping).T)


def rotate(lat: ArrayLike, lon: ArrayLike, mapping: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Rotated-pole (rlat, rlon) of geographic coordinates (rlon in [-180, 180))."""
    return latlon_of_xyz(xyz(np.asarray(lat, float), np.asarray(lon, float)) @ _pole_matrix(mapping))


def fit_error(y: np.ndarray, x: np.ndarray, lat: np.ndarray, lon: np.ndarray, mapping: Mapping[str, Any]) -> float:
    """Largest difference (degrees) between the 2-D lat/lon and those computed from the pole."""
    yy, xx = np.meshgrid(y, x, indexing="ij")
    la, lo = unrotate(yy, xx, mapping)
    return float(max(np.nanmax(np.abs(la - lat)), np.nanmax(np.abs(normalise_lon(lo - lon)))))


def infer_pole(y: np.ndarray, x: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> dict[str, Any] | None:
    """The rotated pole (rounded to 0.01, else 1e-4 degrees) that maps (y, x) onto the 2-D (lat, lon) within
    ``TOL`` degrees, or None when none fits."""
    yy, xx = np.meshgrid(y, x, indexing="ij")
    r = xyz(yy, xx).reshape(-1, 3)
    g = xyz(lat, lon).reshape(-1, 3)
    ok = np.isfinite(g).all(axis=1)
    u, _, vt = np.linalg.svd(g[ok].T @ r[ok])
    m = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    plat, plon = (float(v) for v in latlon_of_xyz(m[:, 2]))
    rest = (_rz(plon) @ _ry(90.0 - plat) @ _rz(180.0)).T @ m
    g0 = float(normalise_lon(-np.rad2deg(np.arctan2(rest[1, 0], rest[0, 0]))))
    if plat > 90.0 - 1e-4:  # pole at 90N: only plon - g0 matters; keep north_pole_grid_longitude 0
        plat, plon, g0 = 90.0, float(normalise_lon(plon - g0)), 0.0
    for decimals in (2, 4):
        mapping = {
            "grid_mapping_name": ROTATED,
            "grid_north_pole_latitude": round(plat, decimals) + 0.0,
            "grid_north_pole_longitude": round(plon, decimals) + 0.0,
            "north_pole_grid_longitude": round(g0, decimals) + 0.0,
        }
        if fit_error(y, x, lat, lon, mapping) <= TOL:
            return mapping
    return None


def mismatched_pole(
    y: np.ndarray,
    x: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    mapping: Mapping[str, Any],
    name: str | None,
    file: str | PathLike | None,
) -> dict[str, Any] | None:
    """A file whose 2-D lat/lon disagree with its grid mapping: trust lat/lon (warn), infer the pole from them."""
    import warnings

    inferred = infer_pole(y, x, lat, lon)
    pole = f"{mapping.get('grid_north_pole_latitude')}, {mapping.get('grid_north_pole_longitude')}"
    if inferred is None:
        what = "treating the grid as curvilinear"
    else:
        what = (
            f"using the pole that fits them ({inferred['grid_north_pole_latitude']}, "
            f"{inferred['grid_north_pole_longitude']})"
        )
    warnings.warn(
        f"{file or 'dataset'}: grid mapping '{name}' (pole {pole}) does not reproduce the 2-D lat/lon; {what}",
        UserWarning,
        stacklevel=3,
    )
    return inferred
