"""Baselines for renamed predictors (issue 13): the recipe's ``baselines: {target: predictor}``, the default by
CF standard name, and notes instead of ``nan`` where a target has no predictor -- in ``downscale train``'s skill
table (the transfer curve reads the same rows) and in ``downscale evaluate``'s baselines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from downscale.errors import DownscaleError
from downscale.skill.baselines import baseline_predictors, no_baseline_note

ROOT = Path(__file__).resolve().parents[1]
NCEP = ROOT / "examples" / "data" / "iberia" / "ncep"
EOBS = ROOT / "examples" / "data" / "iberia" / "eobs"


def test_default_mapping_by_name_then_standard_name():
    assert baseline_predictors(["tas", "pr"], ["tas", "pr", "psl"]) == {"tas": "tas", "pr": "pr"}
    # tasmin and ta850 are both air_temperature: the single-level one serves tas
    assert baseline_predictors(["tas"], ["ta850", "tasmin", "psl"]) == {"tas": "tasmin"}
    assert baseline_predictors(["tas"], ["ta850", "psl"]) == {"tas": "ta850"}
    # the recipe's choice wins over the same-name predictor
    assert baseline_predictors(["tas"], ["tas", "ta850"], {"tas": "ta850"}) == {"tas": "ta850"}
    # nothing of the name or standard name: no entry (and a note says why)
    assert baseline_predictors(["pr"], ["tasmin", "psl"]) == {}
    note = no_baseline_note("pr", ["tasmin", "psl"])
    assert "pr" in note and "tasmin, psl" in note and "baselines: {pr: NAME}" in note


def _tasmin_file(tmp: Path) -> Path:
    """NCEP's daily-mean tas renamed tasmin and lowered by 4 K: a predictor of the target's standard name under
    another name (and with an offset only the bias-corrected baseline can remove)."""
    with xr.open_dataset(NCEP / "tas_day_NCEP-NCAR-R1_T62_DJF1983-2002.nc") as ds:
        ds = ds.load()
    ds = ds.rename({"tas": "tasmin"})
    ds["tasmin"] = (ds["tasmin"] - 4.0).assign_attrs(ds["tasmin"].attrs)
    ds["tasmin"].attrs.update(long_name="Daily minimum near-surface air temperature (SYNTHETIC: tas - 4 K)")
    out = tmp / "tasmin_day_NCEP-synthetic_DJF1983-2002.nc"
    ds.to_netcdf(out)
    return out


def _recipe(tmp: Path, predictors: dict[str, Path], extra: dict | None = None) -> Path:
    recipe = {
        "name": "tasmin-baselines",
        "framework": "emulator",
        "data": {
            "predictors": {k: str(v) for k, v in predictors.items()},
            "targets": {
                "tas": str(EOBS / "tas_day_E-OBS-v14_0.50deg-reg_DJF1983-2002.nc"),
                "pr": str(EOBS / "pr_day_E-OBS-v14_0.50deg-reg_DJF1983-2002.nc"),
            },
            "coarse_grid": str(NCEP / "tas_day_NCEP-NCAR-R1_T62_DJF1983-2002.nc"),
            "regrid": "bilinear",
            "forcings": ["season"],
            "periods": {
                "train": {"season": "DJF", "years": [1983, 1986]},
                "validation": {"season": "DJF", "years": [1986, 1986]},
                "test": {"season": "DJF", "years": [1999, 2000]},
            },
        },
        "model": {"type": "simple_cnn", "width": 8, "coarse_blocks": 1, "fine_blocks": 1},
        "train": {"epochs": 1, "batch_size": 32, "seed": 0},
        **(extra or {}),
    }
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _train(recipe: Path, out: Path):
    from typer.testing import CliRunner

    from downscale.cli.main import app

    result = CliRunner().invoke(app, ["train", str(recipe), "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def tasmin_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tasmin")
    predictors = {"tasmin": _tasmin_file(tmp), "pr": NCEP / "pr_day_NCEP-NCAR-R1_T62_DJF1983-2002.nc"}
    recipe = _recipe(tmp, predictors)
    out = tmp / "bundle"
    return recipe, out, _train(recipe, out)


def test_skill_table_of_a_tasmin_predictor_shows_both_baselines_of_tas(tasmin_run):
    from downscale.bundle import load_bundle

    _, out, output = tasmin_run
    bundle = load_bundle(out)
    assert bundle.meta.baselines == {"tas": "tasmin", "pr": "pr"}
    rows = bundle.meta.scores["test"]["rows"]
    value = {(r["variable"], r["method"], r["metric"]): r["value"] for r in rows}
    for method in ("bilinear", "bilinear_bc"):
        for metric in ("rmse", "p99_abs_bias", "ralsd"):
            assert math.isfinite(value[("tas", method, metric)]), (method, metric)
    # the 4 K offset of tasmin is what bias correction removes: plain bilinear is far worse
    assert value[("tas", "bilinear", "rmse")] > value[("tas", "bilinear_bc", "rmse")] + 1.5
    assert "nan" not in output
    assert "bilinear and bilinear_bc of tas interpolate the predictor tasmin" in output


def test_evaluate_baselines_follow_the_bundle_mapping(tasmin_run):
    import downscale
    from downscale.evaluate.cases import fit_baselines
    from downscale.recipe import load_recipe

    recipe, out, _ = tasmin_run
    fitted = fit_baselines(downscale.load(out), load_recipe(recipe), ["bilinear", "bilinear_bc"])
    assert fitted.sources == {"tas": "tasmin", "pr": "pr"}
    assert set(fitted.models) == {"tas", "pr"} and set(fitted.models["tas"]) == {"bilinear", "bilinear_bc"}
    assert any("interpolate the predictor tasmin" in n for n in fitted.notes)


def test_target_without_predictor_gets_a_note_not_nan(tmp_path):
    """pr has no predictor of its name or standard name: no baseline rows for it, a dash in the table and a note
    naming the fix; the explicit mapping tas -> ta850 is used instead of the default."""
    from downscale.bundle import load_bundle

    predictors = {
        "tas": NCEP / "tas_day_NCEP-NCAR-R1_T62_DJF1983-2002.nc",
        "ta850": NCEP / "ta850_day_NCEP-NCAR-R1_2.5deg_DJF1983-2002.nc",
    }
    recipe = _recipe(tmp_path, predictors, {"baselines": {"tas": "ta850"}})
    output = _train(recipe, tmp_path / "bundle")
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.meta.baselines == {"tas": "ta850"}
    rows = bundle.meta.scores["test"]["rows"]
    assert {r["method"] for r in rows if r["variable"] == "pr"} == {"emulator"}
    assert all(np.isfinite(r["value"]) for r in rows if r["variable"] == "tas")
    assert "nan" not in output
    assert "–" in output  # the empty baseline cells of pr
    notes = bundle.meta.scores["test"]["notes"]
    assert any("no predictor for pr" in n and "set baselines: {pr: NAME}" in n for n in notes)
    assert "note: baseline: no predictor for pr" in " ".join(output.split())


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"psl": "tas"}, "baselines lists psl, which is not a target"),
        ({"tas": "ta500"}, "baselines: tas: ta500 is not a predictor"),
        ({"tas": "pr"}, "baselines: tas: pr is in"),
    ],
)
def test_recipe_refuses_a_bad_mapping(tmp_path, mapping, message):
    from downscale.recipe import load_recipe

    predictors = {
        "tas": NCEP / "tas_day_NCEP-NCAR-R1_T62_DJF1983-2002.nc",
        "pr": NCEP / "pr_day_NCEP-NCAR-R1_T62_DJF1983-2002.nc",
    }
    recipe = _recipe(tmp_path, predictors, {"baselines": mapping})
    with pytest.raises(DownscaleError, match=message):
        load_recipe(recipe)
