"""The metric registry: every diagnostic that ``downscale evaluate`` can run, by name, plus third-party ones.

A metric is a pure function plus a little metadata (:class:`Metric`): what it needs (``needs``), which way is
better, the units of its result and which variables it applies to.  A YAML config names metrics as a string
or as a mapping with options::

    metrics:
      - rmse
      - {type: index_bias, index: quantile, q: 0.99}
      - {type: index_bias, index: su, thresh: 25 degC, name: su_bias}
      - {type: wasserstein, per_cell: true}
      - {type: index_bias, index: quantile, q: 0.01, variables: [tas]}

``name`` sets the label in the tables; ``variables`` restricts a metric to some variables; ``daily: true``
scores the metric on daily aggregates (:func:`downscale.evaluate.indices.to_daily`: daily means, so a
precipitation flux stays a mean rate) of sub-daily fields -- e.g. ``{type: rmse, daily: true}`` on hourly data
(the ``daily`` indices such as rx1day aggregate by themselves).

**Sub-daily metrics.**  ``frequency: subdaily`` (of a metric, or of the index it reads) marks what needs
several steps a day -- the diurnal cycle, the mean daily maximum.  On daily data such a metric is skipped and
:meth:`MetricCall.skip_reason` says why (the evaluation report lists it as a note)::

    metrics:
      - diurnal_amplitude_abs_bias
      - {type: diurnal_phase_error, method: harmonic}
      - p999_abs_bias
      - daily_max_bias
      - {type: index_bias, index: rx1day}   # on daily totals of an hourly field
:func:`create_metric` turns one such entry into a :class:`MetricCall` (checked at once: unknown names list the
valid ones and suggest the closest).

**Third-party metrics** plug in through the ``downscale.metrics`` entry-point group, found lazily (the first
time a name is looked up)::

    # pyproject.toml of another package
    [project.entry-points."downscale.metrics"]
    my_score = "my_package.scores:my_score"

The object is either a :class:`Metric` or a plain function ``f(pred, truth, mask=None, **options) -> float``
(then a day-matched metric where lower is better, in the variable's units).

``needs`` says what a metric is computed on and therefore which tests can score it:

* ``paired``: day-matched pred and truth ``(time, y, x)`` -- perfect tests only;
* ``distribution``: pred and truth fields whose days need not match -- every test;
* ``multivariate``: dicts ``{variable: field}`` of pred and of truth, days need not match -- every test;
* ``signal``: pred and truth of a historical reference and of the test period (a climate-change signal);
* ``ensemble``: an ensemble ``(member, time, y, x)`` and the day-matched truth -- perfect tests of stochastic
  emulators.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from downscale.errors import RecipeError, UnknownNameError, closest
from downscale.evaluate import diagnostics as D
from downscale.evaluate.indices import DAY_SECONDS, INDICES, to_daily
from downscale.registry import Registry
from downscale.skill import metrics as M

__all__ = [
    "ENTRY_POINT_GROUP",
    "METRICS",
    "NEEDS",
    "Metric",
    "MetricCall",
    "create_metric",
    "get_metric",
    "load_entry_points",
    "metric_names",
    "register_metric",
    "variable_kind",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "downscale.metrics"
NEEDS: tuple[str, ...] = ("paired", "distribution", "multivariate", "signal", "ensemble")
BETTER: tuple[str, ...] = ("lower", "higher", "one")


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    ``units``: ``input`` (the variable's units as scored: K, mm day-1), ``index`` (the units of the ``index``
    option's result) or fixed units (``dB``, ``1``).  ``better``: ``lower``, ``higher`` or ``one`` (closest
    to 1).  ``applies_to``: ``any``, ``temperature`` or ``precipitation`` (``index``-based metrics take the
    index's).  ``estimate``: scored on the emulator's ensemble-mean estimate (point scores such as RMSE) rather
    than on one realisation (distributions, spectra).  ``deterministic`` (ensemble metrics): deterministic
    methods (the baselines, a deterministic emulator) are scored too, as one-member ensembles (CRPS is then
    the mean absolute error).  ``frequency``: ``any``, or ``subdaily`` for a metric that needs several steps
    a day (a diurnal cycle): skipped, with a reason, on daily data."""

    name: str
    func: Callable[..., float]
    needs: str = "paired"
    better: str = "lower"
    units: str = "input"
    applies_to: str = "any"
    estimate: bool = False
    deterministic: bool = False  # ensemble metrics: also score deterministic methods as one-member ensembles
    suffix: str | None = None  # label suffix for index-based metrics: '{index}_{suffix}'
    description: str = ""
    frequency: str = "any"  # 'subdaily': needs several steps a day (skipped on daily data)

    def __post_init__(self) -> None:
        if self.frequency not in ("any", "subdaily"):
            raise ValueError(f"metric {self.name}: frequency must be 'any' or 'subdaily', not {self.frequency!r}")
        if self.needs not in NEEDS:
            raise ValueError(f"metric {self.name}: needs must be one of {NEEDS}, not {self.needs!r}")
        if self.better not in BETTER:
            raise ValueError(f"metric {self.name}: better must be one of {BETTER}, not {self.better!r}")


METRICS: Registry[Metric] = Registry("metric")
_ENTRY_POINTS_LOADED = False


def register_metric(name: str, **meta: Any) -> Callable[[Callable], Callable]:
    """Decorator: register ``func`` as metric ``name`` (keyword arguments: the :class:`Metric` fields)."""

    def deco(func: Callable) -> Callable:
        doc = (func.__doc__ or "").strip().splitlines()
        METRICS.register(name)(Metric(name, func, description=meta.pop("description", doc[0] if doc else ""), **meta))
        return func

    return deco


def load_entry_points(*, force: bool = False) -> list[str]:
    """Register the metrics of the ``downscale.metrics`` entry points (once; ``force`` looks again)."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED and not force:
        return []
    _ENTRY_POINTS_LOADED = True
    added = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in METRICS:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plug-in must not break the built-in metrics
            logger.warning("metric plug-in '%s' (%s) could not be loaded: %s", ep.name, ep.value, exc)
            continue
        if not isinstance(obj, Metric):
            if not callable(obj):
                logger.warning("metric plug-in '%s' (%s) is neither a Metric nor callable", ep.name, ep.value)
                continue
            doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
            obj = Metric(ep.name, obj, description=doc[0] if doc else f"plug-in {ep.value}")
        METRICS.register(ep.name)(obj)
        added.append(ep.name)
    if added:
        logger.info("metric plug-ins registered: %s", ", ".join(added))
    return added


def get_metric(name: str) -> Metric:
    """The metric registered as ``name`` (built-in or plug-in)."""
    load_entry_points()
    return METRICS.get(name)


def metric_names() -> list[str]:
    load_entry_points()
    return METRICS.names()


def variable_kind(units: str) -> str:
    """``temperature``, ``precipitation`` (:func:`downscale.data.units.kind_from_units`) or ``other``: what
    ``applies_to`` is matched against."""
    from downscale.data.units import kind_from_units

    return kind_from_units(units) or "other"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "".join(str(value).split())


def _index_label(params: dict[str, Any]) -> str:
    index = params.get("index", "mean")
    extra = {k: v for k, v in params.items() if k not in ("index", "per_cell", "daily")}
    if index == "quantile":
        q = float(extra.pop("q", 0.99))
        label = f"q{100 * q:g}".replace(".", "_")
    else:
        label = index
    for key, value in sorted(extra.items()):
        label += f"_{value}" if key in ("season",) else f"_{key}{_fmt(value)}"
    return label


@dataclass(frozen=True)
class MetricCall:
    """One configured metric: a registered :class:`Metric`, its options and the label it has in tables."""

    label: str
    metric: Metric
    params: dict[str, Any] = field(default_factory=dict)
    variables: tuple[str, ...] | None = None  # only these variables (None: every variable it applies to)
    daily: bool = False  # scored on daily aggregates (to_daily) of the fields

    @property
    def needs(self) -> str:
        return self.metric.needs

    @property
    def better(self) -> str:
        return self.metric.better

    @property
    def index(self) -> str | None:
        return self.params.get("index", "mean") if self.metric.units == "index" or self.metric.suffix else None

    def applies_to(self, kind: str) -> bool:
        """Whether the metric applies to a variable of ``kind`` (see :func:`variable_kind`)."""
        target = INDICES.get(self.index).applies_to if self.index else self.metric.applies_to
        return target == "any" or target == kind

    @property
    def frequency(self) -> str:
        """``subdaily`` when the metric or its index needs several steps a day, ``daily`` when its index is
        defined on days, else ``any`` (see :attr:`downscale.evaluate.indices.IndexSpec.frequency`)."""
        if self.metric.frequency == "subdaily":
            return "subdaily"
        return INDICES.get(self.index).frequency if self.index else "any"

    def skip_reason(self, step_seconds: float | None) -> str | None:
        """Why the metric cannot score fields of native step ``step_seconds`` (None: fewer than two steps), or
        None when it can: a sub-daily metric on daily (or coarser) data, or scored on daily aggregates."""
        if self.frequency != "subdaily":
            return None
        what = f"index '{self.index}'" if self.index and self.metric.frequency != "subdaily" else "it"
        if self.daily:
            return f"{what} needs sub-daily data, and daily: true scores daily aggregates"
        if step_seconds is None:
            return f"{what} needs sub-daily data, and the field has fewer than two time steps"
        if step_seconds >= DAY_SECONDS - 1.0:
            return f"{what} needs sub-daily data (several steps a day), and the time step is {_describe_step(step_seconds)}"
        return None

    def units(self, input_units: str) -> str:
        if self.metric.units == "input":
            return input_units
        if self.metric.units == "index":
            return INDICES.get(self.index or "mean").result_units(input_units)
        return self.metric.units

    def __call__(self, *args: Any, **kwargs: Any) -> float:
        if self.daily:
            args = tuple(_as_daily(a) for a in args)
        value = self.metric.func(*args, **{**self.params, **kwargs})
        value = float(value)
        return value if math.isfinite(value) else float("nan")


def _describe_step(seconds: float) -> str:
    if seconds % DAY_SECONDS == 0:
        n = int(seconds // DAY_SECONDS)
        return "1 day" if n == 1 else f"{n} days"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    return f"{seconds:g} s"


def _as_daily(arg: Any) -> Any:
    """A metric argument on daily aggregates: a field with a ``time`` dimension, or a dict of them."""
    if isinstance(arg, dict):
        return {k: _as_daily(v) for k, v in arg.items()}
    if hasattr(arg, "dims") and "time" in getattr(arg, "dims", ()):
        return to_daily(arg)
    return arg


def create_metric(spec: str | dict[str, Any], *, where: str | None = None) -> MetricCall:
    """A :class:`MetricCall` from a config entry: ``"rmse"`` or ``{type: index_bias, index: rx1day, name: ...}``.

    Unknown metric or index names and unknown options raise one-line errors naming the valid ones."""
    if isinstance(spec, str):
        spec = {"type": spec}
    spec = dict(spec)
    if "type" not in spec:
        raise RecipeError(
            "a metric entry needs a 'type'",
            file=where,
            found=repr(spec)[:80],
            fix="write e.g. {type: index_bias, index: rx1day}",
        )
    name = str(spec.pop("type"))
    label = spec.pop("name", None)
    variables = spec.pop("variables", None)
    if isinstance(variables, str):
        variables = [variables]
    daily = spec.pop("daily", False)
    if not isinstance(daily, bool):
        raise RecipeError(
            f"metric '{name}': daily must be true or false", file=where, found=repr(daily), fix="write daily: true"
        )
    try:
        metric = get_metric(name)
    except UnknownNameError:
        raise UnknownNameError("metric", name, METRICS.names(), file=where) from None
    if daily and metric.frequency == "subdaily":
        raise RecipeError(
            f"metric '{name}' needs sub-daily data and cannot be scored on daily aggregates",
            file=where,
            fix="remove daily: true",
        )
    params = spec
    accepted = inspect.signature(metric.func).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    positional = {"pred", "truth", "ens", "pred_hist", "pred_fut", "truth_hist", "truth_fut", "mask"}
    allowed = [p for p in accepted if p not in positional and accepted[p].kind is not inspect.Parameter.VAR_KEYWORD]
    if "index" in params or metric.units == "index" or metric.suffix:
        index = str(params.get("index", "mean"))
        spec_index = INDICES.get(index) if index in INDICES else None
        if spec_index is None:
            raise UnknownNameError("index", index, INDICES.names(), file=where)
        index_options = [p for p in inspect.signature(spec_index.func).parameters if p != "da"]
        allowed = sorted(set(allowed) | set(index_options))
        takes_kwargs = False
    unknown = [k for k in params if k not in allowed and not takes_kwargs]
    if unknown:
        near = closest(unknown[0], allowed)
        raise RecipeError(
            f"metric '{name}' has no option '{unknown[0]}'",
            file=where,
            expected=f"options among {', '.join(allowed) or '(none)'}",
            fix=f"did you mean '{near}'?" if near else "remove it",
        )
    if label is None:
        if metric.suffix:
            label = f"{_index_label(params)}_{metric.suffix}"
            if params.get("per_cell"):
                label += "_per_cell"
            if daily:
                label += "_daily"
        else:
            label = name + "".join(
                f"_{k}{_fmt(v)}" if not isinstance(v, bool) else (f"_{k}" if v else "")
                for k, v in sorted(params.items())
            )
            label += "_daily" if daily else ""
    return MetricCall(str(label), metric, params, tuple(variables) if variables else None, daily)


# --------------------------------------------------------------------------- built-in metrics
register_metric(
    "rmse", needs="paired", estimate=True, description="root-mean-square error over every valid (cell, day)"
)(M.rmse)
register_metric(
    "temporal_correlation",
    needs="paired",
    estimate=True,
    better="higher",
    units="1",
    description="mean over cells of the correlation in time of pred and truth",
)(M.temporal_correlation)
register_metric(
    "ralsd",
    needs="paired",
    units="dB",
    description="radially averaged log-spectral distance of each day, averaged (Harris et al. 2022)",
)(M.ralsd)
register_metric(
    "index_bias",
    needs="distribution",
    units="index",
    suffix="abs_bias",
    description="spatial mean of |bias| of the climatology of an index",
)(D.index_bias)
register_metric(
    "index_ratio",
    needs="distribution",
    units="1",
    better="one",
    suffix="ratio",
    description="spatial mean of the ratio of the climatologies of an index",
)(D.index_ratio)
register_metric(
    "spatial_correlation",
    needs="distribution",
    units="1",
    better="higher",
    suffix="spatial_corr",
    description="correlation across cells of the climatologies of an index (default: the mean)",
)(D.spatial_correlation_of_index)
register_metric(
    "wasserstein",
    needs="distribution",
    description="Wasserstein distance between the distributions, pooled or per cell",
)(D.wasserstein)
register_metric(
    "psd_distance",
    needs="distribution",
    units="dB",
    description="log-spectral distance between the time-mean radial spectra",
)(D.psd_distance)
register_metric(
    "pr_tas_correlation_bias",
    needs="multivariate",
    units="1",
    description="spatial mean of |bias| of the per-cell pr-tas correlation",
)(D.pr_tas_correlation_bias)
register_metric(
    "cc_signal_error",
    needs="signal",
    units="index",
    suffix="cc_signal_error",
    description="spatial mean of |error| of the climate-change signal of an index",
)(D.cc_signal_error)
register_metric(
    "crps",
    needs="ensemble",
    deterministic=True,
    description="continuous ranked probability score of the ensemble (a single field: its MAE)",
)(D.crps_ensemble)
register_metric(
    "rank_histogram_deviation",
    needs="ensemble",
    units="1",
    description="RMS relative departure of the rank histogram from flat",
)(D.rank_histogram_deviation)

# --------------------------------------------------------------------------- sub-daily metrics
register_metric(
    "diurnal_amplitude_abs_bias",
    needs="distribution",
    frequency="subdaily",
    description="spatial mean of |bias| of the amplitude (max - min) of the mean diurnal cycle",
)(M.diurnal_amplitude_abs_bias)
register_metric(
    "diurnal_phase_error",
    needs="distribution",
    frequency="subdaily",
    units="h",
    description="mean circular error (hours, wrapping at 24) of the hour of the diurnal maximum",
)(M.diurnal_phase_error)
register_metric(
    "p999_abs_bias",
    needs="distribution",
    description="spatial mean of |bias| of the per-cell 99.9th percentile over every step",
)(D.p999_abs_bias)
register_metric(
    "daily_max_bias",
    needs="distribution",
    frequency="subdaily",
    description="spatial mean of |bias| of the mean daily maximum (max per calendar day, then time mean)",
)(D.daily_max_bias)
