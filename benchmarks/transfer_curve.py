"""The transfer acceptance experiment: fine-tuned vs from-scratch vs zero-shot, against the number of days k.

    OMP_NUM_THREADS=1 python benchmarks/transfer_curve.py --var tas                     # RACMO -> E-OBS, tas
    OMP_NUM_THREADS=1 python benchmarks/transfer_curve.py --var pr
    OMP_NUM_THREADS=1 python benchmarks/transfer_curve.py --var tas --direction eobs2racmo

1. **Pretrain** one emulator on the source pair with all its training days (``racmo2eobs``: the RACMO22E
   perfect-model recipe, ``recipes/perfect-model-iberia.yaml``, on the one variable; ``eobs2racmo``: NCEP ->
   E-OBS, ``recipes/scratch-eobs-k30.yaml`` without its k-shot subset).
2. On the target pair, for k in ``--ks`` days (``all``: every training day, DJF 1996-1997 for validation)
   and each k-shot seed: **transfer** (``downscale.transfer.transfer``: shape-filtered loading, input channels
   adapted by name, the bundle's normaliser) and **scratch** (``downscale.train.train``) on the *same* k days
   with the same model, schedule and budget -- only the initial weights differ.  **Zero-shot** is the
   pretrained bundle on the new pair with no training (``data.shots.days: 0``).
3. Every bundle is scored by the one skill table on the test period, DJF 1998-2002: RMSE and mean |P99 bias|.

The target recipe is ``recipes/scratch-eobs-k30.yaml`` (or the perfect-model recipe) with only the variable,
the model width, ``data.shots`` and the epochs overridden, so the runs are those of the CLI.  Bundles and a
JSON of all rows go to ``--out`` (re-running skips finished runs); the table (Markdown) and the figure go to
``--doc-dir``.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
DATA = "../examples/data/iberia"
FILES = {
    "racmo": {
        "tas": f"{DATA}/cordex/tas_EUR-44_ICHEC-EC-EARTH_historical_*.nc",
        "pr": f"{DATA}/cordex/pr_EUR-44_ICHEC-EC-EARTH_historical_*.nc",
    },
    "eobs": {
        "tas": f"{DATA}/eobs/tas_day_E-OBS-v14_0.50deg-reg_DJF1983-2002.nc",
        "pr": f"{DATA}/eobs/pr_day_E-OBS-v14_0.50deg-reg_DJF1983-2002.nc",
    },
}
RECIPE = {"racmo": RECIPES / "perfect-model-iberia.yaml", "eobs": RECIPES / "scratch-eobs-k30.yaml"}
VALIDATION = "{season: DJF, years: [1996, 1997]}"


def _budget(k: int | None, batch: int, steps: int, max_epochs: int) -> tuple[int, int]:
    """Epochs and patience for k days (None: all) at about ``steps`` optimiser steps."""
    n = 1083 if k is None else k - round(0.2 * k)
    per_epoch = max(1, math.ceil(n / batch))
    epochs = int(min(max_epochs, max(6, math.ceil(steps / per_epoch))))
    return epochs, max(3, epochs // 5)


def _overrides(pair: str, var: str, args: argparse.Namespace, k: int | None, seed: int) -> list[str]:
    epochs, patience = _budget(k, args.batch_size, args.steps, args.max_epochs)
    out = [
        f"data.targets={{{var}: {FILES[pair][var]}}}",
        "model.type=simple_cnn",
        f"model.width={args.width}",
        "model.fine_blocks=3",  # the simple_cnn default the curve was measured with (the recipes now use 4)
        f"train.epochs={epochs}",
        f"train.patience={patience}",
        f"train.batch_size={args.batch_size}",
        f"train.lr={args.lr}",
        f"name={pair}-{var}-k{k if k is not None else 'all'}-s{seed}",
        # the first curves in docs/transfer.md were measured without the recipes' climatology statics and pr
        # wet-day adaptation (added later); both are off unless --climatology (then the per-cell mean of
        # the variable over the training days -- the k days on the target pair -- is a static field)
        f"data.static_climatology=[{var if args.climatology else ''}]",
        "train.wet_day_adaptation=[]",
    ]
    if pair == "racmo":
        out.append("data.periods.validation=null")
    if k is None:
        out += ["data.shots=null", f"data.periods.validation={VALIDATION}"]
    else:
        out.append(f"data.shots={{days: {k}, seed: {seed}, stratify: season, validation: 0.2}}")
    return out


def _rows(bundle: Path) -> list[dict[str, Any]]:
    meta = json.loads((bundle / "bundle.json").read_text())
    return meta.get("scores", {}).get("test", {}).get("rows", [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--var", default="tas", choices=["tas", "pr"])
    ap.add_argument("--direction", default="racmo2eobs", choices=["racmo2eobs", "eobs2racmo"])
    ap.add_argument("--ks", default="10,30,90,all")
    ap.add_argument("--seeds", type=int, default=5, help="k-shot draws for k <= 30 (one for larger k)")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument(
        "--climatology",
        action="store_true",
        help="the per-cell climatology of the training days as a static field (data.static_climatology), "
        "in pretraining and on the target pair; results go to <direction>-<var>-clim",
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=600, help="optimiser steps per run (epochs derived from k)")
    ap.add_argument("--max-epochs", type=int, default=150)
    ap.add_argument("--pretrain-epochs", type=int, default=12)
    ap.add_argument(
        "--transfer-set",
        action="append",
        default=[],
        help="extra recipe override of the transfer runs, e.g. train.lr=3e-4 (repeatable; needs --label)",
    )
    ap.add_argument("--label", default=None, help="name of a transfer variant (its runs are 'transfer-LABEL')")
    ap.add_argument(
        "--parent",
        type=Path,
        default=None,
        help="a pretrained bundle to fine-tune instead of the benchmark's own pretraining (needs --label)",
    )
    ap.add_argument(
        "--mixed",
        action="store_true",
        help="also train from scratch on the k days mixed with all the source pair's days "
        "(transfer.sources, one run, single-source batches; runs 'mixed-...')",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "transfer-curve")
    ap.add_argument("--doc-dir", type=Path, default=ROOT / "docs")
    ap.add_argument(
        "--combine",
        action="store_true",
        help="only draw docs/img/transfer-curve.png from every finished experiment under --out",
    )
    args = ap.parse_args()
    if args.combine:
        combine(args)
        return

    from downscale.recipe import load_recipe
    from downscale.train.run import train
    from downscale.transfer.run import transfer

    source, target = args.direction.split("2")
    tag = f"{args.direction}-{args.var}" + ("-clim" if args.climatology else "")
    out = args.out / tag
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}

    def done(name: str, rows: list[dict[str, Any]], seconds: float, extra: dict[str, Any]) -> None:
        results[name] = {"rows": rows, "seconds": seconds, **extra}
        results_path.write_text(json.dumps(results, indent=1))

    # 1. pretrain (or take --parent: another pretrained bundle, whose runs are labelled)
    parent = args.parent or out / "pretrained"
    if args.parent and not args.label:
        raise SystemExit("--parent needs --label")
    if not (parent / "MANIFEST.json").exists():
        ov = _overrides(source, args.var, args, None, 0)
        ov = [o for o in ov if not o.startswith(("train.epochs", "train.patience", "name="))]
        ov += [f"train.epochs={args.pretrain_epochs}", "train.patience=4", f"name=pretrained-{source}-{args.var}"]
        t0 = time.perf_counter()
        train(load_recipe(RECIPE[source], ov), parent, progress=False)
        done("pretrained", _rows(parent), time.perf_counter() - t0, {"method": "pretrained", "k": None})
        print(f"pretrained on {source} in {time.perf_counter() - t0:.0f} s", flush=True)

    transfer_set = [
        "transfer.loading=shape_filtered",
        "transfer.adapt_input=true",
        "transfer.reset_head=auto",
        "transfer.normaliser=parent",
    ]
    variant = f"transfer-{args.label}" if args.label else "transfer"
    if args.transfer_set and not args.label:
        raise SystemExit("--transfer-set needs --label")
    # 2. zero-shot
    zero_name = f"zero-shot-{args.label}" if args.parent else "zero-shot"
    if zero_name not in results:
        ov = _overrides(target, args.var, args, 0, 0) + transfer_set
        t0 = time.perf_counter()
        transfer(parent, load_recipe(RECIPE[target], ov), out / zero_name, progress=False)
        done(zero_name, _rows(out / zero_name), time.perf_counter() - t0, {"method": zero_name, "k": 0})
    # 3. the curve
    for ktext in args.ks.split(","):
        k = None if ktext == "all" else int(ktext)
        seeds = range(args.seeds) if k is not None and k <= 30 else range(1)
        for seed in seeds:
            for method in (variant, "scratch", *(["mixed"] if args.mixed else [])):
                name = f"{method}-k{ktext}-s{seed}"
                if name in results:
                    continue
                ov = _overrides(target, args.var, args, k, seed)
                t0 = time.perf_counter()
                if method == "mixed":  # multi-source: the k days + every day of the source pair, weights 1:1
                    mix = {
                        "recipe": RECIPE[source].name,
                        "weight": 1.0,
                        "set": ["data.shots=null", "data.periods.validation=null"],
                    }
                    per_epoch = math.ceil(((k or 1083) * 0.8 + 1354) / args.batch_size)
                    epochs = max(2, math.ceil(args.steps / per_epoch))
                    ov = [
                        *ov,
                        f"transfer={{sources: [{json.dumps(mix)}], weight: 1.0}}",
                        f"train.epochs={epochs}",
                        f"train.patience={max(2, epochs // 2)}",
                    ]
                    train(load_recipe(RECIPE[target], ov), out / name, progress=False)
                elif method != "scratch":
                    recipe = load_recipe(RECIPE[target], ov + transfer_set + args.transfer_set)
                    transfer(parent, recipe, out / name, progress=False)
                else:
                    train(load_recipe(RECIPE[target], ov), out / name, progress=False)
                done(name, _rows(out / name), time.perf_counter() - t0, {"method": method, "k": ktext, "seed": seed})
                r = {x["metric"]: x["value"] for x in results[name]["rows"] if x["method"] == "emulator"}
                print(
                    f"{name}: rmse {r.get('rmse', float('nan')):.3f}  p99 {r.get('p99_abs_bias', float('nan')):.3f}"
                    f"  ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    report(results, tag, args)


def _value(entry: dict[str, Any], metric: str, method: str = "emulator") -> float:
    return next((r["value"] for r in entry["rows"] if r["metric"] == metric and r["method"] == method), float("nan"))


def report(results: dict[str, Any], tag: str, args: argparse.Namespace) -> None:
    import numpy as np

    ks = args.ks.split(",")
    methods = ["transfer"] + sorted(
        {e["method"] for e in results.values() if e.get("method", "").startswith("transfer-")}
    )
    methods += ["mixed"] if any(e.get("method") == "mixed" for e in results.values()) else []
    methods.append("scratch")
    table: dict[tuple[str, str], dict[str, tuple[float, float, int]]] = {}
    for method in methods:
        for k in ks:
            entries = [e for n, e in results.items() if e.get("method") == method and str(e.get("k")) == k]
            for metric in ("rmse", "p99_abs_bias"):
                vals = np.array([_value(e, metric) for e in entries])
                if len(vals):
                    table.setdefault((method, metric), {})[k] = (
                        float(vals.mean()),
                        float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                        len(vals),
                    )
    zero = results.get("zero-shot")
    any_entry = next(iter(results.values()))
    units = {r["metric"]: r["units"] for r in any_entry["rows"]}
    head = [f"{m} RMSE" for m in methods] + [f"{m} P99 bias" for m in methods]
    lines = ["| k (days) | " + " | ".join(head) + " | draws |", "|---" * (len(head) + 2) + "|"]
    if zero:
        blank = ["–"] * (len(methods) - 1)
        cells = [f"{_value(zero, 'rmse'):.3f}", *blank, f"{_value(zero, 'p99_abs_bias'):.3f}", *blank]
        lines.append("| 0 (zero-shot) | " + " | ".join(cells) + " | 1 |")
    for k in ks:
        cells = []
        for metric in ("rmse", "p99_abs_bias"):
            for method in methods:
                m, s, n = table.get((method, metric), {}).get(k, (float("nan"), 0.0, 0))
                cells.append(f"{m:.3f}" + (f" ± {s:.3f}" if n > 1 else ""))
        n = table.get(("scratch", "rmse"), {}).get(k, (0, 0, 0))[2]
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {n} |")
    # paired comparison: each transfer run against the scratch run on the same k days
    wins = []
    for method in methods[:-1]:
        cells = []
        for k in ks:
            pairs = [
                (_value(e, "rmse"), _value(results[f"scratch-k{k}-s{e['seed']}"], "rmse"))
                for e in results.values()
                if e.get("method") == method and str(e.get("k")) == k and f"scratch-k{k}-s{e.get('seed')}" in results
            ]
            if len(pairs) > 1:
                d = np.array([b - a for a, b in pairs])  # scratch minus transfer: positive when transfer is better
                t = d.mean() / d.std(ddof=1) * np.sqrt(len(d)) if d.std(ddof=1) > 0 else float("nan")
                cells.append(
                    f"{sum(a < b for a, b in pairs)}/{len(pairs)}, {d.mean():+.3f} ± {d.std(ddof=1):.3f} (t {t:.1f})"
                )
            else:
                cells.append(f"{sum(a < b for a, b in pairs)}/{len(pairs)}" if pairs else "–")
        wins.append(f"| {method} | " + " | ".join(cells) + " |")
    if wins:
        lines += [
            "",
            (
                "Draws on which the transfer RMSE is below scratch's (same k days), and the paired difference "
                "scratch minus transfer (mean ± standard deviation over the draws, t statistic):"
            ),
            "",
            "| method | " + " | ".join(f"k={k}" for k in ks) + " |",
            "|---" * (len(ks) + 1) + "|",
            *wins,
        ]
    base = next((e for e in results.values() if e.get("method") == "scratch"), None)
    if base:
        lines.append("")
        lines.append(
            f"Units: RMSE and P99 bias in {units.get('rmse')}. Bilinear interpolation of the predictor: RMSE "
            f"{_value(base, 'rmse', 'bilinear'):.3f}, P99 bias {_value(base, 'p99_abs_bias', 'bilinear'):.3f}. "
            "Mean ± standard deviation over the k-shot draws."
        )
    text = "\n".join(lines)
    args.doc_dir.joinpath("img").mkdir(parents=True, exist_ok=True)
    (args.out / tag / "table.md").write_text(text + "\n")
    print(text)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [1083 if k == "all" else int(k) for k in ks]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, metric in zip(axes, ("rmse", "p99_abs_bias"), strict=True):
        others = [m for m in methods if m not in ("transfer", "scratch")]
        palette = ["tab:purple", "tab:red", "tab:brown", "tab:olive", "tab:cyan", "tab:pink", "tab:gray", "black"]
        colours = {"transfer": "tab:blue", **dict(zip(others, palette * 2, strict=False)), "scratch": "tab:orange"}
        for method, colour in colours.items():
            vals = table.get((method, metric), {})
            m = [vals.get(k, (np.nan, 0, 0))[0] for k in ks]
            s = [vals.get(k, (np.nan, 0, 0))[1] for k in ks]
            main = method in ("transfer", "scratch")  # the variants without error bars, to keep the figure legible
            ax.errorbar(
                xs,
                m,
                yerr=s if main else None,
                marker="o" if main else ".",
                capsize=3,
                color=colour,
                label=method,
                lw=1.5 if main else 0.8,
                alpha=1.0 if main else 0.8,
            )
        if zero:
            ax.axhline(_value(zero, metric), color="tab:green", ls="--", label="zero-shot")
        if base:
            ax.axhline(_value(base, metric, "bilinear"), color="grey", ls=":", label="bilinear")
        ax.set_xscale("log")
        ax.set_xticks(xs, [k if k != "all" else f"all\n({xs[-1]})" for k in ks])
        ax.set_xlabel("training days k")
        ax.set_ylabel(f"{'RMSE' if metric == 'rmse' else 'mean |P99 bias|'} ({units.get(metric)})")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"{tag}: test DJF 1998-2002", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.doc_dir / "img" / f"transfer-curve-{tag}.png", dpi=110)


def combine(args: argparse.Namespace) -> None:
    """One figure, a row per experiment (direction and variable): RMSE and P99 bias against k."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = ["racmo2eobs-tas", "racmo2eobs-pr", "eobs2racmo-tas", "eobs2racmo-pr"]
    tags = [t for t in order if (args.out / t / "results.json").exists()]  # the -clim runs have their own figure
    ks = args.ks.split(",")
    xs = [1083 if k == "all" else int(k) for k in ks]
    fig, axes = plt.subplots(len(tags), 2, figsize=(9, 3.2 * len(tags)), squeeze=False)
    for row, tag in zip(axes, tags, strict=True):
        results = json.loads((args.out / tag / "results.json").read_text())
        zero = results.get("zero-shot")
        base = next((e for e in results.values() if e.get("method") == "scratch"), None)
        units = {r["metric"]: r["units"] for r in next(iter(results.values()))["rows"]}
        for ax, metric in zip(row, ("rmse", "p99_abs_bias"), strict=True):
            for method, colour in (("transfer", "tab:blue"), ("scratch", "tab:orange")):
                stats = []
                for k in ks:
                    vals = [
                        _value(e, metric)
                        for e in results.values()
                        if e.get("method") == method and str(e.get("k")) == k
                    ]
                    stats.append(
                        (np.mean(vals), np.std(vals, ddof=1) if len(vals) > 1 else 0.0) if vals else (np.nan, 0.0)
                    )
                ax.errorbar(
                    xs,
                    [m for m, _ in stats],
                    yerr=[s for _, s in stats],
                    marker="o",
                    capsize=3,
                    color=colour,
                    label=method,
                )
            if zero:
                ax.axhline(_value(zero, metric), color="tab:green", ls="--", label="zero-shot")
            if base:
                ax.axhline(_value(base, metric, "bilinear"), color="grey", ls=":", label="bilinear")
            ax.set_xscale("log")
            ax.set_xticks(xs, [k if k != "all" else "all" for k in ks])
            ax.set_title(f"{tag}: {'RMSE' if metric == 'rmse' else 'mean |P99 bias|'}", fontsize=9)
            ax.set_ylabel(units.get(metric, ""))
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("training days k (test DJF 1998-2002)")
    fig.tight_layout()
    fig.savefig(args.doc_dir / "img" / "transfer-curve.png", dpi=100)


if __name__ == "__main__":
    main()
