"""``downscale transfer``: a pretrained bundle → loading strategy → modifiers → the one training loop → a new bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["load_transfer_recipe", "transfer"]


def load_transfer_recipe(path: str | Path, parent: Any, overrides: list[str] | None = None) -> Any:
    """Read a transfer recipe; without a ``model`` section it takes the bundle's model (type and options)."""
    import json

    import yaml

    from downscale.bundle import Bundle, load_bundle
    from downscale.recipe import load_recipe

    parent = parent if isinstance(parent, Bundle) else load_bundle(parent)
    try:
        raw = yaml.safe_load(Path(path).read_text()) if Path(path).is_file() else None
    except yaml.YAMLError:
        raw = None  # load_recipe says what is wrong
    inherited: list[str] = []
    if isinstance(raw, dict) and "model" not in raw:
        m = parent.meta.model
        inherited = [f"model.type={m.type}"] + [f"model.{k}={json.dumps(v)}" for k, v in m.kwargs.items()]
    return load_recipe(path, inherited + list(overrides or []))


def transfer(
    bundle: str | Path | Any,
    recipe: Any,
    out_dir: str | Path,
    *,
    progress: bool = True,
    console: Any = None,
    overwrite: bool = False,
) -> Any:
    """Fine-tune (or, with ``data.shots.days: 0``, zero-shot) the bundle at ``bundle`` on the data of ``recipe``.

    Returns the :class:`~downscale.train.run.TrainResult` of the new bundle, whose ``lineage``
    records the parent bundle, the keys transferred and skipped, the frozen modules and the
    k-shot dates.  ``out_dir`` follows the output contract of :mod:`downscale.outdir` (``overwrite``: replace
    a folder of ours), checked before the parent bundle is read.
    """
    from downscale.bundle import Bundle, load_bundle
    from downscale.outdir import check_output
    from downscale.recipe import Recipe
    from downscale.train.run import train
    from downscale.transfer.plan import TransferPlan

    check_output(out_dir, "transfer", overwrite=overwrite, bundle=True)
    parent = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    if not isinstance(recipe, Recipe):
        recipe = load_transfer_recipe(recipe, parent)
    plan = TransferPlan(parent, recipe.transfer)
    return train(recipe, out_dir, progress=progress, console=console, plan=plan, overwrite=overwrite, verb="transfer")
