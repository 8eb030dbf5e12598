"""Shared fixtures: paths to the bundled real data, and one trained emulator per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"
IBERIA = DATA / "iberia"
RECIPES = ROOT / "recipes"

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def iberia() -> Path:
    return IBERIA


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> Path:
    """The real perfect-model Iberia recipe, trained once through the CLI; on a shorter schedule
    and a narrower network than the recipe's (which takes ~7 min on 2 cores and is measured in
    docs/skill.md), so that the suite stays fast.  Everything else is the recipe's."""
    from typer.testing import CliRunner

    from downscale.cli.main import app

    out = tmp_path_factory.mktemp("bundle") / "perfect-model-iberia"
    shorter = ["--set", "model.width=32", "--set", "model.fine_blocks=3", "--set", "train.epochs=15"]
    args = ["train", str(RECIPES / "perfect-model-iberia.yaml"), "-o", str(out), "--no-progress", *shorter]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A quickly trained (1 epoch, narrow) perfect-model Iberia bundle, for tests of apply and the
    bundle machinery that do not judge skill.  Same data, grids and variables as the real recipe."""
    from downscale.recipe import load_recipe
    from downscale.train.run import train

    recipe = load_recipe(RECIPES / "perfect-model-iberia.yaml")
    recipe = recipe.model_copy(
        update={
            "model": recipe.model.model_validate(
                {"type": "simple_cnn", "width": 8, "coarse_blocks": 1, "fine_blocks": 1}
            ),
            "train": recipe.train.model_copy(update={"epochs": 1}),
        }
    )
    out = tmp_path_factory.mktemp("tiny") / "tiny-perfect-model-iberia"
    train(recipe, out, progress=False)
    return out
