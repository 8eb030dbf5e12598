"""``downscale evaluate`` end to end through the real CLI, on a tiny bundle and the bundled Iberia data."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IBERIA = ROOT / "examples" / "data" / "iberia"


@pytest.fixture(scope="module")
def report(tiny_bundle, tmp_path_factory):
    from typer.testing import CliRunner

    from downscale.cli.main import app

    tmp = tmp_path_factory.mktemp("evaluate")
    racmo = IBERIA / "cordex"
    gcm = IBERIA / "cmip5"
    config = tmp / "evaluate.yaml"
    config.write_text(
        textwrap.dedent(f"""
        name: tiny-evaluation
        emulators:
          - {{name: tiny, bundle: {tiny_bundle}, recipe: {ROOT / "recipes" / "perfect-model-iberia.yaml"}}}
        tests:
          - name: training-winters
            kind: perfect
            target: {{tas: {racmo}/tas_*historical*.nc, pr: {racmo}/pr_*historical*.nc}}
            period: {{season: DJF, years: [1983, 1997]}}
          - name: gcm-future
            kind: imperfect
            scenario: rcp85
            predictors: {{tas: {gcm}/tas_day_CNRM-CM5_rcp85_*.nc, pr: {gcm}/pr_day_CNRM-CM5_rcp85_*.nc}}
            target: {{tas: {racmo}/tas_*rcp85*.nc, pr: {racmo}/pr_*rcp85*.nc}}
            period: {{season: DJF, years: [2099, 2100]}}
            reference:
              predictors: {{tas: {gcm}/tas_day_CNRM-CM5_historical_*.nc, pr: {gcm}/pr_day_CNRM-CM5_historical_*.nc}}
              target: {{tas: {racmo}/tas_*historical*.nc, pr: {racmo}/pr_*historical*.nc}}
              period: {{season: DJF, years: [2001, 2002]}}
        baselines: [bilinear, bilinear_bc]
        metrics:
          - rmse
          - temporal_correlation
          - {{type: index_bias, index: mean}}
          - {{type: index_bias, index: rx1day}}
          - wasserstein
          - pr_tas_correlation_bias
          - cc_signal_error
          - crps
        mlflow: file:{tmp / "mlruns"}
    """)
    )
    out = tmp / "report"
    (out / "figures").mkdir(parents=True)
    # an interrupted evaluation of ours (its marker): resumed, its stale figures replaced, other files kept
    (out / ".downscale-output.json").write_text('{"tool": "downscale", "verb": "evaluate", "status": "running"}')
    (out / "figures" / "old__run__tas__qq.png").write_bytes(b"stale")  # a figure of an earlier run
    (out / "figures" / "mine.png").write_bytes(b"kept")  # not one of ours
    result = CliRunner().invoke(app, ["evaluate", str(config), "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    return out, rows, result.output, tmp


def _value(rows, **where) -> float:
    hits = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(hits) == 1, (where, len(hits))
    return float(hits[0]["value"])


def test_the_report_files_are_written(report):
    out, rows, output, _ = report
    for name in ("report.html", "report.md", "metrics.csv", "metrics.json"):
        assert (out / name).stat().st_size > 0, name
    figures = sorted(p.name for p in (out / "figures").glob("*__*.png"))
    assert (out / "figures" / "mine.png").exists()  # stale figures of ours are removed, other files kept
    # 2 tests x 2 variables x (bias map, spectra, QQ) + 2 climate-change-signal maps for the test with a reference
    assert len(figures) == 14
    assert "tiny__gcm-future__pr__cc_signal.png" in figures
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 14  # self-contained
    md = (out / "report.md").read_text()
    assert "Imperfect test" in md and "figures/tiny__training-winters__tas__bias_map.png" in md
    assert "downscale evaluate" in md  # the command that regenerates it
    meta = json.loads((out / "metrics.json").read_text())
    assert len(meta["rows"]) == len(rows) and meta["emulators"]["tiny"]["bundle_id"]
    assert not list(out.rglob(".*.tmp-*"))  # atomic writes leave nothing behind
    assert "report written to" in output


def test_baselines_are_scored_beside_the_emulator_with_known_values(report):
    _, rows, _, _ = report
    methods = {r["method"] for r in rows}
    assert methods == {"emulator", "bilinear", "bilinear_bc"}
    # the bias correction is fitted on the training winters: on those very winters its mean bias vanishes
    train = {"test": "training-winters"}
    assert _value(rows, **train, variable="tas", method="bilinear_bc", metric="mean_abs_bias") < 1e-4
    assert _value(rows, **train, variable="pr", method="bilinear_bc", metric="mean_abs_bias") < 1e-3
    assert _value(rows, **train, variable="tas", method="bilinear", metric="mean_abs_bias") > 0.3
    # an additive correction leaves correlations unchanged
    assert _value(rows, **train, variable="tas", method="bilinear", metric="temporal_correlation") == pytest.approx(
        _value(rows, **train, variable="tas", method="bilinear_bc", metric="temporal_correlation")
    )
    assert 0 < _value(rows, **train, variable="tas", method="emulator", metric="rmse") < 5
    # rx1day applies to precipitation only; ranks go from 1 to 3
    assert not [r for r in rows if r["metric"] == "rx1day_abs_bias" and r["variable"] == "tas"]
    assert {r["rank"] for r in rows} <= {"1", "2", "3"}
    # deterministic methods get the CRPS of a one-member ensemble: their mean absolute error, below their RMSE
    for method in ("emulator", "bilinear", "bilinear_bc"):
        crps = _value(rows, **train, variable="pr", method=method, metric="crps")
        assert 0 < crps < _value(rows, **train, variable="pr", method=method, metric="rmse")


def test_imperfect_tests_are_scored_on_distributions_and_the_signal_only(report):
    _, rows, _, _ = report
    gcm = [r for r in rows if r["test"] == "gcm-future"]
    assert {r["kind"] for r in gcm} == {"imperfect"}
    assert {r["metric"] for r in gcm} == {
        "mean_abs_bias",
        "rx1day_abs_bias",
        "wasserstein",
        "pr_tas_correlation_bias",
        "mean_cc_signal_error",
    }
    signal = [r for r in gcm if r["metric"] == "mean_cc_signal_error"]
    assert {(r["variable"], r["method"]) for r in signal} == {
        (v, m) for v in ("tas", "pr") for m in ("emulator", "bilinear", "bilinear_bc")
    }
    # an additive correction does not change the climate-change signal of bilinear interpolation
    assert _value(
        rows, test="gcm-future", variable="tas", method="bilinear", metric="mean_cc_signal_error"
    ) == pytest.approx(
        _value(rows, test="gcm-future", variable="tas", method="bilinear_bc", metric="mean_cc_signal_error")
    )


def test_every_metric_is_logged_to_mlflow(report):
    _, rows, _, tmp = report
    logged = [p for p in (tmp / "mlruns").rglob("metrics/*") if p.is_file()]
    assert len(logged) == len(rows)
    assert list((tmp / "mlruns").rglob("artifacts/report/report.html"))


def test_a_stochastic_emulator_gets_ensemble_scores(tmp_path):
    """A noise-conditioned DeepESD trained with the CRPS loss for one epoch: its ensemble is scored (CRPS, rank
    histogram and its figure); the baselines get the CRPS of one member."""
    from typer.testing import CliRunner

    from downscale.cli.main import app
    from downscale.recipe import load_recipe
    from downscale.train.run import train

    recipe = load_recipe(
        ROOT / "recipes" / "perfect-model-iberia.yaml",
        [
            "model={type: deepesd, n_noise: 4, filters: [8, 8, 4], hidden: 32, head_width: 16}",
            "loss.type=crps",
            "loss.members=2",
            "train.epochs=1",
        ],
    )
    bundle = tmp_path / "stochastic"
    train(recipe, bundle, progress=False)
    racmo = IBERIA / "cordex"
    config = tmp_path / "evaluate.yaml"
    config.write_text(
        textwrap.dedent(f"""
        emulators: [{{name: s, bundle: {bundle}, recipe: {ROOT / "recipes" / "perfect-model-iberia.yaml"}}}]
        tests:
          - name: cv
            target: {{tas: {racmo}/tas_*historical*.nc, pr: {racmo}/pr_*historical*.nc}}
            period: {{season: DJF, years: [2000, 2000]}}
        baselines: [bilinear]
        metrics: [rmse, crps, rank_histogram_deviation]
        members: 4
    """)
    )
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", str(config), "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["metric"], r["method"]) for r in rows if r["variable"] == "tas"} == {
        ("rmse", "emulator"),
        ("rmse", "bilinear"),
        ("crps", "emulator"),
        ("crps", "bilinear"),
        ("rank_histogram_deviation", "emulator"),
    }
    assert 0 < _value(rows, variable="tas", method="emulator", metric="crps") < 20
    assert 0 <= _value(rows, variable="pr", method="emulator", metric="rank_histogram_deviation") < 5
    assert (out / "figures" / "s__cv__tas__rank_histogram.png").exists()
