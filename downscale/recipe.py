"""Recipes: one YAML file describes a whole experiment, read top to bottom.

Sections: ``name``, ``framework``, ``data``, ``model``, ``loss``, ``train`` and the
optional ``transfer``, ``apply`` and ``evaluate``.  Every section is a pydantic model
with ``extra="forbid"``: an unknown key is an error that names the key and the
closest valid one.  File patterns are relative to the recipe's own folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from downscale.errors import RecipeError, closest

if TYPE_CHECKING:
    from downscale.data.calendar import Period

__all__ = [
    "DataSection",
    "LossSection",
    "ModelSection",
    "PeriodSpec",
    "Recipe",
    "ShotsSpec",
    "SourceSpec",
    "TrainSection",
    "TransferSection",
    "load_recipe",
]


class ConfigSection(BaseModel):
    """A section of a YAML config (recipe, evaluation config): unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Files = list[str]


def files_as_lists(value: object) -> object:
    """``{var: "a.nc"}`` -> ``{var: ["a.nc"]}``: one file, glob or folder, or a list of them, per variable."""
    if isinstance(value, dict):
        return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
    return value


class RootedConfig(ConfigSection):
    """A whole config read from a file: ``root`` is its folder, against which file patterns resolve."""

    root: str = Field(default=".", exclude=True)

    def resolve(self, pattern: str) -> str:
        path = Path(pattern).expanduser()
        if path.is_absolute():
            return str(path)
        return os.path.normpath(Path(self.root) / path)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"root"})


class PeriodSpec(ConfigSection):
    """A period: season years (``years: [1983, 1997]``), a season and/or dates."""

    years: tuple[int, int] | None = None
    season: str | None = None
    start: str | None = None  # YYYY-MM-DD (the whole day) or YYYY-MM-DDTHH:MM
    end: str | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        """Unquoted YAML dates and stamps (``2001-01-01``, ``2001-01-01T06:00:00``) arrive as date/datetime."""
        import datetime as dt

        if isinstance(value, dt.datetime):
            return value.strftime("%Y-%m-%dT%H:%M") + (f":{value.second:02d}" if value.second else "")
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    def to_period(self) -> Period:
        from downscale.data.calendar import Period

        return Period(years=self.years, season=self.season, start=self.start, end=self.end)

    def describe(self) -> str:
        return self.to_period().describe()


class Periods(ConfigSection):
    train: PeriodSpec
    validation: PeriodSpec | None = None
    test: PeriodSpec | None = None


class ShotsSpec(ConfigSection):
    """Few-shot training: ``days`` (or whole ``winters``) drawn reproducibly (``seed``) from
    ``periods.train``, stratified by ``season`` (by month when the data hold one season only),
    ``month`` or ``none``.  ``validation`` is the fraction of the k-shot set held out for early
    stopping; the test period is never touched.  ``days: 0`` is zero-shot (no training)."""

    days: int | None = Field(default=None, ge=0)
    winters: int | None = Field(default=None, ge=1)
    seed: int = 0
    stratify: Literal["season", "month", "none"] = "season"
    validation: float = Field(default=0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _one_size(self) -> ShotsSpec:
        if (self.days is None) == (self.winters is None):
            raise ValueError("give exactly one of shots.days and shots.winters")
        return self


class DataSection(ConfigSection):
    """Where the data comes from and how it is paired.

    ``targets`` and ``predictors`` map a variable name (``tas``, ``pr``, ``ta850``)
    to one or more files/globs/directories.  In the ``perfect_model`` framework the
    predictors are fine-grid RCM fields upscaled onto ``coarse_grid`` (default:
    the targets themselves); in the ``emulator`` framework they are GCM or
    reanalysis fields regridded onto ``coarse_grid`` and paired by date.
    """

    targets: dict[str, Files]
    predictors: dict[str, Files] = Field(default_factory=dict)
    coarse_grid: str | None = None
    upscale: str = "area_mean"
    regrid: str = "bilinear"
    static: dict[str, Files] = Field(default_factory=dict)
    static_from_grid: list[Literal["lat", "lon"]] = Field(default_factory=list)
    static_regrid: str | None = None  # e.g. area_mean: static files on another grid are regridded onto the targets'
    # targets whose per-cell mean over the training days (validation excluded) becomes a static field "<name>_clim"
    static_climatology: list[str] = Field(default_factory=list)
    forcings: list[str] = Field(default_factory=lambda: ["season"])
    scenario: str = "historical"
    periods: Periods
    shots: ShotsSpec | None = None  # few-shot: train on k days / k winters drawn from periods.train
    cache: str | None = None
    # implausible input values (e.g. tas in degC labelled K, negative pr): raise (the default of
    # downscale.set_options), warn or off; None: the process-wide setting
    plausibility: Literal["raise", "warn", "off"] | None = None

    _lists = field_validator("targets", "predictors", "static", mode="before")(files_as_lists)

    @model_validator(mode="after")
    def _climatology_of_targets(self) -> DataSection:
        unknown = [n for n in self.static_climatology if n not in self.targets]
        if unknown:
            raise ValueError(
                f"static_climatology lists {', '.join(unknown)}, which is not a target (targets: {', '.join(self.targets)})"
            )
        return self


class ModelSection(BaseModel):
    """``type`` is a registry name; every other key is passed to the model."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LossSection(ConfigSection):
    """``type`` is the loss of every target; ``variables`` overrides it per variable
    (e.g. ``{pr: bernoulli_gamma}``); ``params`` holds per-loss options
    (e.g. ``{asymmetric: {gamma_shape: ...}}``); ``members`` is the ensemble size drawn
    per training sample by losses that need an ensemble (CRPS)."""

    type: str = "mse"
    variables: dict[str, str] = Field(default_factory=dict)
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    members: int = Field(default=2, ge=1)


class TrainSection(ConfigSection):
    """Training settings.  ``batch_size`` is the global batch (split over DDP ranks);
    ``accumulate`` micro-batches make one optimiser step; ``amp`` is ``auto`` (bf16 on
    GPUs that support it, off on CPU), ``bf16``, ``fp16`` or ``off``; ``checkpoint_every``
    writes a resumable checkpoint every N optimiser steps (and at each epoch end);
    ``save_optimizer`` stores the optimiser's state after the last epoch in the bundle, so that
    ``downscale transfer`` with ``loading: resume`` continues with it;
    ``mlflow`` is a tracking URI (e.g. ``file:./mlruns``) or None."""

    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=32, ge=1)
    accumulate: int = Field(default=1, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Literal["constant", "cosine", "onecycle"] = "cosine"
    warmup: float = Field(default=0.02, ge=0, lt=1)
    patience: int | None = Field(default=None, ge=1)
    seed: int = 0
    device: str = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    num_workers: int = Field(default=0, ge=0)
    threads: int | None = Field(default=None, ge=1)
    checkpoint_every: int | None = Field(default=None, ge=1)
    save_optimizer: bool = False  # store the optimiser's state in the bundle (for transfer loading: resume)
    mlflow: str | None = None
    grad_clip: float | None = Field(default=None, gt=0)
    # wet-day frequency adaptation: per-cell thresholds, fitted on the training days after training,
    # below which these (precipitation) targets are set to 0, so that the emulator's frequency of
    # days >= wet_day_threshold (mm/day) matches the truth's there (see downscale/train/calibration.py)
    wet_day_adaptation: list[str] = Field(default_factory=list)
    wet_day_threshold: float = Field(default=1.0, gt=0)


class SourceSpec(ConfigSection):
    """Another pair or domain mixed into training: a recipe file (its ``data`` and ``framework``) and
    its sampling weight.  Each source keeps its own normaliser; every batch comes from one source."""

    recipe: str
    weight: float = Field(default=1.0, gt=0)
    set: list[str] = Field(default_factory=list)  # overrides of that recipe, e.g. ["data.shots.days=90"]


class LoRASpec(ConfigSection):
    """Low-rank adapters on the convolutions/linear layers under ``modules`` (names or globs); the
    pretrained weights there are frozen and the updates merged into them when training ends."""

    modules: list[str]
    rank: int = Field(default=4, ge=1)
    alpha: float = Field(default=4.0, gt=0)


class TransferSection(ConfigSection):
    """How ``downscale transfer`` reuses a pretrained bundle (see ``downscale.transfer``).

    ``loading``: ``weights_only`` (every tensor of the bundle whose name the new model has; a shape
    mismatch is an error), ``shape_filtered`` (tensors whose name and shape match; the others are
    skipped and reported) or ``resume`` (the same model, variables and normaliser, trained further).
    Modifiers: ``adapt_input`` maps the input channels by predictor/static name when they change
    (new ones start at ``new_channel_init``, 0 = zero); ``reset_head`` (``auto``: keep the output rows of
    the targets the bundle has, re-initialise the others; ``always``; ``never``); ``freeze``: module
    names or globs; ``lr_scale``: {module name or glob: factor of train.lr}; ``anchor``: strength of the
    decay of every trained weight towards the parent's (L2-SP, in the units of AdamW's weight decay;
    0: off).  ``normaliser``: ``parent``
    keeps the bundle's statistics for the variables it has, ``refit`` fits all on the new training days.
    ``sources`` (with ``weight``, the sampling weight of this recipe's own data) mixes other pairs or
    domains into training; it works with ``downscale train`` too (multi-source pretraining).
    ``lora`` adds low-rank adapters (see ``downscale.transfer.lora``)."""

    loading: Literal["weights_only", "shape_filtered", "resume"] = "shape_filtered"
    adapt_input: bool = False
    new_channel_init: float = Field(default=0.0, ge=0)
    reset_head: Literal["auto", "always", "never"] = "auto"
    freeze: list[str] = Field(default_factory=list)
    lr_scale: dict[str, float] = Field(default_factory=dict)
    anchor: float = Field(default=0.0, ge=0)
    normaliser: Literal["parent", "refit"] = "parent"
    lora: LoRASpec | None = None
    sources: list[SourceSpec] = Field(default_factory=list)
    weight: float = Field(default=1.0, gt=0)


class ApplySection(ConfigSection):
    chunk_days: int = Field(default=365, ge=1)
    halo: float | None = Field(default=None, ge=0)  # degrees around the domain read from inputs; None: 2 coarse cells


class Recipe(RootedConfig):
    name: str
    framework: Literal["emulator", "perfect_model"]
    data: DataSection
    model: ModelSection
    loss: LossSection = LossSection()
    train: TrainSection = TrainSection()
    apply: ApplySection = ApplySection()
    transfer: TransferSection | None = None
    evaluate: dict[str, Any] | None = None
    # target -> the predictor its baselines (bilinear, bilinear_bc) interpolate, e.g. {tas: tasmin}; a target not
    # listed takes the predictor of its name, else one with its CF standard name (downscale.skill.baselines)
    baselines: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _baselines_of_targets_from_predictors(self) -> Recipe:
        predictors = list(self.data.predictors or self.data.targets)  # perfect model: the targets upscaled
        for target, predictor in self.baselines.items():
            if target not in self.data.targets:
                raise ValueError(
                    f"baselines lists {target}, which is not a target (targets: {', '.join(self.data.targets)})"
                )
            if predictor not in predictors:
                raise ValueError(
                    f"baselines: {target}: {predictor} is not a predictor (predictors: {', '.join(predictors)})"
                )
            from downscale.data.variables import get_spec

            units = get_spec(target).units, get_spec(predictor).units
            if units[0] != units[1]:
                raise ValueError(
                    f"baselines: {target}: {predictor} is in {units[1]}, {target} in {units[0]}: "
                    "a baseline interpolates a predictor in the target's units"
                )
        return self

    @model_validator(mode="after")
    def _wet_day_adaptation_of_precipitation(self) -> Recipe:
        from downscale.data.variables import get_spec

        for name in self.train.wet_day_adaptation:
            if name not in self.data.targets:
                raise ValueError(
                    f"train.wet_day_adaptation lists {name}, which is not a target "
                    f"(targets: {', '.join(self.data.targets)})"
                )
            if get_spec(name).kind != "precipitation":
                raise ValueError(f"train.wet_day_adaptation applies to precipitation only, not {name}")
        return self


def _section_model(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model of the section that holds the key at ``loc`` (list indices are stepped over)."""
    model: object = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = field.annotation
        # unwrap Optional[...] / X | None / list[X]
        args = getattr(model, "__args__", None)
        if args:
            model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model
    return None


def explain_validation_error(
    err: ValidationError, file: str, root: type[BaseModel], noun: str = "recipe key"
) -> RecipeError:
    """The first pydantic error as one line naming the key, the file and the fix."""
    first = err.errors()[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        section = _section_model(root, loc)
        valid = [v for v in sorted(section.model_fields) if v != "root"] if section else []
        near = closest(str(loc[-1]), valid)
        return RecipeError(
            f"unknown {noun} '{where}'",
            file=file,
            expected=f"one of {', '.join(valid)}" if valid else None,
            fix=f"did you mean '{near}'?" if near else "remove it",
        )
    if first["type"] == "missing":
        return RecipeError(f"missing {noun} '{where}'", file=file, fix=f"add '{loc[-1]}'")
    msg = str(first["msg"]).removeprefix("Value error, ")
    return RecipeError(f"invalid value for '{where}': {msg}", file=file, found=repr(first.get("input"))[:80])


_Config = TypeVar("_Config", bound=RootedConfig)


def read_config(
    path: Path, model: type[_Config], what: str, overrides: list[str] | None, noun: str = "recipe key"
) -> _Config:
    """Read a YAML config file into ``model``: one-line errors for a missing file, bad YAML, a value
    that is not a mapping, bad overrides (``KEY=VALUE``, dotted keys) and invalid keys or values."""
    if not path.is_file():
        raise RecipeError(f"{what} not found", file=path, fix="check the path")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RecipeError(f"not valid YAML{where}", file=path, fix="fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"a {what} must be a YAML mapping", file=path, found=type(raw).__name__)
    raw = apply_overrides(raw, list(overrides or []), str(path))
    if "root" in raw:
        raise RecipeError(f"unknown {noun} 'root'", file=path, fix="remove it")
    try:
        return model.model_validate({**raw, "root": str(path.resolve().parent)})
    except ValidationError as err:
        raise explain_validation_error(err, str(path), model, noun) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str], file: str) -> dict[str, Any]:
    """``["train.epochs=8", "model.width=16"]`` set dotted keys; values are read as YAML."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"override '{item}' is not KEY=VALUE", file=file, fix="write e.g. --set train.epochs=8")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise RecipeError(
                f"override '{item}' has an invalid value", file=file, fix="quote strings, e.g. key='a b'"
            ) from None
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override '{item}': '{part}' is not a section", file=file)
        node[parts[-1]] = value
    return raw


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read and validate a recipe file; ``overrides`` (``KEY=VALUE``, dotted keys) are applied first."""
    return read_config(Path(path), Recipe, "recipe file", overrides)


def recipe_from_dict(data: dict[str, Any], root: str | Path = ".") -> Recipe:
    """Build a recipe from a dictionary (e.g. the copy stored in a bundle)."""
    try:
        return Recipe.model_validate({**data, "root": str(root)})
    except ValidationError as err:
        raise explain_validation_error(err, "<recipe>", Recipe) from None
