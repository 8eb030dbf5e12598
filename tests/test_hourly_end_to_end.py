"""``downscale train`` -> ``downscale apply`` -> ``downscale evaluate`` on hourly files (issue 13), through the real
CLI, with the bundled SYNTHETIC hourly data (examples/data/iberia-hourly/README.md) and the project's hourly
recipes on a short schedule: the bundle records the frequency and the exact-stamp pairing, apply writes the
inputs' hourly stamps with ``time_bnds`` under CMIP-style sub-daily file names, and the report shows the diurnal
cycle (metrics and figure) beside the baselines."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

from downscale.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
HOURLY = ROOT / "examples" / "data" / "iberia-hourly"
RECIPE = ROOT / "recipes" / "perfect-model-iberia-hourly.yaml"
EVALUATE = ROOT / "recipes" / "evaluate-iberia-hourly.yaml"
SHORT = ["--set", "model.width=8", "--set", "model.fine_blocks=1", "--set", "train.epochs=1"]


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hourly-e2e")
    bundle = tmp / "bundle"
    train_out = _invoke(["train", str(RECIPE), "-o", str(bundle), "--no-progress", *SHORT])
    apply_out = _invoke(["apply", str(bundle), str(next(HOURLY.glob("tas_1hr_*.nc"))), "-o", str(tmp / "out")])
    config = yaml.safe_load(EVALUATE.read_text())
    config["emulators"][0].update(bundle=str(bundle), recipe=str(RECIPE))
    config["tests"][0]["target"] = {"tas": str(next(HOURLY.glob("tas_EUR-44_*.nc")))}
    (tmp / "evaluate.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    eval_out = _invoke(["evaluate", str(tmp / "evaluate.yaml"), "-o", str(tmp / "report"), "--no-progress"])
    return tmp, train_out, apply_out, eval_out


def test_train_records_hourly_frequency_and_exact_pairing(chain):
    from downscale.bundle import load_bundle

    tmp, output, _, _ = chain
    meta = load_bundle(tmp / "bundle").meta
    assert meta.frequency == "1hr"
    assert meta.pairing == {"frequency": "1hr", "matching": "exact time stamps, 1hr", "matched_steps": 62 * 24}
    assert meta.forcing_names[-2:] == ["local_time_of_day_cos", "local_time_of_day_sin"]
    assert meta.forcing_longitude == pytest.approx(-4.0, abs=3.0)  # Iberia's centre, degrees east
    assert "test period skill (336 hourly steps)" in output
    rows = meta.scores["test"]["rows"]
    assert {r["method"] for r in rows} == {"emulator", "bilinear", "bilinear_bc"}


def test_apply_writes_the_inputs_hourly_stamps_and_bounds(chain):
    from downscale.data.calendar import time_values

    tmp, _, _, _ = chain
    (path,) = sorted((tmp / "out").glob("*.nc"))
    # CMIP-style name: the frequency and YYYYMMDDHHMM spans
    assert path.name.endswith("_1hr_198212010030-198301312330.nc"), path.name
    assert "_SYNTHETIC-hourly-RACMO22E_historical_r1i1p1_" in path.name
    src = next(HOURLY.glob("tas_1hr_*.nc"))
    with xr.open_dataset(src, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as a:
        expected = time_values(a["time"])
        expected_bnds = a["time_bnds"].values
    with xr.open_dataset(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as out:
        assert out.attrs["frequency"] == "1hr"
        assert list(time_values(out["time"])) == list(expected)
        assert out["time"].attrs["bounds"] == "time_bnds"
        assert (out["time_bnds"].values == expected_bnds).all()  # each hour from HH:00 to HH+1:00
        assert np.isfinite(out["tas"].values).all() and 230 < float(out["tas"].mean()) < 300


def test_report_shows_the_diurnal_cycle_beside_the_baselines(chain):
    tmp, _, _, _ = chain
    report = tmp / "report"
    with open(report / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    metrics = {(r["method"], r["metric"]) for r in rows}
    for method in ("emulator", "bilinear", "bilinear_bc"):
        for metric in ("diurnal_amplitude_abs_bias", "diurnal_phase_error", "p999_abs_bias", "daily_max_bias"):
            assert (method, metric) in metrics, (method, metric)
    values = [float(r["value"]) for r in rows if r["metric"] == "diurnal_amplitude_abs_bias"]
    assert all(np.isfinite(values))
    figures = sorted(p.name for p in (report / "figures").glob("*diurnal_cycle*.png"))
    assert figures, sorted(p.name for p in (report / "figures").iterdir())
    text = (report / "report.md").read_text()
    assert "diurnal" in text and figures[0] in text
