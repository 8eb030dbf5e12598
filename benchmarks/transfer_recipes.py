"""The two k-shot recipes over several k-shot draws: ``transfer-eobs-k30`` against ``scratch-eobs-k30``.

    OMP_NUM_THREADS=2 python benchmarks/transfer_recipes.py --parent runs/perfect-model-iberia --seeds 10

The committed recipes draw their 30 days with ``seed: 0``; one draw decides little when the spread between
draws is larger than the difference between the methods.  This runs both recipes exactly as the CLI does
(``downscale.transfer.transfer`` on ``load_transfer_recipe``, ``downscale.train.train`` on ``load_recipe`` with ``data.shots.seed``
overridden, nothing else unless ``--set``), for seeds 0..N-1, scores every bundle with the one skill table on
the test period (DJF 1998-2002) and writes a Markdown table of the paired comparison (transfer against
scratch trained on the same days) to ``--out``/table.md.  Re-running skips finished runs.  Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


def _scores(bundle: Path) -> dict[str, dict[str, float]]:
    """{variable: {metric: value}} of the emulator and of the baselines on the test period."""
    meta = json.loads((bundle / "bundle.json").read_text())
    out: dict[str, dict[str, float]] = {}
    for r in meta.get("scores", {}).get("test", {}).get("rows", []):
        out.setdefault(f"{r['method']}:{r['variable']}", {})[r["metric"]] = r["value"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--parent",
        type=Path,
        default=ROOT / "runs" / "perfect-model-iberia",
        help="the pretrained bundle (recipes/perfect-model-iberia.yaml)",
    )
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], help="KEY=VALUE for both recipes (as the CLI's --set)"
    )
    ap.add_argument("--transfer-set", action="append", default=[], help="KEY=VALUE for the transfer recipe only")
    ap.add_argument("--label", default=None, help="name of a transfer variant (its runs are 'transfer-LABEL-sN')")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "transfer-recipes")
    args = ap.parse_args()

    import numpy as np

    from downscale.recipe import load_recipe
    from downscale.train.run import train
    from downscale.transfer.run import load_transfer_recipe, transfer

    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    variant = f"transfer-{args.label}" if args.label else "transfer"
    if args.transfer_set and not args.label:
        raise SystemExit("--transfer-set needs --label")
    for seed in range(args.seeds):
        for method in (variant, "scratch"):
            name = f"{method}-s{seed}"
            if name in results:
                continue
            ov = [*args.overrides, f"data.shots.seed={seed}"]
            t0 = time.perf_counter()
            if method != "scratch":
                recipe = load_transfer_recipe(RECIPES / "transfer-eobs-k30.yaml", args.parent, ov + args.transfer_set)
                transfer(args.parent, recipe, args.out / name, progress=False)
            else:
                train(load_recipe(RECIPES / "scratch-eobs-k30.yaml", ov), args.out / name, progress=False)
            results[name] = {
                "scores": _scores(args.out / name),
                "seconds": time.perf_counter() - t0,
                "method": method,
                "seed": seed,
                "set": args.transfer_set if method != "scratch" else [],
            }
            results_path.write_text(json.dumps(results, indent=1))
            sc = results[name]["scores"]
            print(
                f"{name}: tas {sc['emulator:tas']['rmse']:.3f} K, pr {sc['emulator:pr']['rmse']:.3f} mm/day "
                f"({results[name]['seconds']:.0f} s)",
                flush=True,
            )

    methods = sorted(
        {n.rsplit("-s", 1)[0] for n in results if not n.startswith("scratch")}, key=lambda m: (m != "transfer", m)
    )
    lines = [
        (
            "Test DJF 1998-2002; mean ± standard deviation over the k-shot draws (data.shots.seed 0, 1, ...); the "
            "paired difference is scratch minus transfer on the same days (positive: transfer better), with its t "
            "statistic."
        ),
        "",
        (
            "| transfer variant | variable | metric | draws | transfer | scratch | transfer wins | paired difference "
            "(t) | bilinear-BC |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        seeds = sorted(
            int(n.rsplit("-s", 1)[1])
            for n in results
            if n.rsplit("-s", 1)[0] == method and f"scratch-s{n.rsplit('-s', 1)[1]}" in results
        )
        if not seeds:
            continue
        settings = next(e.get("set", []) for n, e in results.items() if n.rsplit("-s", 1)[0] == method)
        label = method + (f" ({', '.join(settings)})" if settings else "")
        for var in ("tas", "pr"):
            for metric in ("rmse", "p99_abs_bias"):
                t = np.array([results[f"{method}-s{s}"]["scores"][f"emulator:{var}"][metric] for s in seeds])
                s_ = np.array([results[f"scratch-s{s}"]["scores"][f"emulator:{var}"][metric] for s in seeds])
                bc = np.array(
                    [
                        results[f"scratch-s{s}"]["scores"].get(f"bilinear_bc:{var}", {}).get(metric, np.nan)
                        for s in seeds
                    ]
                )
                d = s_ - t
                sd_d = d.std(ddof=1) if len(d) > 1 else 0.0
                tstat = d.mean() / sd_d * np.sqrt(len(d)) if sd_d > 0 else float("nan")

                def sd(a):
                    return f" ± {a.std(ddof=1):.3f}" if len(a) > 1 else ""

                lines.append(
                    f"| {label} | {var} | {metric} | {len(seeds)} | {t.mean():.3f}{sd(t)} | {s_.mean():.3f}{sd(s_)} | "
                    f"{int((d > 0).sum())}/{len(d)} | {d.mean():+.3f}{sd(d)} ({tstat:.1f}) | {np.nanmean(bc):.3f} |"
                )
    minutes = sum(e["seconds"] for e in results.values()) / 60
    lines += ["", f"Wall time of all runs: {minutes:.0f} min."]
    text = "\n".join(lines)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
