"""Faults give one line and exit 1 (disk full, read-only, memory, no GPU, internal errors; an interruption
130), leave no temporary file, and a rerun after a disk-full fault completes and equals an uninterrupted run."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from downscale.atomic import TMP_GLOB
from downscale.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "perfect-model-iberia.yaml"
TINY = [
    "--set", "model.type=simple_cnn", "--set", "model.width=4", "--set", "model.coarse_blocks=1",
    "--set", "model.fine_blocks=1", "--set", "train.epochs=2", "--no-progress",
]  # fmt: skip
runner = CliRunner()


def invoke(*args, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(("error:", "interrupted"))]
    assert len(lines) == 1, output
    return " ".join(lines[0].split())


@pytest.mark.timeout(120)
def test_disk_full_while_training_then_rerun_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    from downscale.bundle import load_bundle
    from downscale.train import checkpoint

    reference = tmp_path / "reference"
    invoke("train", RECIPE, "-o", reference, *TINY)

    calls = {"n": 0}
    real_save = torch.save

    def full_disk(obj, f, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # the second epoch's checkpoint: the first is on disk
            with open(f, "wb") as fh:
                fh.write(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kw)

    out = tmp_path / "b"
    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    line = _one_error_line(invoke("train", RECIPE, "-o", out, *TINY, code=1))
    assert line.startswith(f"error: {out}: no space left on the device"), line
    assert "rerun the same command to resume" in line
    assert not list(tmp_path.rglob(TMP_GLOB)), list(tmp_path.rglob(TMP_GLOB))
    assert (tmp_path / "b.ckpt" / "checkpoint.pt").is_file()  # what was finished is kept
    monkeypatch.setattr(checkpoint.torch, "save", real_save)

    invoke("train", RECIPE, "-o", out, *TINY)  # the same command, no --overwrite: resumes
    assert not (tmp_path / "b.ckpt").exists() and not list(tmp_path.rglob(TMP_GLOB))
    a, b = load_bundle(reference).weights, load_bundle(out).weights
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # finished: the same command now refuses, --overwrite replaces
    assert "--overwrite to replace it" in _one_error_line(invoke("train", RECIPE, "-o", out, *TINY, code=2))


def _fail_with(monkeypatch, exc: BaseException) -> None:
    import downscale.train.run

    def boom(*args, **kw):
        raise exc

    monkeypatch.setattr(downscale.train.run, "train", boom)


@pytest.mark.parametrize(
    ("exc", "code", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 1, "no space left on the device"),
        (OSError(errno.EROFS, "Read-only file system", "/data/out/x.nc"), 1, "/data/out/x.nc: read-only file system"),
        (PermissionError(errno.EACCES, "Permission denied", "/data/out"), 1, "/data/out: permission denied"),
        (MemoryError(), 1, "out of memory (MemoryError). Fix: use a smaller train.batch_size"),
        (AssertionError("Torch not compiled with CUDA enabled"), 1, "no usable CUDA GPU (Torch not compiled"),
        (RuntimeError("No CUDA GPUs are available"), 1, "--set train.device=cpu"),
        (KeyError("boom"), 1, "internal error KeyError: 'boom'; rerun with -v for the traceback"),
        (KeyboardInterrupt(), 130, "interrupted; rerun the same command to resume"),
    ],
)
def test_faults_are_one_line(tmp_path, monkeypatch, exc, code, expected):
    _fail_with(monkeypatch, exc)
    line = _one_error_line(invoke("train", RECIPE, "-o", tmp_path / "b", "--no-progress", code=code))
    assert expected in line, line
    assert not (tmp_path / "b").exists()  # a folder made for the run and left empty is removed


def test_internal_error_traceback_only_under_verbose(tmp_path, monkeypatch):
    _fail_with(monkeypatch, ValueError("unexpected"))
    result = runner.invoke(app, ["-v", "train", str(RECIPE), "-o", str(tmp_path / "b"), "--no-progress"])
    assert result.exit_code == 1
    assert "Traceback" in result.output and "error: internal error ValueError: unexpected" in result.output


def test_atomic_write_leaves_no_temporary_when_the_disk_fills(tmp_path, monkeypatch):
    from downscale import atomic

    def full(self, data):
        with open(self, "wb") as fh:
            fh.write(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.Path, "write_bytes", full)
    with pytest.raises(OSError):
        atomic.write_atomic(tmp_path / "metrics.csv", "a,b\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(120)
def test_disk_full_while_writing_the_evaluation_report_then_rerun(tiny_bundle, tmp_path, monkeypatch):
    import textwrap

    from downscale import atomic

    racmo = ROOT / "examples" / "data" / "iberia" / "cordex"
    config = tmp_path / "evaluate.yaml"
    config.write_text(
        textwrap.dedent(f"""
        name: faults
        emulators: [{{name: tiny, bundle: {tiny_bundle}, recipe: {RECIPE}}}]
        tests:
          - name: cv
            target: {{tas: {racmo}/tas_*historical*.nc, pr: {racmo}/pr_*historical*.nc}}
            period: {{season: DJF, years: [2000, 2000]}}
        baselines: [bilinear]
        metrics: [rmse]
        figures: false
    """)
    )
    reference = tmp_path / "reference"
    invoke("evaluate", config, "-o", reference, "--no-progress")
    real = atomic.Path.write_bytes

    def full(self, data):
        if "metrics.json" in self.name:
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    out = tmp_path / "report"
    monkeypatch.setattr(atomic.Path, "write_bytes", full)
    line = _one_error_line(invoke("evaluate", config, "-o", out, "--no-progress", code=1))
    assert line.startswith(f"error: {out}: no space left on the device"), line
    assert not list(tmp_path.rglob(TMP_GLOB)) and not (out / "metrics.json").exists()
    monkeypatch.setattr(atomic.Path, "write_bytes", real)
    invoke("evaluate", config, "-o", out, "--no-progress")  # an unfinished report of ours: rerun, no flag
    assert (out / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    assert not list(tmp_path.rglob(TMP_GLOB))


@pytest.mark.timeout(120)
def test_disk_full_while_applying_then_rerun_equals_an_uninterrupted_run(tiny_bundle, tmp_path, monkeypatch):
    import numpy as np
    import xarray as xr

    from downscale.apply import store

    cmip5 = ROOT / "examples" / "data" / "iberia" / "cmip5"
    inputs = tmp_path / "in"
    inputs.mkdir()
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    for var in ("tas", "pr"):
        src = cmip5 / f"{var}_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"
        xr.open_dataset(src, decode_times=coder).isel(time=slice(0, 60)).to_netcdf(inputs / src.name)
    args = ["--chunk-days", "30", "--no-progress"]
    reference = tmp_path / "reference"
    invoke("apply", tiny_bundle, inputs, "-o", reference, *args)
    calls = {"n": 0}
    real = np.save

    def full(fh, arr, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the second chunk: the first is stored
            fh.write(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fh, arr, *a, **kw)

    out = tmp_path / "out"
    monkeypatch.setattr(store.np, "save", full)
    line = _one_error_line(invoke("apply", tiny_bundle, inputs, "-o", out, *args, code=1))
    assert "no space left on the device" in line and "rerun the same command to resume" in line, line
    assert not list(tmp_path.rglob(TMP_GLOB)), list(tmp_path.rglob(TMP_GLOB))
    monkeypatch.setattr(store.np, "save", real)
    invoke("apply", tiny_bundle, inputs, "-o", out, *args)
    assert not list(tmp_path.rglob(TMP_GLOB))
    names = sorted(p.name for p in reference.glob("*.nc"))
    assert names and names == sorted(p.name for p in out.glob("*.nc"))
    for name in names:
        var = name.split("_")[0]
        a = xr.open_dataset(reference / name, decode_times=coder)[var].values
        b = xr.open_dataset(out / name, decode_times=coder)[var].values
        assert np.array_equal(a, b, equal_nan=True), name
