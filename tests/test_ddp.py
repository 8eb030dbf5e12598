"""Data-parallel training: 2 gloo processes on the CPU equal one process.

The two ranks are started like ``torchrun`` starts them (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT); each optimiser step consumes the same
global batch as the single process, split between the ranks (and, in the second
configuration, into accumulated micro-batches, with uneven and empty shares; the third adds the anchor
of ``transfer.anchor``).
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import numpy as np
import torch

from downscale.data.dataset import BlockShuffleSampler, SampleArrays, SampleDataset
from downscale.models import create_model
from downscale.train import distributed as dist
from downscale.train.engine import Trainer, seed_everything
from downscale.train.loader import StepLoader
from downscale.models.losses import create_criterion

CONFIGS = {
    "plain": dict(batch=16, accumulate=1),
    "accumulate": dict(batch=24, accumulate=2),
    "anchor": dict(batch=16, accumulate=1, anchor=20.0),  # transfer's L2-SP pull, applied on every rank
}


def dataset(n, seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, 2, 4, 5)).astype(np.float32)
    up = np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)
    y = (up + 0.3 * r.standard_normal(up.shape)).astype(np.float32)
    m = (r.random(y.shape) > 0.25).astype(np.uint8)  # uneven valid counts per sample and variable
    y[m == 0] = 0
    f = r.standard_normal((n, 1)).astype(np.float32)
    s = r.standard_normal((1, 8, 10)).astype(np.float32)
    return SampleDataset(SampleArrays(x=x, f=f, s=s, y=y, m=m, indices=np.arange(n)))


def train(batch, accumulate, epochs=2, anchor=0.0):
    torch.set_num_threads(1)
    seed_everything(0)
    model = create_model("simple_cnn", in_channels=2, out_channels=2, n_forcings=1, n_static=1, width=8)
    crit = create_criterion("mse", ["tas", "pr"])
    groups = [{"params": list(model.parameters()), "anchor_decay": anchor}] if anchor else None
    trainer = Trainer(model, crit, epochs=epochs, lr=5e-3, schedule="cosine", warmup=0.1, grad_clip=1.0,
                      amp="off", device="cpu", progress=False, param_groups=groups)
    train_set, val_set = dataset(65, 0), dataset(20, 1)  # 65: the last global batch of 1 leaves rank 1 empty
    fit = trainer.fit(
        StepLoader(train_set, batch, sampler=BlockShuffleSampler(len(train_set), block=64, seed=3), accumulate=accumulate),
        StepLoader(val_set, 8),
    )
    return {
        "steps": fit.step_losses,
        "val": [h.val_loss for h in fit.history],
        "weights": {k: v.tolist() for k, v in model.state_dict().items()},
        "world": dist.get_world_size(),
    }


if __name__ == "__main__":
    out = {name: train(**cfg) for name, cfg in CONFIGS.items()}
    if dist.is_main():
        with open(sys.argv[1], "w") as fh:
            json.dump(out, fh)
    dist.teardown()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_two_gloo_ranks_match_one_process(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "ddp.json"
    t0 = time.perf_counter()
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        cmd = [sys.executable, str(script), str(out)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))

    # meanwhile, the single-process reference, here
    threads = torch.get_num_threads()
    try:
        module = runpy.run_path(str(script))
        reference = {name: module["train"](**cfg) for name, cfg in module["CONFIGS"].items()}
    finally:
        torch.set_num_threads(threads)

    try:
        for p in procs:
            output, _ = p.communicate(timeout=100)
            assert p.returncode == 0, output.decode()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    ddp = json.loads(out.read_text())
    seconds = time.perf_counter() - t0

    for name, ref in reference.items():
        got = ddp[name]
        assert ref["world"] == 1 and got["world"] == 2
        assert len(got["steps"]) == len(ref["steps"]) >= 5
        # per-step losses of the first K=5 steps, and of all of them
        torch.testing.assert_close(torch.tensor(got["steps"][:5]), torch.tensor(ref["steps"][:5]), rtol=1e-5, atol=0)
        torch.testing.assert_close(torch.tensor(got["steps"]), torch.tensor(ref["steps"]), rtol=1e-5, atol=0)
        torch.testing.assert_close(torch.tensor(got["val"]), torch.tensor(ref["val"]), rtol=1e-5, atol=0)
        for key, value in ref["weights"].items():
            # float32 weights of ~0.1 differ in their last bits (~1e-8): 1e-5 relative to each
            # tensor's norm, and elementwise within 1e-5 relative or 1e-6 absolute (near-zero weights)
            a, b = torch.tensor(got["weights"][key]), torch.tensor(value)
            assert float((a - b).norm()) <= 1e-5 * float(b.norm()), f"{name}: {key}"
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")
    # the anchor acts: the same run without it ends elsewhere
    key = "stem.weight"
    assert key in reference["anchor"]["weights"]
    assert (
        torch.tensor(reference["anchor"]["weights"][key])
        .sub(torch.tensor(reference["plain"]["weights"][key]))
        .abs()
        .max()
        > 1e-4
    )
    print(f"2 ranks + reference: {seconds:.1f} s")
