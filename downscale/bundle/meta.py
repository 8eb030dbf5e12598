"""The typed metadata of an emulator bundle (``bundle.json``): written and read here, and nowhere else.

:class:`BundleMeta` is a pydantic model with ``extra="forbid"``: a ``bundle.json`` whose content does not
validate is refused with one line (:func:`parse_meta`), not discovered later as a ``KeyError``.  What inference
needs is typed (variables with units and kind, grids, normaliser, model, heads, postprocessing, the defaults of
``apply``); provenance, lineage and scores are records for people and stay JSON objects.  The recipe is kept
for provenance only: nothing reads its settings back from the bundle (``heads``, ``regrid`` and ``apply`` carry
them, validated by the recipe's own section classes, so their defaults live in one place).

Format history:

* 1 -- the first format: the heads, the regrid method and the apply defaults were read from ``recipe``;
  :func:`parse_meta` still reads it (the values are taken from the recipe it holds).
* 2 -- ``heads``, ``regrid``, ``upscale`` and ``apply`` are fields of their own.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, ValidationError

from downscale.data.grids import Grid
from downscale.data.normalise import Normaliser
from downscale.data.variables import Kind, get_spec, parse_level_name
from downscale.errors import BundleError
from downscale.recipe import ApplySection, LossSection

__all__ = [
    "FORMAT_VERSION",
    "BundleMeta",
    "GridsMeta",
    "Manifest",
    "ModelMeta",
    "TrainingMeta",
    "VariableMeta",
    "WetDayMeta",
    "parse_meta",
]

#: The format this code writes; it reads this one and every older one.
FORMAT_VERSION = 2


class _Meta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class VariableMeta(_Meta):
    """A predictor, target or static field: canonical name, units and CF standard name."""

    name: str
    units: str
    standard_name: str
    plev_hPa: int | None = None
    plausible: tuple[float, float]

    @classmethod
    def of(cls, name: str) -> VariableMeta:
        """The record of canonical variable ``name`` (``ta850``: the spec of ``ta`` at 850 hPa)."""
        spec = get_spec(name)
        _, level = parse_level_name(name)
        return cls(
            name=name, units=spec.units, standard_name=spec.standard_name, plev_hPa=level, plausible=spec.plausible
        )

    @property
    def kind(self) -> Kind:
        return get_spec(self.name).kind

    @property
    def non_negative(self) -> bool:
        return self.plausible[0] == 0.0


class GridsMeta(_Meta):
    coarse: dict[str, Any]  # Grid.to_dict()
    fine: dict[str, Any]


class ModelMeta(_Meta):
    """How to rebuild the backbone: registry name, options, and the sizes it was built with."""

    type: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    n_forcings: int = Field(ge=0)
    out_channels: int = Field(ge=1)
    parameters: int | None = None


class WetDayMeta(_Meta):
    """Wet-day frequency adaptation (array ``wet_day_threshold``, one map per variable)."""

    variables: list[str]
    wet_day_threshold_mm_day: float
    fitted_on_days: int | None = None
    method: str | None = None


class PostprocessMeta(_Meta):
    wet_day_adaptation: WetDayMeta | None = None


class TrainingMeta(_Meta):
    best_epoch: int = 0
    best_val_loss: float | None = None
    epochs_run: int = 0
    stopped_early: bool = False
    optimizer_state: dict[str, Any] | None = None


class BundleMeta(_Meta):
    """Everything ``bundle.json`` holds (see the module docstring)."""

    format_version: int = FORMAT_VERSION
    name: str = "emulator"
    framework: str
    predictors: list[VariableMeta]
    targets: list[VariableMeta]
    static: list[VariableMeta] = Field(default_factory=list)
    forcings: list[str] = Field(default_factory=list)  # the recipe's forcing groups (e.g. "season", "ghg")
    forcing_names: list[str] = Field(default_factory=list)  # one per forcing input of the model
    scenario: str = "historical"
    domain: str | None = None  # the domain name of output files (CORDEX); None: derived from the target files
    grids: GridsMeta
    normaliser: dict[str, Any]  # Normaliser.to_dict()
    model: ModelMeta
    heads: LossSection  # how the heads are rebuilt (the recipe's loss section)
    loss: dict[str, Any] = Field(default_factory=dict)  # Criterion.describe(), for people
    regrid: str = "bilinear"  # method for inputs on another grid than the coarse one (the recipe's data.regrid)
    upscale: str = "area_mean"  # perfect model: how the targets were upscaled to the predictors (data.upscale)
    frequency: str = "day"  # of the training data and of the inputs apply takes (format 1 bundles: daily)
    pairing: dict[str, Any] | None = None  # how predictors and targets were paired in time (PairedData.pairing)
    # target -> the predictor its baselines interpolate (skill.baselines.baseline_predictors of the recipe's
    # ``baselines:``); a target without one has no baseline rows, with a note.  Format-1 bundles: same-name rule
    baselines: dict[str, str] | None = None
    # the longitude (degrees east) of the local_time_of_day forcing: the training domain centre's
    forcing_longitude: float | None = None
    apply: ApplySection = Field(default_factory=ApplySection)  # defaults of `downscale apply`
    postprocess: PostprocessMeta = Field(default_factory=PostprocessMeta)
    training: TrainingMeta = Field(default_factory=TrainingMeta)
    provenance: dict[str, Any] = Field(default_factory=dict)
    lineage: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    recipe: dict[str, Any] = Field(default_factory=dict)  # provenance only

    # -- what the runtime asks -------------------------------------------------------------------------
    @property
    def predictor_names(self) -> list[str]:
        return [v.name for v in self.predictors]

    @property
    def target_names(self) -> list[str]:
        return [v.name for v in self.targets]

    @property
    def static_names(self) -> list[str]:
        return [v.name for v in self.static]

    def coarse_grid(self) -> Grid:
        return Grid.from_dict(self.grids.coarse)

    def fine_grid(self) -> Grid:
        return Grid.from_dict(self.grids.fine)

    def make_normaliser(self) -> Normaliser:
        return Normaliser.from_dict(self.normaliser)

    @property
    def periods(self) -> dict[str, str]:
        return dict(self.provenance.get("periods", {}))

    @property
    def source_files(self) -> list[str]:
        return [str(f) for f in self.provenance.get("files", [])]

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: the settings that were read from the recipe become fields of their own."""
    recipe = data.get("recipe") or {}
    out = dict(data)
    out.setdefault("heads", recipe.get("loss") or {})
    out.setdefault("regrid", (recipe.get("data") or {}).get("regrid", "bilinear"))
    out.setdefault("upscale", (recipe.get("data") or {}).get("upscale", "area_mean"))
    out.setdefault("apply", recipe.get("apply") or {})
    out["format_version"] = FORMAT_VERSION
    return out


def parse_meta(data: Any, *, file: Any = None) -> BundleMeta:
    """The :class:`BundleMeta` of a ``bundle.json`` object, or a one-line :class:`BundleError` naming the field."""
    from downscale import __version__

    if not isinstance(data, dict):
        raise BundleError(
            "bundle metadata is not a JSON object", file=file, found=type(data).__name__, fix="re-create the bundle"
        )
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise BundleError(
            "bundle was written by a newer downscale",
            file=file,
            found=f"format version {version}",
            expected=f"format version <= {FORMAT_VERSION} (downscale {__version__})",
            fix="upgrade downscale",
        )
    if version < 1:
        raise BundleError(
            "bundle format version is not one this code reads",
            file=file,
            found=f"format version {version}",
            expected=f"1 to {FORMAT_VERSION}",
            fix="re-create the bundle with 'downscale train'",
        )
    if version == 1:
        data = _upgrade_v1(data)
    try:
        return BundleMeta.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise BundleError(
            f"bundle metadata does not validate: '{where}': {first['msg']}",
            file=file,
            fix="re-create the bundle with 'downscale train' (bundle.json must not be edited by hand)",
        ) from None


#: the files every bundle has (the optimiser state is optional)
REQUIRED_FILES = ("bundle.json", "weights.safetensors", "arrays.safetensors")

_FileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")]
_Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Manifest(RootModel[dict[_FileName, _Sha256]]):
    """``MANIFEST.json``: file name (in the bundle folder) -> sha256; the bundle id is the hash of this file."""

    @property
    def files(self) -> dict[str, str]:
        return dict(self.root)


def parse_manifest(data: Any, *, file: Any = None) -> Manifest:
    """The :class:`Manifest` of a ``MANIFEST.json`` object, or a one-line :class:`BundleError`."""
    fix = "use an unmodified copy of the bundle, or re-create it with 'downscale train'"
    if not isinstance(data, dict):
        raise BundleError(
            "bundle manifest is not a mapping of file names to checksums",
            file=file,
            found=f"a JSON {type(data).__name__}",
            expected='{"bundle.json": "<sha256>", ...}',
            fix=fix,
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise BundleError(
            f"bundle manifest does not validate: '{where}': {first['msg']}",
            file=file,
            expected="file names mapped to sha256 hex digests",
            fix=fix,
        ) from None
    missing = [n for n in REQUIRED_FILES if n not in manifest.root]
    if missing:
        raise BundleError(
            f"bundle manifest has no entry for {', '.join(missing)}",
            file=file,
            found=", ".join(sorted(manifest.root)) or "no entries",
            expected=", ".join(REQUIRED_FILES),
            fix=fix,
        )
    return manifest
