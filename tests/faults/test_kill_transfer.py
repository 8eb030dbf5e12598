"""kill -9 and Ctrl-C (SIGINT) during ``downscale transfer``: the same command then resumes into the same -o
(no --overwrite) and the bundle equals an uninterrupted transfer's, weight for weight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from downscale.atomic import TMP_GLOB

ROOT = Path(__file__).resolve().parents[2]
TRANSFER = ROOT / "recipes" / "transfer-eobs-k30.yaml"
QUICK = ["--set", "data.shots.days=10", "--set", "train.epochs=3", "--set", "train.checkpoint_every=1", "--no-progress"]
CLI = "import sys; from downscale.cli.main import app; sys.argv[0] = 'downscale'; app()"


def _cmd(bundle: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", CLI, "transfer", str(bundle), str(TRANSFER), "-o", str(out), *QUICK]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def reference(tiny_bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kill-transfer") / "reference"
    done = subprocess.run(_cmd(tiny_bundle, out), env=_env(), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_transfer_resumes_and_equals_an_uninterrupted_one(tiny_bundle, reference, tmp_path, sig):
    from downscale.bundle import load_bundle

    out = tmp_path / "k10"
    ckpt = tmp_path / "k10.ckpt" / "checkpoint.pt"
    proc = subprocess.Popen(_cmd(tiny_bundle, out), env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        proc.send_signal(sig)
        _, err = proc.communicate()
    if sig == signal.SIGINT and proc.returncode != 0:
        assert proc.returncode == 130, err[-2000:]
        assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err
    elif sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    if proc.returncode != 0:
        assert not (out / "bundle.json").exists()
    done = subprocess.run(_cmd(tiny_bundle, out), env=_env(), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(tmp_path.rglob(TMP_GLOB)) and not ckpt.parent.exists()
    a, b = load_bundle(reference).weights, load_bundle(out).weights
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
