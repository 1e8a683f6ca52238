"""The report's split-scheme section: official and held-out (re-drawn) scores side by side.

A run with a split scheme other than ``official`` (`RunSpec.split`, docs/splits.md) carries
``split=<scheme>`` in its label, so the report never pools it with the official runs of the same
model. Here each such label is paired with the official label it differs from only by the split
(same model, weights and options; same dataset, regime and variant): the official score, the
held-out score (mean over seeds of the headline test metric), and held-out − official with a
percentile bootstrap interval over seeds (each side's seeds resampled independently; one seed a
side gives a zero-width interval, flagged by the run counts). Runs of one scheme drawn with
different ``subset_seed`` s are pooled on the held-out side (their label differs only by it).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from marsbench.aggregate.stats import percentile_interval

SPLIT_COLUMNS = ["task", "regime", "dataset", "variant", "model", "scheme", "metric", "official",
                 "official_runs", "held_out", "held_out_runs", "difference", "ci_low", "ci_high"]
SPLITS_INTRO = ("Runs re-drawn by a split scheme (docs/splits.md: observation-disjoint, or a "
                "latitude band held out as test) beside the official-split runs of the same "
                "model, options, dataset and regime: headline test metric, mean over seeds, and "
                "held-out − official with a bootstrap interval over seeds. "
                "`tables/split_schemes.csv`.")
_SPLIT = re.compile(r"(?<=[\[ ])split=(\S+?)(?=[ \]])")
_DRAW = re.compile(r"(?<=[\[ ])subset_seed=\d+(?=[ \]])")


def split_of(label: str) -> tuple[str, str]:
    """(the official run's label, the scheme) of a report label; ``official`` when it has none.
    A re-drawn run's ``subset_seed`` (the seed of its draw) is dropped too: the draws of one
    scheme are compared with the official runs together.

    >>> split_of("resnet18 [input_size=64 split=observation_disjoint]")
    ('resnet18 [input_size=64]', 'observation_disjoint')
    """
    m = _SPLIT.search(label)
    if m is None:
        return label, "official"
    base = _DRAW.sub("", label[:m.start()] + label[m.end():])  # the draw's seed: pooled
    base = re.sub(r"  +", " ", base)
    base = base.replace("[ ", "[").replace(" ]", "]")
    return base.replace(" []", ""), m.group(1)


def split_comparison(combined: pd.DataFrame, *, rounds: int, seed: int,
                     confidence: float) -> pd.DataFrame:
    """One row per held-out label whose official counterpart has runs (see the module doc)."""
    if combined.empty or not combined["model"].str.contains("split=", regex=False).any():
        return pd.DataFrame(columns=SPLIT_COLUMNS)
    table = combined.assign(**dict(zip(("base", "scheme"),
                                       zip(*combined["model"].map(split_of)))))
    keys = ["task", "regime", "dataset", "variant", "base"]
    rng = np.random.default_rng(seed)
    rows = []
    for key, part in table.groupby(keys, sort=True):
        official = part.loc[part["scheme"] == "official", "value"].to_numpy(dtype=float)
        if not official.size:
            continue
        for scheme, held in part[part["scheme"] != "official"].groupby("scheme", sort=True):
            values = held["value"].to_numpy(dtype=float)
            a = official[rng.integers(0, official.size, (rounds, official.size))].mean(1)
            b = values[rng.integers(0, values.size, (rounds, values.size))].mean(1)
            low, high = percentile_interval(b - a, confidence)
            rows.append({**dict(zip(keys[:4], key)), "model": key[4], "scheme": scheme,
                         "metric": held["metric"].iloc[0], "official": official.mean(),
                         "official_runs": official.size, "held_out": values.mean(),
                         "held_out_runs": values.size,
                         "difference": values.mean() - official.mean(),
                         "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=SPLIT_COLUMNS)


def split_blocks(data, task: str) -> list:
    """Per regime: the comparison as a display table (`section_tables.Block`)."""
    from .section_tables import Block, _num, _regimes

    pct = f"{100 * data.confidence:g} %"
    out = []
    for regime, part in _regimes(data.sections.splits, task):
        rows = [{"dataset": r.dataset + ("" if r.variant == "full" else f" [{r.variant}]"),
                 "model": r.model, "split scheme": r.scheme, "metric": r.metric,
                 "official (runs)": f"{_num(r.official)} ({r.official_runs})",
                 "held-out (runs)": f"{_num(r.held_out)} ({r.held_out_runs})",
                 "held-out − official": _num(r.difference),
                 f"{pct} CI over seeds": f"[{_num(r.ci_low)}, {_num(r.ci_high)}]"}
                for r in part.itertuples(index=False)]
        out.append(Block(regime, [("Official vs re-drawn splits (test, mean over seeds)",
                                   pd.DataFrame(rows))]))
    return out
