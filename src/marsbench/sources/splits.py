"""Split schemes (`RunSpec.split`): re-draw train/val/test so no observation or region leaks.

* ``official``: the dataset's own files (nothing here runs).
* ``observation_disjoint``: train+val+test pooled, grouped by the observation decoded from each
  file name (`marsbench.sources.audit.observation_id`; an image with no id is a group of its
  own), and re-drawn with the official split proportions so that no group is in two splits,
  stratified by class where the task has per-image classes (`assign_groups`).
* ``latitude_band:<lo>:<hi>``: test = the images whose decoded latitude lies in [lo, hi) (hi 90
  includes the pole); train and val = the rest (val drawn from it by observation group, with the
  official val:train ratio). Images without a latitude are excluded and counted.
* ``region:<name>``: a named latitude band (`REGIONS`).

A draw uses the run's ``subset_seed`` (`DEFAULT_SEED` when it has none) and is saved as
``<cache>/splits/<dataset>/<scheme>_seed<seed>_<pool>.csv`` (file_id, origin, split, group,
latitude), ``<pool>`` a fingerprint of the pooled sample ids, so a changed dataset never reads
an old draw; later runs read it back. Each re-drawn split's fingerprint covers the scheme, seed
and the CSV's bytes. `scheme_summary` gives the counts a run records in ``extra["split"]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError, did_you_mean
from ..vocab import SPLIT_SCHEMES
from .errors import DataError

__all__ = ["SplitScheme", "REGIONS", "DEFAULT_SEED", "parse_scheme", "check_card",
           "assign_groups", "draw_assignment", "redraw_splits", "scheme_summary"]

DEFAULT_SEED = 0  # the draw's seed when the run sets no subset_seed
# Named latitude bands [lo, hi) in degrees north (90 includes the pole).
REGIONS: dict[str, tuple[float, float]] = {
    "south_polar": (-90.0, -60.0), "mid_south": (-60.0, -30.0), "equatorial": (-30.0, 30.0),
    "mid_north": (30.0, 60.0), "north_polar": (60.0, 90.0)}
# Instruments (card text) whose product ids marsbench decodes, and those giving a latitude.
_ID_INSTRUMENTS = re.compile(r"hirise|ctx|themis|mastcam|mahli|mardi|navcam|hazcam", re.I)
_LAT_INSTRUMENTS = re.compile(r"hirise|ctx", re.I)
_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitScheme:
    """A parsed scheme: ``kind`` one of `SPLIT_SCHEMES`; ``band`` the test latitudes."""

    kind: str
    region: str | None = None
    band: tuple[float, float] | None = None

    def __str__(self) -> str:
        if self.kind == "region":
            return f"region:{self.region}"
        if self.kind == "latitude_band":
            return f"latitude_band:{self.band[0]:g}:{self.band[1]:g}"
        return self.kind

    @property
    def official(self) -> bool:
        return self.kind == "official"

    @property
    def needs_latitude(self) -> bool:
        return self.band is not None

    def in_band(self, latitude: float) -> bool:
        lo, hi = self.band
        return lo <= latitude < hi or (hi >= 90 and latitude == 90)


def parse_scheme(text: Any) -> SplitScheme:
    """``official`` | ``observation_disjoint`` | ``region:<name>`` | ``latitude_band:<lo>:<hi>``;
    anything else is an `OptionError` naming the value and the fix."""
    raw = str(text).strip()
    kind, _, rest = raw.partition(":")
    kind = kind.strip().lower().replace("-", "_")
    if kind not in SPLIT_SCHEMES:
        raise OptionError("unknown split scheme", option="split", where="split", value=raw,
                          fix=f"{did_you_mean(kind, SPLIT_SCHEMES)} (region:<name>, "
                              "latitude_band:<lo>:<hi>)")
    if kind in ("official", "observation_disjoint"):
        if rest:
            raise OptionError(f"split scheme {kind} takes no parameter", option="split",
                              where="split", value=raw, fix=f"use {kind}")
        return SplitScheme(kind)
    if kind == "region":
        name = rest.strip().lower().replace("-", "_")
        if name not in REGIONS:
            raise OptionError("unknown region", option="split", where="split", value=raw,
                              fix=f"use region:<name> with a name from {', '.join(REGIONS)}")
        return SplitScheme(kind, region=name, band=REGIONS[name])
    parts = rest.split(":")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise OptionError("bad latitude band", option="split", where="split", value=raw,
                          fix="use latitude_band:<lo>:<hi> in degrees north, e.g. "
                              "latitude_band:-90:-60") from None
    if not (-90 <= lo < hi <= 90):
        raise OptionError("bad latitude band: needs -90 <= lo < hi <= 90", option="split",
                          where="split", value=raw, fix="e.g. latitude_band:-90:-60")
    return SplitScheme(kind, band=(lo + 0.0, hi + 0.0))


def check_card(scheme: SplitScheme, card) -> None:
    """Refuse a scheme a catalog dataset's instrument cannot support (no decodable product ids,
    no latitude in them); user datasets are checked on their file names when opened."""
    if scheme.official or str(card.instrument).startswith("unknown"):
        return
    pattern = _LAT_INSTRUMENTS if scheme.needs_latitude else _ID_INSTRUMENTS
    if not pattern.search(str(card.instrument)):
        what = "latitudes (HiRISE/CTX target codes)" if scheme.needs_latitude else \
            "observation ids"
        raise OptionError(f"the file names of {card.name} ({card.instrument}) carry no {what}",
                          option="split", where="split", value=str(scheme),
                          fix="use split official (or observation_disjoint where ids exist); "
                              "`marsbench datasets audit` shows what a dataset's names decode")


# -- the draw ------------------------------------------------------------------------------------

def assign_groups(groups: list[str], labels: np.ndarray | None, fractions: dict[str, float],
                  seed: int) -> list[str]:
    """The split of each item such that every group lies in one split, the splits' sizes are
    near ``fractions`` and, given ``labels`` (items x classes, one- or multi-hot), so are their
    class counts. Greedy: groups from large to small (random order within a power-of-two size
    bucket, by ``seed``), each to the split whose squared relative shortfall it reduces most."""
    names = list(fractions)
    uniq, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    n = len(groups)
    y = np.zeros((n, 0)) if labels is None else np.asarray(labels, dtype=float).reshape(n, -1)
    cols = np.concatenate([y, np.ones((n, 1))], axis=1)  # last column: the image count
    per_group = np.zeros((len(uniq), cols.shape[1]))
    np.add.at(per_group, inverse, cols)
    frac = np.array([fractions[s] for s in names], dtype=float)
    target = np.outer(frac / frac.sum(), per_group.sum(0))
    weight = np.ones(cols.shape[1])
    weight[-1] = max(1, y.shape[1])  # the sizes count as much as all classes together
    scale = weight / np.maximum(target, 1.0)
    rng = np.random.default_rng(seed)
    bucket = np.floor(np.log2(per_group[:, -1]))
    order = np.lexsort((rng.random(len(uniq)), -bucket))
    counts = np.zeros_like(target)
    choice = np.empty(len(uniq), dtype=int)
    for g in order:
        gain = ((counts + per_group[g] - target) ** 2 - (counts - target) ** 2) * scale
        s = int(np.argmin(gain.sum(1) - 1e-9 * (target[:, -1] - counts[:, -1])))
        counts[s] += per_group[g]
        choice[g] = s
    return [names[choice[i]] for i in inverse]


def _label_matrix(targets: list | None, multilabel: bool) -> np.ndarray | None:
    if not targets:
        return None
    if multilabel:
        return np.stack([np.asarray(t, dtype=float) for t in targets])
    codes = np.unique(np.asarray(targets), return_inverse=True)[1]
    return np.eye(int(codes.max()) + 1)[codes]


def draw_assignment(scheme: SplitScheme, ids: list[str], origins: list[str], targets, *,
                    multilabel: bool, seed: int, dataset: str) -> list[dict[str, Any]]:
    """One row per pooled image: file_id, origin (its official split), split (train, val, test
    or excluded), group, latitude."""
    from .audit import observation_id

    obs = [observation_id(i) for i in ids]
    if not any(o is not None for o in obs):
        raise DataError("no file name carries a product id to group by", dataset=dataset,
                        value=str(scheme), fix="use split official; `marsbench datasets audit "
                        f"{dataset}` shows what the names decode")
    groups = [o.observation_id if o else f"_single:{orig}/{i}" for o, i, orig in
              zip(obs, ids, origins)]
    lats = [o.latitude if o else None for o in obs]
    official = {s: origins.count(s) for s in _SPLITS}
    labels = _label_matrix(targets, multilabel)
    split = ["excluded"] * len(ids)
    if not scheme.needs_latitude:
        split = assign_groups(groups, labels, official, seed)
        empty = [s for s in _SPLITS if official[s] and s not in split]
        if empty:
            raise DataError(f"{len(set(groups))} observation groups are too few to fill "
                            f"{', '.join(empty)} disjointly", dataset=dataset,
                            value=str(scheme), fix="use split official")
    else:
        known = [k for k, lat in enumerate(lats) if lat is not None]
        if not known:
            raise DataError("no file name carries a latitude (HiRISE/CTX target code)",
                            dataset=dataset, value=str(scheme),
                            fix="use split official or observation_disjoint")
        test = [k for k in known if scheme.in_band(lats[k])]
        rest = [k for k in known if not scheme.in_band(lats[k])]
        span = f"the images span latitudes {min(lats[k] for k in known):g}.." \
               f"{max(lats[k] for k in known):g}"
        if not test or len({groups[k] for k in rest}) < 2:
            raise DataError(f"the band leaves {'no test' if not test else 'too few train'} "
                            "images", dataset=dataset, value=str(scheme),
                            fix=f"choose another band: {span}")
        for k in test:
            split[k] = "test"
        sub = None if labels is None else labels[rest]
        drawn = assign_groups([groups[k] for k in rest], sub,
                              {"train": official["train"], "val": official["val"]}, seed)
        for k, s in zip(rest, drawn):
            split[k] = s
    return [{"file_id": i, "origin": o, "split": s, "group": g,
             "latitude": "" if lat is None else lat}
            for i, o, s, g, lat in zip(ids, origins, split, groups, lats)]


# -- opening the re-drawn splits -----------------------------------------------------------------

_SUMMARIES: dict[str, dict[str, Any]] = {}  # CSV sha -> its summary (`scheme_summary`)


def _split_file(dataset: str, scheme: SplitScheme, seed: int, pool: str) -> Path:
    from .content_hash import cache_root

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(scheme))
    return cache_root() / "splits" / dataset / f"{slug}_seed{seed}_{pool}.csv"


def _summary(rows: list[dict[str, Any]], scheme: SplitScheme, seed: int, name: str) -> dict:
    out: dict[str, Any] = {"scheme": str(scheme), "seed": seed, "file": name}
    for s in (*_SPLITS, "excluded"):
        mine = [r for r in rows if r["split"] == s]
        out[s] = {"images": len(mine), "groups": len({r["group"] for r in mine}),
                  "no_id": sum(str(r["group"]).startswith("_single:") for r in mine)}
    out["excluded"] = out["excluded"]["images"]
    return out


def redraw_splits(opened: dict, scheme: SplitScheme, seed: int | None,
                  variant: str = "full") -> dict:
    """``{"train", "val", "test"} -> MarsDataset`` re-drawn by ``scheme`` from the official
    splits ``opened`` (full variant); the draw is read from its CSV when one was saved. A
    few-shot / partition ``variant`` is then drawn from the new train split with the same seed
    (`marsbench.sources.subsets.draw`, stratified by class)."""
    import pandas as pd

    from ..io import atomic_path

    seed = DEFAULT_SEED if seed is None else seed
    card = opened["train"].card
    ids, origins, entries, targets = [], [], [], []
    for s in _SPLITS:
        ds = opened[s]
        ids += ds.sample_ids
        origins += [s] * len(ds)
        entries += [(s, e) for e in ds.entries]
        targets += list(ds.targets or [])
    pool = hashlib.sha256("\0".join(f"{o}/{i}" for o, i in zip(origins, ids)).encode())
    path = _split_file(card.name, scheme, seed, pool.hexdigest()[:12])
    if path.is_file():
        rows = pd.read_csv(path, keep_default_na=False, dtype={"file_id": str, "group": str}
                           ).to_dict("records")
        if [(r["origin"], r["file_id"]) for r in rows] != list(zip(origins, ids)):
            raise DataError("the saved split does not match the data", dataset=card.name,
                            path=path, fix="delete it to draw the split again")
    else:
        rows = draw_assignment(scheme, ids, origins, targets if len(targets) == len(ids)
                               else None, multilabel=card.multilabel, seed=seed,
                               dataset=card.name)
        with atomic_path(path) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    _SUMMARIES[sha] = _summary(rows, scheme, seed, path.name)
    loads = {s: opened[s].load for s in _SPLITS}
    contents = [opened[s].content for s in _SPLITS]

    def load(entry):
        return loads[entry[0]](entry[1])

    def content() -> list[str]:  # the whole dataset's files: the splits are cut from all of it
        return sorted({c for f in contents if f is not None for c in f()})

    summary = _SUMMARIES[sha]
    note = (f"split {scheme} seed {seed}: " + ", ".join(
        f"{s} {summary[s]['images']} images / {summary[s]['groups']} groups" for s in _SPLITS)
        + f", {summary['excluded']} excluded")
    out = {}
    for s in _SPLITS:
        keep = [k for k, r in enumerate(rows) if r["split"] == s]
        out[s] = dataclasses.replace(
            opened[s], split=s, sample_ids=[ids[k] for k in keep],
            entries=[entries[k] for k in keep], load=load, content=content, arrow=None,
            targets=[targets[k] for k in keep] if len(targets) == len(ids) else None,
            fingerprint_parts=[*opened[s].fingerprint_parts, f"split={scheme}",
                               f"split_seed={seed}", f"split_draw={sha}"],
            notes=sorted({*(n for d in opened.values() for n in d.notes), note}))
    return _with_variant(out, variant, seed)


def _with_variant(splits: dict, variant: str, seed: int) -> dict:
    from ..catalog import Variant
    from .subsets import draw

    parsed = Variant.parse(variant)
    if parsed.is_full:
        return splits
    train = splits["train"]
    keep = set(draw(train.targets or [], train.sample_ids, parsed, seed, train.card.multilabel))
    rows = [k for k, i in enumerate(train.sample_ids) if i in keep]
    splits["train"] = dataclasses.replace(
        train, variant=parsed, sample_ids=[train.sample_ids[k] for k in rows],
        entries=[train.entries[k] for k in rows],
        targets=None if train.targets is None else [train.targets[k] for k in rows])
    return splits


def scheme_summary(splits: dict) -> dict[str, Any] | None:
    """Counts of a re-drawn split (images, observation groups and images without an id per
    split, images excluded), None for the official split."""
    for part in splits["test"].fingerprint_parts:
        if part.startswith("split_draw="):
            return _SUMMARIES.get(part.removeprefix("split_draw="))
    return None
