"""Multi-source training (several pairs or domains in one run) and per-module learning rates in the engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from downscale.cli.main import app
from downscale.train.sources import SourceBatchSampler

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_every_batch_comes_from_one_source_in_proportion_to_the_weights():
    sampler = SourceBatchSampler([10, 300, 45], [1.0, 1.0, 2.0], batch_size=8, seed=0)
    order = list(sampler)
    assert len(order) == len(sampler) == 45 * 8  # ceil(355 / 8) batches of 8
    offsets = np.cumsum([0, 10, 300, 45])
    sources = np.searchsorted(offsets, order, side="right") - 1
    batches = sources.reshape(-1, 8)
    assert (batches == batches[:, :1]).all()  # single-source batches
    counts = np.bincount(batches[:, 0], minlength=3)
    assert counts.tolist() == [11, 11, 23]  # 1 : 1 : 2 of 45 batches
    sampler.set_epoch(1)
    assert list(sampler) != order
    sampler.set_epoch(0)
    assert list(sampler) == order  # reproducible per epoch


def test_one_run_mixes_racmo_and_eobs_across_grid_sizes(tmp_path):
    """NCEP -> E-OBS (19x29) mixed with RACMO perfect-model (28x30), each with its own normaliser."""
    out = tmp_path / "mixed"
    source = {
        "recipe": "perfect-model-iberia.yaml",
        "weight": 1.0,
        "set": ["data.shots={days: 16, seed: 0}", "data.periods.validation=null"],
    }
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(RECIPES / "scratch-eobs-k30.yaml"),
            "-o",
            str(out),
            "--no-progress",
            "--set",
            "data.shots.days=10",
            "--set",
            "train.epochs=2",
            "--set",
            "model.width=8",
            "--set",
            f"transfer={{sources: [{json.dumps(source)}], weight: 1.0}}",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "bundle.json").read_text())
    sources = meta["provenance"]["sources"]
    assert [s["name"] for s in sources] == ["scratch-eobs-k30", "perfect-model-iberia"]
    assert sources[1]["samples"] == 13 and sources[1]["framework"] == "perfect_model"  # 16 days less 20 % validation
    # each source keeps its own statistics; the bundle keeps the main recipe's
    own = sources[1]["normaliser"]["targets"]["tas"]["mean"]
    assert abs(own - meta["normaliser"]["targets"]["tas"]["mean"]) > 0.1
    # 2 epochs of ceil((8 + 13) / 8) = 3 single-source steps
    log = json.loads((out / "training_log.json").read_text())
    assert len(log) == 2


def test_engine_scales_the_learning_rate_of_each_parameter_group():
    from downscale.train.engine import Trainer

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    groups = [{"params": list(model[0].parameters()), "lr_scale": 0.1}, {"params": list(model[1].parameters())}]
    trainer = Trainer(
        model,
        lambda o, y, m: ((o - y) ** 2).mean(),
        epochs=1,
        lr=1e-2,
        schedule="constant",
        warmup=0.0,
        device="cpu",
        progress=False,
        param_groups=groups,
    )
    trainer._set_lr(5, 10)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [1e-3, 1e-2]
