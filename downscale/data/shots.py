"""Few-shot subsets: k days or k winters of a training period, drawn reproducibly.

Days are stratified: the k days are shared among the seasons present in the
training period in proportion to their size (largest remainders), and drawn at
random inside each; when the data hold a single season (e.g. DJF only) the strata
are its months instead, so that a k-shot winter set still has Decembers, Januaries
and Februaries.  Winters are whole season years.  The validation days come out of
the k-shot set (stratified the same way), never from the test period.

The unit drawn is always a calendar day: with sub-daily data every step of a chosen day goes with it, into
training or into validation, so no hour of a validation day is trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from downscale.errors import DataError

if TYPE_CHECKING:
    from downscale.data.calendar import TimeLike
    from downscale.recipe import ShotsSpec

__all__ = ["ShotSelection", "select_shots"]

_SEASON_OF_MONTH = {
    12: "DJF",
    1: "DJF",
    2: "DJF",
    3: "MAM",
    4: "MAM",
    5: "MAM",
    6: "JJA",
    7: "JJA",
    8: "JJA",
    9: "SON",
    10: "SON",
    11: "SON",
}


@dataclass
class ShotSelection:
    train: np.ndarray  # time indices to train on
    validation: np.ndarray  # time indices held out of the k-shot set
    record: dict[str, Any] = field(default_factory=dict)  # stored in the bundle's lineage


def _strata(months: np.ndarray, how: str) -> tuple[np.ndarray, str]:
    if how == "none":
        return np.zeros(months.shape, int), "none"
    seasons = np.array([_SEASON_OF_MONTH[int(m)] for m in months])
    if how == "season" and len(set(seasons.tolist())) > 1:
        return np.unique(seasons, return_inverse=True)[1], "season"
    return np.unique(months, return_inverse=True)[1], "month"


def _allocate(sizes: np.ndarray, k: int) -> np.ndarray:
    """k shared in proportion to ``sizes`` by largest remainders (each stratum capped at its size)."""
    quota = sizes / sizes.sum() * k
    n = np.minimum(np.floor(quota).astype(int), sizes)
    for i in np.argsort(-(quota - np.floor(quota)), kind="stable"):
        if n.sum() >= k:
            break
        if n[i] < sizes[i]:
            n[i] += 1
    return n


def _stratified(rng: np.random.Generator, pool: np.ndarray, strata: np.ndarray, k: int) -> np.ndarray:
    labels = np.unique(strata)
    sizes = np.array([(strata == s).sum() for s in labels])
    picks = [
        rng.choice(pool[strata == s], size=n, replace=False) for s, n in zip(labels, _allocate(sizes, k), strict=True)
    ]
    return np.sort(np.concatenate(picks)) if picks else np.array([], int)


def select_shots(
    time: TimeLike, candidates: np.ndarray, spec: ShotsSpec, *, season: str | None = None
) -> ShotSelection:
    """Pick the k-shot set among ``candidates`` (time indices of the training period).

    ``spec`` is a :class:`~downscale.recipe.ShotsSpec`; ``time`` the paired time axis.
    """
    from downscale.data.calendar import _ymd, date_keys, season_year, time_values

    candidates = np.sort(np.asarray(candidates, int))
    all_values = time_values(time)
    values = all_values[candidates]
    # the unit drawn is a calendar day: each candidate step belongs to one day (one step per day in daily data)
    cand_keys = date_keys(values) if len(candidates) else np.array([], np.int64)
    day_keys, first_step, day_of = np.unique(cand_keys, return_index=True, return_inverse=True)
    _, months, _ = _ymd(values[first_step]) if len(candidates) else (None, np.array([], int), None)
    rng = np.random.default_rng(spec.seed)
    if spec.winters is not None:
        years = season_year(values, season or "DJF")
        available = np.unique(years)
        if spec.winters > len(available):
            raise DataError(
                f"shots.winters = {spec.winters} but the training period has {len(available)} season years",
                fix="lower data.shots.winters or widen data.periods.train",
            )
        chosen_years = np.sort(rng.choice(available, size=spec.winters, replace=False))
        chosen = candidates[np.isin(years, chosen_years)]
        size = f"{spec.winters} winter{'s' if spec.winters != 1 else ''} ({', '.join(str(y) for y in chosen_years)})"
    else:
        assert spec.days is not None  # ShotsSpec: exactly one of days and winters
        if spec.days > len(day_keys):
            raise DataError(
                f"shots.days = {spec.days} but the training period has {len(day_keys)} days",
                fix="lower data.shots.days or widen data.periods.train",
            )
        strata, how = _strata(months, spec.stratify)
        pos = _stratified(rng, np.arange(len(day_keys)), strata, spec.days)
        chosen = candidates[np.isin(day_of, pos)]  # every step of the chosen days
        size = f"{spec.days} days"
    # validation out of the k-shot set, by whole days, stratified the same way
    chosen_keys = date_keys(all_values[chosen]) if len(chosen) else np.array([], np.int64)
    c_days, c_first = np.unique(chosen_keys, return_index=True)
    n_val = round(spec.validation * len(c_days)) if len(c_days) >= 2 else 0
    n_val = min(n_val, len(c_days) - 1) if len(c_days) else 0
    _, cmonths, _ = _ymd(all_values[chosen][c_first]) if len(chosen) else (None, np.array([], int), None)
    strata, how = _strata(cmonths, spec.stratify)
    val_days = _stratified(np.random.default_rng((spec.seed, 1)), c_days, strata, n_val) if n_val else np.array([], int)
    val = chosen[np.isin(chosen_keys, val_days)]
    train = np.setdiff1d(chosen, val)
    val_keys = {int(k) for k in val_days}
    record = {
        "size": size,
        "seed": spec.seed,
        "stratified_by": how,
        "train_days": [_iso(k) for k in c_days if int(k) not in val_keys],
        "validation_days": [_iso(k) for k in c_days if int(k) in val_keys],
    }
    return ShotSelection(np.sort(train), np.sort(val), record)


def _iso(key: int | np.integer) -> str:
    k = int(key)
    return f"{k // 10000:04d}-{k // 100 % 100:02d}-{k % 100:02d}"
