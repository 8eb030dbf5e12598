from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from downscale.cli.main import app
from downscale.errors import RecipeError, UnknownNameError
from downscale.models import create_model
from downscale.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_real_recipe_loads_and_resolves_paths():
    recipe = load_recipe(ROOT / "recipes" / "perfect-model-iberia.yaml")
    assert recipe.framework == "perfect_model"
    assert recipe.data.periods.train.years == (1983, 1997)
    target = Path(recipe.resolve(recipe.data.targets["tas"][0])).resolve()
    assert target.parent == (ROOT / "examples" / "data" / "iberia" / "cordex").resolve()
    assert recipe.model.kwargs() == {"width": 64, "fine_blocks": 4}
    assert recipe.data.static_climatology == ["tas", "pr"] and recipe.train.wet_day_adaptation == ["pr"]


def test_unknown_key_names_file_key_and_closest(tmp_path):
    text = (ROOT / "recipes" / "perfect-model-iberia.yaml").read_text().replace("coarse_grid:", "coarse_grd:")
    path = _write(tmp_path, text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    msg = str(err.value)
    assert "recipe.yaml" in msg and "data.coarse_grd" in msg and "did you mean 'coarse_grid'" in msg
    assert "\n" not in msg


def test_unknown_top_level_and_bad_value(tmp_path):
    base = (ROOT / "recipes" / "perfect-model-iberia.yaml").read_text()
    with pytest.raises(RecipeError, match="unknown recipe key 'trian'.*did you mean 'train'"):
        load_recipe(_write(tmp_path, base + "\ntrian: {}\n"))
    with pytest.raises(RecipeError, match="train.epochs"):
        load_recipe(_write(tmp_path, base.replace("epochs: 50", "epochs: many")))
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(_write(tmp_path, "name: [unclosed"))


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        create_model("simple_cn", in_channels=2, out_channels=2)
    assert "simple_cnn" in str(err.value) and "did you mean 'simple_cnn'" in str(err.value)


def test_unknown_model_option_is_a_recipe_error():
    with pytest.raises(RecipeError, match="no option 'widht'.*did you mean 'width'"):
        create_model("simple_cnn", in_channels=2, out_channels=2, widht=3)


def test_cli_bad_recipe_is_one_line_not_a_traceback(tmp_path):
    base = (ROOT / "recipes" / "perfect-model-iberia.yaml").read_text()
    path = _write(tmp_path, base.replace("type: simple_cnn", "type: unet_typo"))
    result = CliRunner().invoke(app, ["train", str(path), "-o", str(tmp_path / "b"), "--no-progress"])
    assert result.exit_code == 2
    assert "unknown model 'unet_typo'" in result.output
    assert "Traceback" not in result.output


def test_overrides_set_dotted_keys(tmp_path):
    recipe = load_recipe(
        ROOT / "recipes" / "perfect-model-iberia.yaml", ["train.epochs=3", "model.width=16", "loss.variables={pr: mae}"]
    )
    assert recipe.train.epochs == 3 and recipe.model.kwargs()["width"] == 16 and recipe.loss.variables == {"pr": "mae"}
    with pytest.raises(RecipeError, match="train.epoch.*did you mean 'epochs'"):
        load_recipe(ROOT / "recipes" / "perfect-model-iberia.yaml", ["train.epoch=3"])
    with pytest.raises(RecipeError, match="not KEY=VALUE"):
        load_recipe(ROOT / "recipes" / "perfect-model-iberia.yaml", ["train.epochs"])
