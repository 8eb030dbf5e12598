"""The Python API for people who apply emulators.

    import downscale
    emu = downscale.load("runs/perfect-model-iberia")
    print(emu.describe())
    fine = emu.downscale(coarse)          # xr.Dataset on the RCM grid

``coarse`` is any ``xr.Dataset`` holding the emulator's predictors (by name or
CF standard_name, any units that convert to the canonical ones, any calendar) on
the emulator's coarse grid or on a rectilinear grid that covers it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downscale.errors import DataError, GridMismatchError

__all__ = ["Emulator", "load"]


class Emulator:
    """A trained emulator, loaded from a bundle; holds no training state."""

    def __init__(self, bundle: Any) -> None:
        import torch

        from downscale.data.grids import Grid
        from downscale.data.normalise import Normaliser
        from downscale.models import create_model

        self.bundle = bundle
        meta = bundle.meta
        self.meta = meta
        self.predictors: list[str] = [p["name"] for p in meta["predictors"]]
        self.targets: list[str] = [t["name"] for t in meta["targets"]]
        self.static_names: list[str] = [s["name"] for s in meta.get("static", [])]
        self.forcings: list[str] = list(meta.get("forcings", []))
        self.coarse_grid = Grid.from_dict(meta["grids"]["coarse"])
        self.fine_grid = Grid.from_dict(meta["grids"]["fine"])
        self.normaliser = Normaliser.from_dict(meta["normaliser"])
        from downscale.train.losses import create_criterion

        loss = meta["recipe"]["loss"]
        self.criterion = create_criterion(
            loss["type"],
            self.targets,
            loss.get("variables"),
            params=loss.get("params"),
            members=loss.get("members", 2),
            normaliser=self.normaliser,
        )
        m = meta["model"]
        self.model = create_model(
            m["type"],
            in_channels=len(self.predictors),
            out_channels=self.criterion.out_channels,
            n_forcings=int(m["n_forcings"]),
            n_static=len(self.static_names),
            **m.get("kwargs", {}),
        )
        self.model.load_state_dict(bundle.weights, strict=True)
        self.model.eval()
        self.device = torch.device("cpu")
        static = bundle.arrays.get("static")
        if static is not None and len(self.static_names):
            s = self.normaliser.normalise("static", static.astype(np.float32), self.static_names, axis=0)
            self._static = np.nan_to_num(s, nan=0.0)
        else:
            self._static = np.zeros((0, *self.fine_grid.shape), np.float32)
        self.valid_mask = bundle.arrays.get("valid_mask")

    # -- identity ---------------------------------------------------------
    @property
    def id(self) -> str:
        return self.bundle.id

    @property
    def name(self) -> str:
        return self.meta.get("name", "emulator")

    def describe(self) -> str:
        """A readable summary: variables, units, grids, periods, lineage."""
        m = self.meta
        lines = [
            f"emulator {self.name} (bundle {self.id}, format {m['format_version']}, framework {m['framework']})",
            "predictors: " + ", ".join(f"{p['name']} [{p['units']}]" for p in m["predictors"]),
            "targets:    " + ", ".join(f"{t['name']} [{t['units']}]" for t in m["targets"]),
            f"coarse grid: {self.coarse_grid.describe()}",
            f"fine grid:   {self.fine_grid.describe()}",
            "static:     " + (", ".join(self.static_names) or "none"),
            "forcings:   " + (", ".join(self.forcings) or "none"),
            f"model:      {m['model']['type']} ({m['model'].get('parameters', '?')} parameters)",
        ]
        periods = m.get("provenance", {}).get("periods", {})
        lines += [f"{k + ':':11} {v}" for k, v in periods.items()]
        lineage = m.get("lineage")
        if lineage:
            lines.append(f"lineage:    {lineage}")
        return "\n".join(lines)

    # -- inputs -----------------------------------------------------------
    def _scenario(self, ds: xr.Dataset, scenario: str | None) -> str:
        if scenario:
            return scenario
        for key in ("experiment_id", "experiment"):
            if key in ds.attrs and str(ds.attrs[key]).strip():
                return str(ds.attrs[key]).strip()
        return self.meta.get("scenario", "historical")

    def coarse_fields(self, ds: xr.Dataset, *, file: str | None = None) -> xr.DataArray:
        """The predictors of ``ds`` in canonical units on the coarse grid, as
        (time, channel, y, x).  Regrids a rectilinear input that covers the grid."""
        from downscale.data.grids import Grid
        from downscale.data.io import find_variable
        from downscale.data.pairing import stack_channels
        from downscale.data.regrid import create_regridder
        from downscale.data.units import to_canonical

        fields = {}
        for name in self.predictors:
            da = find_variable(ds, name, file)
            da, _ = to_canonical(da, name, file)
            grid = Grid.from_dataset(da, file=file)
            if grid.id != self.coarse_grid.id:
                if grid.kind != "rectilinear" or not grid.covers(self.coarse_grid):
                    raise GridMismatchError(
                        "input is not on the emulator's coarse grid and does not cover it",
                        file=file,
                        variable=name,
                        found=grid.describe(),
                        expected=self.coarse_grid.describe(),
                        fix="give inputs that cover the emulator's domain (regridded to its grid or rectilinear)",
                    )
                da = create_regridder(grid, self.coarse_grid, "bilinear")(da)
            fields[name] = da
        ref = next(iter(fields.values()))
        fields = {n: da.assign_coords(time=ref["time"].values) for n, da in fields.items()}
        return stack_channels(fields, self.coarse_grid.dims)

    # -- inference --------------------------------------------------------
    @property
    def stochastic(self) -> bool:
        """True when the model draws noise: each forward pass is one ensemble member."""
        return int(self.meta["model"].get("kwargs", {}).get("n_noise", 0) or 0) > 0

    def predict(
        self,
        x: np.ndarray,
        f: np.ndarray,
        *,
        members: int | None = None,
        mode: str = "mean",
        batch_size: int = 64,
        seed: int = 0,
    ) -> np.ndarray:
        """The model on canonical-unit arrays: x [T, C, h, w] → [T, V, H, W] in canonical units,
        or [T, members, V, H, W] when ``members`` is given (one forward pass per member).

        ``mode`` reads each head's prediction: ``mean`` (expectation) or ``sample`` (a draw,
        e.g. from a Bernoulli-gamma head).  ``seed`` makes noise and draws reproducible.
        """
        import torch

        from downscale.data.variables import get_spec

        n_members = members or 1
        xn = self.normaliser.normalise("predictors", x.astype(np.float32), self.predictors, axis=1)
        out = np.empty((len(x), n_members, len(self.targets), *self.fine_grid.shape), np.float32)
        s = torch.from_numpy(self._static)[None]
        fork = torch.random.fork_rng(devices=[])
        with fork, torch.no_grad():
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed + 1)
            for i in range(0, len(x), batch_size):
                xb = torch.from_numpy(xn[i : i + batch_size]).to(self.device)
                fb = torch.from_numpy(f[i : i + batch_size].astype(np.float32)).to(self.device)
                sb = s.expand(len(xb), *s.shape[1:]).to(self.device)
                raw = torch.stack([self.model(xb, fb, sb, self.fine_grid.shape) for _ in range(n_members)], dim=1)
                yb = self.criterion.predict(raw, mode, generator)  # [B, M, V, H, W], normalised
                yb = self.normaliser.denormalise("targets", yb, self.targets, axis=2)
                out[i : i + len(xb)] = yb.cpu().numpy()
        for v, name in enumerate(self.targets):
            lo, _ = get_spec(name).plausible
            if lo == 0.0:  # physically non-negative (precipitation): no negative values
                np.maximum(out[:, :, v], 0.0, out=out[:, :, v])
        if self.valid_mask is not None:
            out = np.where(self.valid_mask[None, None], out, np.nan).astype(np.float32)
        return out if members else out[:, 0]

    def downscale(
        self,
        ds: xr.Dataset,
        *,
        scenario: str | None = None,
        members: int | None = None,
        mode: str = "mean",
        chunk_days: int = 365,
        seed: int = 0,
        file: str | None = None,
    ) -> xr.Dataset:
        """Downscale ``ds`` (coarse predictors) to an ``xr.Dataset`` on the fine grid.

        ``members``: an ensemble of that many members (a ``member`` dimension), one
        forward pass each (stochastic models); ``mode``: ``mean`` or ``sample`` (see
        :meth:`predict`).  The chunk size does not change the result.
        """
        from downscale.data.forcings import compute_forcings
        from downscale.data.variables import get_spec

        x = self.coarse_fields(ds, file=file)
        time = x["time"]
        f = compute_forcings(time, self.forcings, self._scenario(ds, scenario))
        lead = (time.size, members) if members else (time.size,)
        out = np.empty((*lead, len(self.targets), *self.fine_grid.shape), np.float32)
        for start in range(0, time.size, chunk_days):
            sl = slice(start, start + chunk_days)
            xb = np.asarray(x.isel(time=sl).values, np.float32)
            _check_finite_inputs(xb, x, start, file)
            # the seed of each chunk depends on its first day only, so chunking does not change the result
            out[sl] = self.predict(xb, f[sl], members=members, mode=mode, seed=seed * 1_000_003 + start)
        dims = ("time", "member") if members else ("time",)
        coords = {"time": time, **({"member": np.arange(members)} if members else {})}
        data_vars = {}
        for v, name in enumerate(self.targets):
            spec = get_spec(name)
            attrs = {
                "standard_name": spec.standard_name,
                "long_name": f"{spec.long_name} (downscaled)",
                "units": spec.units,
            }
            data_vars[name] = self.fine_grid.wrap(out[..., v, :, :], name, leading=dims, coords=coords, attrs=attrs)
        result = self.fine_grid.to_dataset(data_vars)
        if "time" in ds.coords and "time" in ds["time"].encoding:
            result["time"].encoding.update(
                {k: ds["time"].encoding[k] for k in ("units", "calendar") if k in ds["time"].encoding}
            )
        result.attrs.update(
            {
                "downscale_bundle_id": self.id,
                "downscale_emulator": self.name,
            }
        )
        return result


def _check_finite_inputs(xb: np.ndarray, x: xr.DataArray, start: int, file: str | None) -> None:
    """Refuse NaN or infinite predictors: the model would silently turn them into garbage."""
    bad = ~np.isfinite(xb)
    if bad.any():
        t, c, i, j = np.argwhere(bad)[0]
        date = x["time"].values[start + t]
        raise DataError(
            f"missing (NaN) or infinite predictor value on {str(date)[:10]} at coarse cell ({i}, {j})",
            file=file,
            variable=str(x["channel"].values[c]),
            fix="fill the gaps or drop those days from the inputs",
        )


def load(path: str | Path) -> Emulator:
    """Load an emulator bundle folder (no pickle; verified checksums)."""
    from downscale.bundle import load_bundle

    return Emulator(load_bundle(path))
