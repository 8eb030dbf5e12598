"""Wet-day frequency adaptation, training-period climatology statics and fine-grid noise maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from downscale.data.units import MM_DAY
from downscale.emulator.postprocess import apply_wet_day_thresholds
from downscale.train.calibration import fit_wet_day_thresholds


def _drizzle(seed: int = 0, days: int = 400):
    """Truth: wet (>= 1 mm/day) on 30 % of days in cell 0 and 70 % in cell 1; a 'network' that
    smears 0.8 mm/day of drizzle over every dry day and halves nothing else."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((days, 1, 2), np.float32)
    for j, p in enumerate((0.3, 0.7)):
        wet = rng.random(days) < p
        truth[wet, 0, j] = rng.gamma(2.0, 3.0, wet.sum()) + 1.0
    pred = np.where(truth >= 1.0, truth, 0.8 + 0.5 * rng.random(truth.shape)).astype(np.float32)
    return pred * MM_DAY, truth * MM_DAY


def _wet_freq(a: np.ndarray) -> np.ndarray:
    return (a >= MM_DAY).mean(axis=0)


def test_thresholds_restore_the_training_wet_day_frequency():
    pred, truth = _drizzle()
    assert np.all(_wet_freq(pred) - _wet_freq(truth) > 0.1)  # drizzle: far too many wet days
    thr = fit_wet_day_thresholds(pred, truth)
    assert np.all(thr > 0.8 * MM_DAY) and np.all(thr <= 1.3 * MM_DAY)
    fixed = apply_wet_day_thresholds(pred.copy(), thr)
    np.testing.assert_allclose(_wet_freq(fixed), _wet_freq(truth), atol=1.0 / len(pred))
    # wet days are untouched, so is every value at or above the threshold
    keep = pred >= thr
    np.testing.assert_array_equal(fixed[keep], pred[keep])
    assert np.all(fixed[~keep] == 0)


def test_thresholds_generalise_to_other_days():
    pred, truth = _drizzle(seed=0)
    thr = fit_wet_day_thresholds(pred, truth)
    pred2, truth2 = _drizzle(seed=1)
    bias = np.abs(_wet_freq(apply_wet_day_thresholds(pred2.copy(), thr)) - _wet_freq(truth2))
    assert bias.max() < 0.05


def test_masked_cells_and_always_wet_cells():
    pred, truth = _drizzle()
    truth[:, 0, 0] = np.nan  # a sea cell: no valid day
    truth[:, 0, 1] = 5 * MM_DAY  # wet every day: nothing to cut
    thr = fit_wet_day_thresholds(pred, truth)
    assert np.isnan(thr[0, 0]) and thr[0, 1] == 0
    out = apply_wet_day_thresholds(pred.copy(), thr)
    np.testing.assert_array_equal(out, pred)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="must both be"):
        fit_wet_day_thresholds(np.zeros((3, 2, 2)), np.zeros((3, 2, 3)))


def test_wet_day_adaptation_of_a_non_precipitation_target_is_refused(root):
    from downscale.errors import RecipeError
    from downscale.recipe import load_recipe

    recipe = root / "recipes" / "perfect-model-iberia.yaml"
    with pytest.raises(RecipeError, match="precipitation only, not tas"):
        load_recipe(recipe, ["train.wet_day_adaptation=[tas]"])
    with pytest.raises(RecipeError, match="lists prr, which is not a target"):
        load_recipe(recipe, ["train.wet_day_adaptation=[prr]"])


def test_bundle_stores_and_applies_the_thresholds(tmp_path, root):
    """Through the real data: the bundle keeps the thresholds; predict applies them."""
    from downscale.bundle import load_bundle
    from downscale.emulator import load
    from downscale.recipe import load_recipe
    from downscale.train.run import train

    recipe = load_recipe(
        root / "recipes" / "perfect-model-iberia.yaml",
        [
            "model.width=8",
            "model.coarse_blocks=1",
            "model.fine_blocks=1",
            "train.epochs=1",
            "train.wet_day_adaptation=[pr]",
            "data.static_climatology=[tas, pr]",
        ],
    )
    out = tmp_path / "b"
    train(recipe, out, progress=False)
    bundle = load_bundle(out)
    assert bundle.meta.postprocess.wet_day_adaptation.variables == ["pr"]
    thr = bundle.arrays["wet_day_threshold"]
    assert thr.shape == (1, *bundle.arrays["static"].shape[1:])
    assert bundle.meta.static_names == ["orog", "tas_clim", "pr_clim"]
    # the climatology statics are per-cell means over training days: pr's is positive, tas's plausible
    static = bundle.arrays["static"]
    assert np.nanmin(static[2]) >= 0 and 250 < np.nanmean(static[1]) < 300

    emu = load(out)
    x = np.random.default_rng(0).normal(size=(4, 2, *emu.coarse_grid.shape)).astype(np.float32)
    x[:, 0] = 280.0 + x[:, 0]
    x[:, 1] = np.abs(x[:, 1]) * 3 * MM_DAY
    f = np.zeros((4, len(emu.meta.forcing_names)), np.float32)
    with_thr = emu.predict(x, f)
    emu._wet = []
    without = emu.predict(x, f)
    v = emu.targets.index("pr")
    cut = (without[:, v] < thr[0]) & np.isfinite(thr[0])
    assert np.all(with_thr[:, v][cut] == 0)
    np.testing.assert_array_equal(with_thr[:, v][~cut], without[:, v][~cut])
    np.testing.assert_array_equal(with_thr[:, 1 - v], without[:, 1 - v])


def test_climatology_must_name_targets(root):
    from downscale.errors import RecipeError
    from downscale.recipe import load_recipe

    with pytest.raises(RecipeError, match="static_climatology"):
        load_recipe(root / "recipes" / "perfect-model-iberia.yaml", ["data.static_climatology=[psl]"])


def test_noise_maps_make_members_differ_at_the_grid_scale():
    from downscale.models import create_model

    net = create_model("simple_cnn", in_channels=2, out_channels=1, width=8, noise_maps=2)
    x, f, s = torch.randn(1, 2, 5, 6), torch.zeros(1, 0), torch.zeros(1, 0, 17, 19)
    a, b = net(x, f, s, (17, 19)), net(x, f, s, (17, 19))
    assert a.shape == (1, 1, 17, 19) and not torch.equal(a, b)
    plain = create_model("simple_cnn", in_channels=2, out_channels=1, width=8)
    assert torch.equal(plain(x, f, s, (17, 19)), plain(x, f, s, (17, 19)))
    with pytest.raises(ValueError, match="noise_maps"):
        create_model("simple_cnn", in_channels=2, out_channels=1, noise_maps=-1)
