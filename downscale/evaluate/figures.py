"""The report's figures, built from the metric functions in one place: each returns PNG bytes.

* :func:`bias_maps` -- the bias of the time-mean field of each method (days need not match);
* :func:`cc_signal_maps` -- the climate-change signal of the truth and of each method;
* :func:`psd_curves` -- the time-mean radially averaged power spectra;
* :func:`qq_extremes` -- quantiles of every valid (cell, day) value against the truth's, up to the 99.9th;
* :func:`rank_histogram_plot` -- the rank histogram of a stochastic emulator's ensemble;
* :func:`diurnal_curves` -- the mean diurnal cycle over the domain (sub-daily data).

matplotlib is imported lazily with the non-interactive Agg backend.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from downscale.evaluate import diagnostics as D
from downscale.skill import metrics as M

__all__ = ["bias_maps", "cc_signal_maps", "diurnal_curves", "psd_curves", "qq_extremes", "rank_histogram_plot"]

#: colours of the methods, the same in every figure
COLOURS = {
    "truth": "black",
    "emulator": "tab:red",
    "bilinear": "tab:blue",
    "bilinear_bc": "tab:green",
    "quantile_mapping": "tab:purple",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _colour(method: str) -> str:
    return COLOURS.get(method, "tab:gray")


def _maps(fields: dict[str, np.ndarray], title: str, units: str, cmap: str, symmetric: bool) -> bytes:
    plt = _plt()
    n = len(fields)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.8, 2.6), squeeze=False, constrained_layout=True)
    values = np.concatenate([v[np.isfinite(v)] for v in fields.values()] + [np.zeros(0)])
    if symmetric:
        lim = float(np.quantile(np.abs(values), 0.98)) if values.size else 1.0
        vmin, vmax = -(lim or 1.0), lim or 1.0
    else:
        vmin, vmax = np.quantile(values, [0.02, 0.98]) if values.size else (0.0, 1.0)
    im = None
    for ax, (label, field) in zip(axes[0], fields.items(), strict=True):
        im = ax.imshow(field, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        finite = field[np.isfinite(field)]
        ax.set_title(f"{label}\nmean |.| {np.mean(np.abs(finite)):.3g}" if finite.size else label, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label=units)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def bias_maps(truth: xr.DataArray, preds: dict[str, xr.DataArray], title: str) -> bytes:
    """One panel per method: ``mean_time(pred) - mean_time(truth)`` on the fine grid (truth's valid cells)."""
    units = truth.attrs.get("units", "")
    fields = {m: D.index_bias_map(p, truth, "mean").values for m, p in preds.items()}
    return _maps(fields, title, units, "RdBu_r", True)


def cc_signal_maps(
    truth_hist: xr.DataArray,
    truth_fut: xr.DataArray,
    hist: dict[str, xr.DataArray],
    fut: dict[str, xr.DataArray],
    title: str,
) -> bytes:
    """The climate-change signal (future minus reference mean) of the truth, then of each method."""
    units = truth_hist.attrs.get("units", "")
    valid = np.isfinite(truth_hist.values).any(axis=0)
    fields = {"truth": np.where(valid, D.cc_signal_map(truth_hist, truth_fut).values, np.nan)}
    for m in fut:
        if m in hist:
            fields[m] = np.where(valid, D.cc_signal_map(hist[m], fut[m]).values, np.nan)
    cmap = "BrBG" if "day" in units else "RdBu_r"
    return _maps(fields, title, units, cmap, True)


def psd_curves(truth: xr.DataArray, preds: dict[str, xr.DataArray], title: str) -> bytes:
    """Time-mean radially averaged power spectra (log-log) of the truth and each method, on the truth's cells."""
    plt = _plt()
    valid = np.isfinite(truth.values).any(axis=0)
    fig, ax = plt.subplots(figsize=(4.2, 3.2), constrained_layout=True)
    for label, da in {"truth": truth, **preds}.items():
        spec = M.radial_psd(da, mask=valid)
        ax.loglog(
            spec["wavenumber"], spec.values, label=label, color=_colour(label), lw=2.0 if label == "truth" else 1.2
        )
    ax.set_xlabel("wavenumber (cycles per domain)")
    ax.set_ylabel(f"power ({truth.attrs.get('units', '')})²")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def qq_extremes(truth: xr.DataArray, preds: dict[str, xr.DataArray], title: str) -> bytes:
    """Quantiles of every valid (cell, day) value of each method against the truth's (1:1 line: perfect),
    with the levels 0.9, 0.99 and 0.999 marked; days need not match."""
    plt = _plt()
    valid = np.isfinite(truth.values).any(axis=0)
    levels = np.concatenate([np.linspace(0.01, 0.9, 30), 1 - np.logspace(-1, -3, 30)[1:]])
    tv = truth.transpose("time", ...).values[:, valid]
    qt = np.nanquantile(tv, levels)
    fig, ax = plt.subplots(figsize=(3.8, 3.6), constrained_layout=True)
    lo, hi = float(np.nanmin(qt)), float(np.nanmax(qt))
    for label, da in preds.items():
        pv = da.transpose("time", ...).values[:, valid]
        qp = np.nanquantile(pv, levels)
        ax.plot(qt, qp, ".-", ms=3, lw=1, label=label, color=_colour(label))
        for lev, marker in ((0.9, "o"), (0.99, "s"), (0.999, "^")):
            i = int(np.argmin(np.abs(levels - lev)))
            ax.plot(qt[i], qp[i], marker, color=_colour(label), ms=5, mfc="none")
        lo, hi = min(lo, float(np.nanmin(qp))), max(hi, float(np.nanmax(qp)))
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="1:1")
    units = truth.attrs.get("units", "")
    ax.set_xlabel(f"truth quantile ({units})")
    ax.set_ylabel(f"method quantile ({units})")
    ax.set_title(title + "\n(o P90, □ P99, △ P99.9)", fontsize=8)
    ax.legend(fontsize=7)
    return _png(fig)


def rank_histogram_plot(ensemble: xr.DataArray, truth: xr.DataArray, title: str) -> bytes:
    """Frequency of the truth's rank among the members (flat: reliable; U: under-dispersive; dome: over-)."""
    plt = _plt()
    hist = D.rank_histogram(ensemble, truth)
    fig, ax = plt.subplots(figsize=(3.8, 3.0), constrained_layout=True)
    ax.bar(hist["rank"].values, hist.values, color=_colour("emulator"), width=0.8)
    ax.axhline(1.0 / hist.size, color="black", lw=0.8, ls="--", label="flat (reliable)")
    ax.set_xlabel(f"rank of the truth among {hist.size - 1} members")
    ax.set_ylabel("frequency")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def diurnal_curves(
    truth: xr.DataArray,
    preds: dict[str, xr.DataArray],
    title: str,
    *,
    regions: dict[str, Any] | None = None,
) -> bytes:
    """The mean diurnal cycle (mean by UTC hour of day, averaged over the truth's valid cells) of the truth and
    each method; one panel per region (``regions``: name -> ``(y, x)`` mask; default the whole domain).  Days
    need not match."""
    plt = _plt()
    valid = np.asarray(np.isfinite(np.asarray(truth.transpose("time", ...).values, np.float64)).all(axis=0))
    curves = {label: D.diurnal_curve(da, valid, regions=regions) for label, da in {"truth": truth, **preds}.items()}
    names = list(curves["truth"]["region"].values)
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False, constrained_layout=True, sharey=True
    )
    for ax, region in zip(axes[0], names, strict=True):
        for label, curve in curves.items():
            c = curve.sel(region=region)
            ax.plot(
                c["hour"].values,
                c.values,
                ".-",
                ms=3,
                label=label,
                color=_colour(label),
                lw=2.0 if label == "truth" else 1.2,
            )
        ax.set_xlim(-0.5, 23.5)
        ax.set_xticks(range(0, 24, 3))
        ax.set_xlabel("hour of day (UTC)")
        ax.set_title(str(region) if len(names) > 1 else title, fontsize=9)
    axes[0][0].set_ylabel(f"mean ({truth.attrs.get('units', '')})")
    axes[0][0].legend(fontsize=7)
    if len(names) > 1:
        fig.suptitle(title, fontsize=9)
    return _png(fig)
