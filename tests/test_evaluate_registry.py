"""The metric registry (names, options, labels, plug-in entry points) and the evaluation config's errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from downscale.errors import RecipeError, UnknownNameError
from downscale.evaluate import metric_registry as R
from downscale.evaluate.config import load_evaluate_config

ROOT = Path(__file__).resolve().parents[1]


def test_builtin_metrics_are_registered_with_their_needs():
    names = R.metric_names()
    for name in (
        "rmse",
        "ralsd",
        "temporal_correlation",
        "index_bias",
        "index_ratio",
        "spatial_correlation",
        "wasserstein",
        "psd_distance",
        "pr_tas_correlation_bias",
        "cc_signal_error",
        "crps",
        "rank_histogram_deviation",
    ):
        assert name in names
    assert R.get_metric("rmse").needs == "paired" and R.get_metric("rmse").estimate
    assert R.get_metric("wasserstein").needs == "distribution"
    assert R.get_metric("cc_signal_error").needs == "signal"
    assert R.get_metric("crps").needs == "ensemble"


def test_metric_entries_build_labels_units_and_applicability():
    q99 = R.create_metric({"type": "index_bias", "index": "quantile", "q": 0.99})
    assert q99.label == "q99_abs_bias" and q99.units("K") == "K" and q99.units("mm day-1") == "mm day-1"
    rx = R.create_metric({"type": "index_bias", "index": "rx1day"})
    assert rx.applies_to("precipitation") and not rx.applies_to("temperature")
    assert rx.units("kg m-2 s-1") == "mm day-1"
    su = R.create_metric({"type": "index_bias", "index": "su", "thresh": "25 degC"})
    assert su.units("K") == "days" and su.applies_to("temperature") and not su.applies_to("precipitation")
    assert R.create_metric({"type": "wasserstein", "per_cell": True}).label == "wasserstein_per_cell"
    assert R.create_metric({"type": "rmse", "name": "my_rmse"}).label == "my_rmse"
    only = R.create_metric({"type": "index_bias", "index": "quantile", "q": 0.01, "variables": "tas"})
    assert only.variables == ("tas",)
    assert R.create_metric({"type": "cc_signal_error", "index": "quantile", "q": 0.99}).label == "q99_cc_signal_error"
    assert R.variable_kind("K") == "temperature" and R.variable_kind("kg m-2 s-1") == "precipitation"
    assert R.variable_kind("mm day-1") == "precipitation" and R.variable_kind("Pa") == "other"


def test_unknown_names_and_options_fail_helpfully():
    with pytest.raises(UnknownNameError, match=r"unknown metric 'rmsee'.*did you mean 'rmse'"):
        R.create_metric("rmsee")
    with pytest.raises(UnknownNameError, match=r"unknown index 'rx1dy'.*did you mean 'rx1day'"):
        R.create_metric({"type": "index_bias", "index": "rx1dy"})
    with pytest.raises(RecipeError, match=r"no option 'treshold'.*did you mean 'thresh'"):
        R.create_metric({"type": "index_bias", "index": "su", "treshold": "25 degC"})
    with pytest.raises(RecipeError, match="needs a 'type'"):
        R.create_metric({"index": "mean"})


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A third-party package, installed on sys.path, that declares one metric through an entry point."""
    pkg = tmp_path / "my_scores"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent('''
        import numpy as np

        def max_abs_error(pred, truth, mask=None, *, scale=1.0):
            """Largest absolute error."""
            return scale * float(np.nanmax(np.abs(np.asarray(pred) - np.asarray(truth))))
    ''')
    )
    info = tmp_path / "my_scores-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-scores\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[downscale.metrics]\nmax_abs_error = my_scores:max_abs_error\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "max_abs_error"
    R.METRICS._items.pop("max_abs_error", None)
    sys.modules.pop("my_scores", None)


def test_third_party_metrics_plug_in_through_entry_points(plugin):
    import numpy as np

    assert plugin not in R.METRICS
    assert plugin in R.load_entry_points(force=True)
    call = R.create_metric({"type": plugin, "scale": 2.0})
    assert call.needs == "paired" and call.better == "lower"
    assert call(np.array([1.0, 2.0]), np.array([1.0, 5.0])) == 6.0
    assert "Largest absolute error" in R.get_metric(plugin).description


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eval.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
name: t
emulators: [{name: a, bundle: somewhere}]
tests:
  - name: cv
    target: {tas: x.nc}
    period: {season: DJF, years: [1998, 2002]}
"""


def test_the_config_loads_and_rejects_bad_entries_in_one_line(tmp_path):
    config = load_evaluate_config(_write(tmp_path, GOOD))
    assert config.tests[0].kind == "perfect" and config.tests[0].target == {"tas": ["x.nc"]}
    assert config.resolve("x.nc") == str(tmp_path / "x.nc")
    assert "rmse" in config.metrics and config.baselines[:2] == ["bilinear", "bilinear_bc"]
    cases = {
        GOOD.replace("name: cv", "name: cv\n    kindd: perfect"): r"unknown key 'tests.0.kindd'.*did you mean 'kind'",
        GOOD.replace("period: {season", "period: {seasn"): r"unknown key 'tests.0.period.seasn'.*did you mean 'season'",
        GOOD + "metrics: [rmse, ralsdd]\n": r"unknown metric 'ralsdd'.*did you mean 'ralsd'",
        GOOD + "baselines: [bilinear, bilnear_bc]\n": r"unknown baseline 'bilnear_bc'.*did you mean 'bilinear_bc'",
        GOOD.replace("name: cv", "name: cv\n    kind: imperfect"): r"imperfect test needs predictors",
        GOOD.replace("name: cv", "name: cv\n    emulators: [b]"): r"unknown emulator 'b'",
        GOOD.replace("emulators: [{name: a, bundle: somewhere}]\n", ""): r"missing key 'emulators'",
        GOOD + "members: 0\n": r"invalid value for 'members'",
        "- just a list\n": r"must be a YAML mapping",
    }
    for text, pattern in cases.items():
        with pytest.raises((RecipeError, UnknownNameError), match=pattern) as info:
            load_evaluate_config(_write(tmp_path, text))
        assert "\n" not in str(info.value)
        assert "eval.yaml" in str(info.value)


def test_the_cli_turns_a_bad_config_into_one_line(tmp_path):
    from typer.testing import CliRunner

    from downscale.cli.main import app

    path = _write(tmp_path, GOOD + "metrics: [{type: index_bias, index: rx1dy}]\n")
    result = CliRunner().invoke(app, ["evaluate", str(path), "-o", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "unknown index 'rx1dy'" in text and "did you mean 'rx1day'" in text and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_the_iberia_evaluation_config_is_valid():
    config = load_evaluate_config(ROOT / "recipes" / "evaluate-iberia.yaml")
    kinds = {t.name: t.kind for t in config.tests}
    assert kinds == {
        "historical-cv": "perfect",
        "rcp85-extrapolation": "perfect",
        "cnrm-cm5-historical": "imperfect",
        "cnrm-cm5-rcp85": "imperfect",
        "eobs-test": "perfect",
    }
    assert config.tests[1].reference is not None and config.tests[3].reference is not None
