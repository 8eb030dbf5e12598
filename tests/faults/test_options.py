"""Options of apply and of recipes' model sections: one line, before any input is read."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from downscale.apply import downscale_files
from downscale.cli.main import app
from downscale.errors import DataError, RecipeError

INPUTS = [
    "examples/data/iberia/cmip5/tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc",
    "examples/data/iberia/cmip5/pr_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc",
]


@pytest.mark.parametrize(
    ("kwargs", "part"),
    [
        ({"halo": float("nan")}, "--halo"),
        ({"halo": float("inf")}, "--halo"),
        ({"chunk_days": 0}, "--chunk-days"),
        ({"seed": 1e20}, "--seed"),
        ({"members": 1e5}, "--members"),
        ({"mode": "median"}, "--mode"),
    ],
)
def test_apply_options_before_inputs(tmp_path, tiny_bundle, root, kwargs, part, monkeypatch):
    import downscale.apply.runner as runner

    monkeypatch.setattr(runner, "scan", lambda *a, **k: pytest.fail("inputs were read"))
    with pytest.raises(DataError) as exc:
        downscale_files(tiny_bundle, [root / p for p in INPUTS], tmp_path / "out", **kwargs)
    assert part in str(exc.value) and "Fix:" in str(exc.value) and "\n" not in str(exc.value)


def test_apply_memory_estimate(tmp_path, tiny_bundle, root, monkeypatch):
    import downscale.apply.runner as runner

    monkeypatch.setattr(runner, "scan", lambda *a, **k: pytest.fail("inputs were read"))
    with pytest.raises(DataError) as exc:
        downscale_files(tiny_bundle, [root / p for p in INPUTS], tmp_path / "out", members=100000)
    text = str(exc.value)
    assert "not enough memory" in text and "GiB available" in text and "--chunk-days" in text


@pytest.mark.parametrize(
    ("args", "part"),
    [
        (["--halo", "nan"], "--halo"),
        (["--halo", "inf"], "--halo"),
        (["--halo", "wide"], "--halo"),
        (["--chunk-days", "0"], "--chunk-days"),
        (["--chunk-days", "2.5"], "--chunk-days"),
        (["--members", "100000"], "not enough memory"),
        (["--members", "1e5"], "--members"),
        (["--seed", "1e20"], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--mode", "median"], "--mode"),
    ],
)
def test_apply_cli(tmp_path, tiny_bundle, root, args, part):
    """Our one line naming the option and the fix (exit 2), not Typer's usage box, and nothing written."""
    out = tmp_path / "o"
    result = CliRunner().invoke(
        app, ["apply", str(tiny_bundle), *[str(root / p) for p in INPUTS], "-o", str(out), *args]
    )
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "error:" in text and "Traceback" not in text, result.output
    assert part in text and "Fix:" in text and "Usage:" not in text, result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("model", "kwargs", "part"),
    [
        ("simple_cnn", {"width": 0}, "'width'"),
        ("simple_cnn", {"width": -4}, "'width'"),
        ("simple_cnn", {"noise_maps": -1}, "'noise_maps'"),
        ("deepesd", {"filters": [0, 3]}, "'filters'"),
        ("vit", {"mlp_ratio": 0.0}, "'mlp_ratio'"),
    ],
)
def test_model_sizes(model, kwargs, part):
    import downscale.models  # noqa: F401  (registers the models)
    from downscale.models.factory import check_model_options

    with pytest.raises(RecipeError) as exc:
        check_model_options(model, kwargs)
    assert part in str(exc.value) and "Fix:" in str(exc.value)
    check_model_options("simple_cnn", {"width": 8, "fine_blocks": 0})


@pytest.mark.parametrize("name", ["gpu", "cuda:99", "banana:0"])
def test_train_device_is_one_line(name):
    import torch

    from downscale.train.distributed import check_device, select_device

    if name == "cuda:99" and torch.cuda.device_count() > 99:  # pragma: no cover
        pytest.skip("a machine with 100 GPUs")
    for fn in (check_device, select_device):
        with pytest.raises(RecipeError) as exc:
            fn(name)
        assert "train.device" in str(exc.value) and "Fix:" in str(exc.value) and "\n" not in str(exc.value)
    assert check_device("cpu").type == "cpu" and check_device("auto") is None


def test_train_device_cuda_without_gpu_is_one_line():
    import torch

    from downscale.train.distributed import check_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RecipeError, match="GPU this machine does not have"):
        check_device("cuda")
