"""The evaluation config (``downscale evaluate CONFIG.yaml``): pydantic models with ``extra="forbid"``.

One YAML file lists the emulators (bundles) and the test cases; the evaluator runs every (emulator, test)
pair the test allows.  File patterns are relative to the config's own folder::

    name: evaluate-iberia
    emulators:
      - {name: perfect-model, bundle: ../runs/perfect-model-iberia, recipe: perfect-model-iberia.yaml}
    tests:
      - name: historical-cv
        title: Historical CV, DJF 1998-2002
        kind: perfect                     # day-matched predictors: every metric
        emulators: [perfect-model]
        target: {tas: ../examples/data/iberia/cordex/tas_*historical*.nc, pr: ...}
        period: {season: DJF, years: [1998, 2002]}
      - name: cnrm-cm5-rcp85
        kind: imperfect                   # a free-running GCM: distributions and climate-change signal only
        predictors: {tas: ..., pr: ...}
        target: {tas: ..., pr: ...}
        scenario: rcp85
        period: {season: DJF, years: [2081, 2100]}
        reference: {predictors: {...}, target: {...}, period: {season: DJF, years: [1983, 2002]}}
    metrics: [rmse, {type: index_bias, index: rx1day}, ...]

``predictors`` left out means the perfect-model predictors: the target upscaled onto the emulator's coarse grid
the way the emulator's recipe says (``data.upscale``).  ``reference`` adds climate-change-signal metrics (the
test period minus the reference period, for the emulator, the baselines and the truth alike).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from downscale.errors import closest
from downscale.recipe import (
    ConfigSection,
    Files,
    PeriodSpec,
    RootedConfig,
    files_as_lists,
    read_config,
)

__all__ = ["DEFAULT_METRICS", "EmulatorSpec", "EvaluateConfig", "ReferenceSpec", "TestCase", "load_evaluate_config"]

#: the metrics run when the config lists none
DEFAULT_METRICS: list[str | dict[str, Any]] = [
    "rmse",
    "temporal_correlation",
    "ralsd",
    {"type": "index_bias", "index": "mean"},
    {"type": "index_bias", "index": "quantile", "q": 0.99},
    {"type": "index_bias", "index": "quantile", "q": 0.01, "variables": ["tas"]},
    {"type": "index_bias", "index": "interannual_variability"},
    {"type": "index_bias", "index": "lag1_autocorrelation"},
    {"type": "index_bias", "index": "txx"},
    {"type": "index_bias", "index": "txn"},
    {"type": "index_bias", "index": "rx1day"},
    {"type": "index_bias", "index": "sdii"},
    {"type": "index_bias", "index": "cdd"},
    {"type": "index_bias", "index": "cwd"},
    {"type": "index_bias", "index": "wet_day_frequency"},
    {"type": "index_ratio", "index": "rx1day"},
    "spatial_correlation",
    "wasserstein",
    {"type": "wasserstein", "per_cell": True},
    "psd_distance",
    "pr_tas_correlation_bias",
    {"type": "cc_signal_error", "index": "mean"},
    {"type": "cc_signal_error", "index": "quantile", "q": 0.99},
    "crps",
    "rank_histogram_deviation",
]


class EmulatorSpec(ConfigSection):
    """An emulator bundle.  ``recipe``: the recipe it was trained from, whose training period fits the
    bias-corrected baseline (default: the copy stored in the bundle, its paths read relative to the config)."""

    name: str
    bundle: str
    recipe: str | None = None


class ReferenceSpec(ConfigSection):
    """The historical reference of a climate-change signal: its target, predictors, period and scenario."""

    target: dict[str, Files]
    predictors: dict[str, Files] | None = None
    period: PeriodSpec
    scenario: str = "historical"

    _lists = field_validator("target", "predictors", mode="before")(files_as_lists)


class TestCase(ConfigSection):
    """One test: predictors (files per variable, or None for the upscaled target), target files, period,
    ``perfect`` (day-matched: every metric) or ``imperfect`` (not day-matched: distributions and the
    climate-change signal only), domain label, the scenario of the forcings, and an optional reference."""

    name: str
    title: str | None = None
    kind: Literal["perfect", "imperfect"] = "perfect"
    emulators: list[str] | None = None
    domain: str | None = None
    target: dict[str, Files]
    predictors: dict[str, Files] | None = None
    period: PeriodSpec
    scenario: str = "historical"
    reference: ReferenceSpec | None = None
    note: str | None = None

    _lists = field_validator("target", "predictors", mode="before")(files_as_lists)

    @model_validator(mode="after")
    def _imperfect_needs_predictors(self) -> TestCase:
        if self.kind == "imperfect" and not self.predictors:
            raise ValueError("an imperfect test needs predictors (e.g. the GCM's files)")
        return self

    @property
    def label(self) -> str:
        return self.title or self.name


class EvaluateConfig(RootedConfig):
    """The whole evaluation: emulators, tests, baselines, metrics and options.

    ``members``: ensemble size drawn from stochastic emulators (ensemble metrics, and the ensemble-mean
    estimate); ``season``: the season indices are computed on (None: every day of the period);
    ``mlflow``: a tracking URI to log every metric and figure to (the ``mlflow`` extra)."""

    name: str = "evaluation"
    description: str | None = None
    emulators: list[EmulatorSpec] = Field(min_length=1)
    tests: list[TestCase] = Field(min_length=1)
    baselines: list[str] = Field(default_factory=lambda: ["bilinear", "bilinear_bc", "quantile_mapping"])
    metrics: list[str | dict[str, Any]] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    members: int = Field(8, ge=1)
    seed: int = 0
    figures: bool = True
    mlflow: str | None = None

    @model_validator(mode="after")
    def _names(self) -> EvaluateConfig:
        emulators = [e.name for e in self.emulators]
        for kind, names in (("emulator", emulators), ("test", [t.name for t in self.tests])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind} name '{dup[0]}' is used twice")
        for test in self.tests:
            for name in test.emulators or []:
                if name not in emulators:
                    near = closest(name, emulators)
                    raise ValueError(
                        f"test '{test.name}' names an unknown emulator '{name}' (valid: "
                        f"{', '.join(emulators)}{'; did you mean ' + repr(near) + '?' if near else ''})"
                    )
        return self


def load_evaluate_config(path: str | Path, overrides: list[str] | None = None) -> EvaluateConfig:
    """Read and validate an evaluation config; ``overrides`` are ``KEY=VALUE`` with dotted keys.

    Every metric entry is checked here too, so a typo fails before any data is read."""
    from downscale.evaluate.metric_registry import create_metric

    path = Path(path)
    config = read_config(path, EvaluateConfig, "evaluation config", overrides, noun="key")
    for entry in config.metrics:
        create_metric(entry, where=str(path))
    from downscale.skill.baselines import BASELINES

    for name in config.baselines:
        if name not in BASELINES:
            from downscale.errors import UnknownNameError

            raise UnknownNameError("baseline", name, BASELINES.names(), file=str(path))
    return config
