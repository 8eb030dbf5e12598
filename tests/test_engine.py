"""The training engine on tiny synthetic problems: exact resume after SIGKILL,
gradient accumulation, early stopping, learning-rate schedules, AMP settings,
checkpoints, the training log and MLflow tracking."""

from __future__ import annotations

import json
import math
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from downscale.errors import DownscaleError
from downscale.tracking import Tracker, TrackingError, write_history
from downscale.train.checkpoint import CheckpointError, CheckpointStore
from downscale.train.engine import Trainer, lr_factor, seed_everything
from downscale.train.loader import StepLoader

ROOT = Path(__file__).resolve().parents[1]

# The same code runs here (the uninterrupted reference) and in the subprocesses.
SCRIPT = r'''
import sys, time
import numpy as np
import torch

from downscale.data.dataset import BlockShuffleSampler, SampleArrays, SampleDataset
from downscale.models import create_model
from downscale.train.checkpoint import CheckpointStore
from downscale.train.engine import Trainer, seed_everything
from downscale.train.loader import StepLoader
from downscale.models.losses import create_criterion


def dataset(n, seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, 2, 4, 5)).astype(np.float32)
    up = np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)
    y = (up + 0.3 * r.standard_normal(up.shape)).astype(np.float32)
    m = (r.random(y.shape) > 0.25).astype(np.uint8)
    y[m == 0] = 0
    f = r.standard_normal((n, 1)).astype(np.float32)
    s = r.standard_normal((1, 8, 10)).astype(np.float32)
    return SampleDataset(SampleArrays(x=x, f=f, s=s, y=y, m=m, indices=np.arange(n)))


class Noisy(torch.nn.Module):
    """simple_cnn + dropout (so the torch RNG state matters), optionally slowed down."""

    def __init__(self, delay):
        super().__init__()
        self.inner = create_model("simple_cnn", in_channels=2, out_channels=2, n_forcings=1, n_static=1, width=8)
        self.drop, self.delay = torch.nn.Dropout(0.2), delay

    def forward(self, x, f, s, shape):
        if self.delay:
            time.sleep(self.delay)
        return self.drop(self.inner(x, f, s, shape))


def run(ckpt=None, delay=0.0, epochs=3):
    torch.set_num_threads(1)
    seed_everything(0)
    model = Noisy(delay)
    store = CheckpointStore(ckpt, fingerprint="tiny", every=2) if ckpt else None
    trainer = Trainer(model, create_criterion("mse", ["tas", "pr"]), epochs=epochs, lr=5e-3, schedule="onecycle",
                      warmup=0.2, patience=5, grad_clip=1.0, amp="off", device="cpu", checkpoint=store, progress=False)
    train_set, val_set = dataset(64, 0), dataset(16, 1)
    fit = trainer.fit(StepLoader(train_set, 8, sampler=BlockShuffleSampler(64, block=16, seed=7), accumulate=2),
                      StepLoader(val_set, 8))
    return {"weights": model.state_dict(), "steps": fit.step_losses, "val": [h.val_loss for h in fit.history],
            "resumed_from": fit.resumed_from, "best_epoch": fit.best_epoch}


if __name__ == "__main__":
    torch.save(run(sys.argv[1], float(sys.argv[3])), sys.argv[2])
'''


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


@pytest.fixture
def script(tmp_path) -> Path:
    path = tmp_path / "tiny_run.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture
def threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.timeout(120)
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path, script, threads):
    t0 = time.perf_counter()
    ckpt = tmp_path / "run.ckpt"
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), str(tmp_path / "killed.pt"), "0.1"], env=_env())
    reference = runpy.run_path(str(script))["run"]()  # uninterrupted, no checkpoints, meanwhile

    try:
        deadline = time.monotonic() + 90
        while not (ckpt / "checkpoint.pt").exists():
            assert proc.poll() is None, "the run ended before writing a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(ckpt / "checkpoint.pt", weights_only=True)
    steps_per_epoch, total = 8, 24
    assert 0 < saved["step_in_epoch"] < steps_per_epoch and saved["global_step"] < total  # killed mid-epoch

    args = [sys.executable, str(script), str(ckpt), str(tmp_path / "resumed.pt"), "0"]
    done = subprocess.run(args, check=False, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert resumed["resumed_from"] == saved["global_step"] > 0
    assert len(resumed["steps"]) == len(reference["steps"]) == total
    np.testing.assert_allclose(resumed["steps"], reference["steps"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(resumed["val"], reference["val"], rtol=0, atol=1e-6)
    assert resumed["best_epoch"] == reference["best_epoch"]
    for key, value in reference["weights"].items():
        torch.testing.assert_close(resumed["weights"][key], value, rtol=0, atol=1e-6, msg=key)
    print(f"kill + resume: {time.perf_counter() - t0:.1f} s")


def test_step_loader_shards_each_global_batch_in_order():
    data = list(range(11))

    class Order:  # a fixed order standing in for the seeded sampler
        def __iter__(self):
            return iter([10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0])

    plans = [StepLoader(data, 5, sampler=Order(), accumulate=2, rank=r, world_size=2).plan() for r in (0, 1)]
    assert [size for size, _ in plans[0]] == [5, 5, 1]
    assert plans[0][0][1] == [([10, 9], False), ([8], False)] and plans[1][0][1] == [([7], False), ([6], False)]
    # the last global batch has 1 sample: rank 1 gets a dummy micro-batch (weighted by zero)
    assert plans[0][2][1] == [([0], False)] and plans[1][2][1] == [([0], True)]
    # all ranks together consume each global batch exactly once, in the sampler's order
    for step in range(3):
        got = [i for r in (0, 1) for idx, dummy in plans[r][step][1] if not dummy for i in idx]
        assert got == list(Order())[step * 5 : step * 5 + 5]


def _problem(script: Path):
    return runpy.run_path(str(script))


def _trainer(model, loss, **kw):
    kw = {"epochs": 2, "lr": 5e-3, "amp": "off", "device": "cpu", "progress": False, **kw}
    return Trainer(model, loss, **kw)


def test_accumulation_equals_the_full_batch(script, threads):
    from downscale.data.dataset import BlockShuffleSampler
    from downscale.models import create_model
    from downscale.models.losses import create_criterion

    mod = _problem(script)
    torch.set_num_threads(1)
    results = []
    for accumulate in (1, 2):  # one batch of 32, or two micro-batches of 16 per optimiser step
        seed_everything(0)
        model = create_model("simple_cnn", in_channels=2, out_channels=2, n_forcings=1, n_static=1, width=8)
        fit = _trainer(model, create_criterion("mse", ["tas", "pr"]), grad_clip=0.5).fit(
            StepLoader(
                mod["dataset"](64, 0), 32, sampler=BlockShuffleSampler(64, block=64, seed=1), accumulate=accumulate
            )
        )
        results.append((fit.step_losses, model.state_dict()))
    (steps1, w1), (steps2, w2) = results
    assert len(steps1) == len(steps2) == 4
    np.testing.assert_allclose(steps2, steps1, rtol=1e-5)
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-5, atol=1e-6)


class _Constant(torch.nn.Module):
    """Predicts one learnable value everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, f, s, shape):
        return self.w.expand(x.shape[0], 1, *shape)


def _constant_data(n: int, value: float):
    from downscale.data.dataset import SampleArrays, SampleDataset

    y = np.full((n, 1, 3, 3), value, np.float32)
    return SampleDataset(
        SampleArrays(
            x=np.zeros((n, 1, 2, 2), np.float32),
            f=np.zeros((n, 0), np.float32),
            s=np.zeros((0, 3, 3), np.float32),
            y=y,
            m=np.ones_like(y, np.uint8),
            indices=np.arange(n),
        )
    )


def test_early_stopping_stops_and_restores_the_best_weights():
    from downscale.models.losses import create_criterion

    loss = create_criterion("mse", ["tas"])
    # training pulls w towards +1, validation wants -1: the first epoch is the best
    seed_everything(0)
    model = _Constant()
    fit = _trainer(model, loss, epochs=20, lr=0.05, schedule="constant", warmup=0, patience=2).fit(
        StepLoader(_constant_data(8, 1.0), 4), StepLoader(_constant_data(4, -1.0), 4)
    )
    assert fit.stopped_early and fit.best_epoch == 1 and len(fit.history) == 3
    vals = [h.val_loss for h in fit.history]
    assert vals[0] < vals[1] < vals[2]
    one = _Constant()
    _trainer(one, loss, epochs=1, lr=0.05, schedule="constant", warmup=0).fit(StepLoader(_constant_data(8, 1.0), 4))
    assert float(model.w.detach()) == pytest.approx(float(one.w.detach()), abs=1e-7) and float(model.w.detach()) > 0
    assert float(fit.best_state["w"]) == float(model.w.detach())
    assert fit.history[0].val_loss == pytest.approx((float(model.w.detach()) + 1) ** 2, rel=1e-5)


def test_learning_rate_schedules():
    # warm-up: linear to the base rate over the first 10 of 100 steps
    assert lr_factor("cosine", 0, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor("cosine", 9, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor("cosine", 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor("cosine", 55, 100, 0.1) == pytest.approx(0.5)
    assert lr_factor("cosine", 99, 100, 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_factor("constant", 3, 100, 0.1) == pytest.approx(0.4)
    assert lr_factor("constant", 70, 100, 0.1) == 1.0
    # one-cycle: from 1/25 to 1 over the warm-up, then a cosine down to 1/(25e4) at the last step
    assert lr_factor("onecycle", 0, 100, 0.3) == pytest.approx(0.04)
    assert lr_factor("onecycle", 15, 100, 0.3) == pytest.approx(0.04 + 0.96 * 0.5)
    assert lr_factor("onecycle", 30, 100, 0.3) == pytest.approx(1.0)
    assert lr_factor("onecycle", 99, 100, 0.3) == pytest.approx(4e-6)
    mid = 30 + 69 / 2
    assert lr_factor("onecycle", mid, 100, 0.3) == pytest.approx(4e-6 + (1 - 4e-6) * 0.5)
    # the trainer applies them per optimiser step: 2 epochs x 2 steps
    fit = _trainer(
        _Constant(), lambda o, y, m: ((o[:, 0] - y) ** 2).mean(), lr=0.1, schedule="onecycle", warmup=0.5
    ).fit(StepLoader(_constant_data(8, 1.0), 4))
    assert [h.lr for h in fit.history] == pytest.approx([0.1 * lr_factor("onecycle", s, 4, 0.5) for s in (1, 3)])


def test_amp_settings():
    from downscale.models.losses import create_criterion

    loss = create_criterion("mse", ["tas"])
    with pytest.raises(DownscaleError, match="fp16 needs a CUDA GPU.*amp: bf16"):
        _trainer(_Constant(), loss, amp="fp16")
    assert _trainer(_Constant(), loss, amp="auto").amp_dtype is None  # off on the CPU
    trainer = _trainer(_Constant(), loss, amp="bf16", epochs=1)
    assert trainer.amp_dtype == torch.bfloat16
    fit = trainer.fit(StepLoader(_constant_data(8, 1.0), 4))
    assert all(math.isfinite(s) for s in fit.step_losses)


def test_checkpoint_of_another_recipe_is_refused(tmp_path):
    CheckpointStore(tmp_path / "c", fingerprint="recipe-a").save({"x": torch.ones(2)})
    assert CheckpointStore(tmp_path / "c", fingerprint="recipe-a").load()["x"].sum() == 2
    with pytest.raises(CheckpointError, match="another recipe.*delete"):
        CheckpointStore(tmp_path / "c", fingerprint="recipe-b").load()
    assert not list((tmp_path / "c").glob(".*.tmp-*"))  # no temporary left behind


def test_training_log_csv_and_json(tmp_path):
    rows = [
        {"epoch": 1, "train_loss": 1.0, "val_loss": 0.5, "val_per_variable": {"tas": 0.4, "pr": 0.6}},
        {"epoch": 2, "train_loss": 0.8, "val_loss": float("nan"), "val_per_variable": {"tas": 0.3, "pr": 0.5}},
    ]
    write_history(tmp_path, rows)
    header = (tmp_path / "training_log.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,val_loss,val_per_variable.tas,val_per_variable.pr"
    data = json.loads((tmp_path / "training_log.json").read_text())
    assert data[1]["val_per_variable.pr"] == 0.5 and data[1]["val_loss"] is None


def test_mlflow_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    with pytest.raises(TrackingError, match=r"pip install 'downscale\[mlflow\]'"):
        Tracker("file:./mlruns")
    assert not Tracker(None).active


def test_mlflow_file_store_records_the_metrics(tmp_path, monkeypatch):
    try:
        import mlflow
    except ImportError:
        pytest.skip("mlflow is not installed (pip install 'downscale[mlflow]')")
    from downscale.models.losses import create_criterion

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = f"file:{tmp_path / 'mlruns'}"
    tracker = Tracker(uri, experiment="tiny", run_name="constant", params={"train": {"lr": 0.05, "epochs": 2}})
    fit = _trainer(_Constant(), create_criterion("mse", ["tas"]), lr=0.05, tracker=tracker).fit(
        StepLoader(_constant_data(8, 1.0), 4), StepLoader(_constant_data(4, -1.0), 4)
    )
    run_id = tracker.run_id
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}")
    tracker.finish(bundle)

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.05"
    history = client.get_metric_history(run_id, "val_loss")
    assert [m.step for m in history] == [h.epoch for h in fit.history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([h.val_loss for h in fit.history])
    assert {"train_loss", "lr", "samples_per_s", "val_per_variable.tas"} <= set(run.data.metrics)
    assert [a.path for a in client.list_artifacts(run_id, "bundle")] == ["bundle/bundle.json"]


TINY_RECIPE = """
name: tiny-iberia
framework: perfect_model
data:
  targets:
    tas: {cordex}/tas_EUR-44_ICHEC-EC-EARTH_historical_*.nc
    pr: {cordex}/pr_EUR-44_ICHEC-EC-EARTH_historical_*.nc
  coarse_grid: {cmip5}/tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc
  static:
    orog: {cordex}/orog_EUR-44_Iberia-subset_derived-from-HSURF-0.11deg_fx.nc
  periods:
    train: {{season: DJF, years: [1983, 1984]}}
    validation: {{season: DJF, years: [1984, 1984]}}
model: {{type: simple_cnn, width: 4, coarse_blocks: 1, fine_blocks: 1}}
train: {{epochs: 2, batch_size: 32, accumulate: 2, threads: 1, checkpoint_every: 2, {extra}}}
"""


def _tiny_recipe(tmp_path: Path, extra: str = "seed: 0") -> Path:
    iberia = ROOT / "examples" / "data" / "iberia"
    path = tmp_path / f"recipe-{abs(hash(extra))}.yaml"
    path.write_text(TINY_RECIPE.format(cordex=iberia / "cordex", cmip5=iberia / "cmip5", extra=extra))
    return path


@pytest.mark.timeout(300)
def test_train_resumes_its_own_checkpoint_refuses_another_and_cleans_up(tmp_path, monkeypatch, threads):
    from downscale.bundle import load_bundle
    from downscale.train import run
    from downscale.train.checkpoint import checkpoint_folder

    out = tmp_path / "bundle"
    ckpt = checkpoint_folder(out)
    removed = []
    monkeypatch.setattr(CheckpointStore, "remove", lambda self: removed.append(self.folder))  # keep it this once
    first = run.train(_tiny_recipe(tmp_path), out, progress=False)
    assert removed == [ckpt] and (ckpt / "checkpoint.pt").exists() and (ckpt / "best.pt").exists()
    rows = json.loads((out / "training_log.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2] and {"val_per_variable.tas", "val_per_variable.pr"} <= set(rows[0])
    assert (out / "training_log.csv").read_text().startswith("epoch,train_loss,val_loss,lr,seconds,samples_per_s")

    # another recipe, same output: refused, its checkpoint left alone
    with pytest.raises(CheckpointError, match="another recipe"):
        run.train(_tiny_recipe(tmp_path, "seed: 1"), out, progress=False, overwrite=True)
    # the same recipe (a run-time setting changed): resumes the finished run, then deletes the folder
    monkeypatch.undo()
    again = run.train(_tiny_recipe(tmp_path, "seed: 0, num_workers: 0"), out, progress=False, overwrite=True)
    assert not ckpt.exists()
    assert json.loads((out / "training_log.json").read_text()) == rows  # the history came from the checkpoint
    w1, w2 = load_bundle(first.bundle_path).weights, load_bundle(again.bundle_path).weights
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_optimizer_state_by_name_continues_adam_exactly():
    """Two epochs in one run equal one epoch, then the optimiser state carried by parameter name into a
    new trainer (as a bundle with ``train.save_optimizer`` carries it to ``loading: resume``) and one more
    epoch; without the state the second run starts from fresh moments and lands elsewhere."""
    from downscale.models.losses import create_criterion

    loss = create_criterion("mse", ["tas"])
    data = StepLoader(_constant_data(8, 1.0), 4)  # no shuffling: every epoch sees the same batches
    kw = {"lr": 0.05, "schedule": "constant", "warmup": 0}
    ref = _Constant()
    _trainer(ref, loss, epochs=2, **kw).fit(data)
    first = _Constant()
    t1 = _trainer(first, loss, epochs=1, **kw)
    t1.fit(data)
    state = t1.optimizer_state_by_name()
    assert set(state) == {"step/w", "exp_avg/w", "exp_avg_sq/w"} and float(state["step/w"]) == 2
    ends = {}
    for carry in (True, False):
        second = _Constant()
        second.load_state_dict(first.state_dict())
        t2 = _trainer(second, loss, epochs=1, **kw)
        assert t2.load_optimizer_state_by_name(state if carry else {}) == (["w"] if carry else [])
        t2.fit(data)
        ends[carry] = float(second.w.detach())
    assert ends[True] == pytest.approx(float(ref.w.detach()), abs=1e-7)
    assert abs(ends[False] - float(ref.w.detach())) > 1e-4
