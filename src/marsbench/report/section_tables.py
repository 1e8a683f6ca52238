"""Display tables (formatted strings) of the rankings, calibration and cost sections, shared by the
HTML and Markdown renderers; `html_table` draws a model's colour swatch next to its name."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

import pandas as pd

from .build import ReportData
from .plots import model_colours
from .sections import POWER_DELTAS


@dataclass
class Block:
    """One regime's tables of a section: (caption, display frame) pairs and plain-text lines."""

    regime: str
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _num(v: float, digits: int = 3) -> str:
    return "–" if v is None or not math.isfinite(float(v)) else f"{float(v):.{digits}f}"


def _si(v: float, unit: str = "") -> str:
    """4.12 G, 11.7 M: three significant digits with an SI prefix."""
    if v is None or not math.isfinite(float(v)):
        return "–"
    v = float(v)
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.3g} {prefix}{unit}".rstrip()
    return f"{v:.3g} {unit}".rstrip()


def _bytes(v: float) -> str:
    if v is None or not math.isfinite(float(v)):
        return "–"
    v = float(v)
    for factor, unit in ((2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB")):
        if v >= factor:
            return f"{v / factor:.3g} {unit}"
    return f"{v:.0f} B"


def _regimes(frame: pd.DataFrame, task: str) -> list[tuple[str, pd.DataFrame]]:
    from ..vocab import REGIMES

    part = frame[frame["task"] == task]
    order = {g: i for i, g in enumerate(REGIMES)}
    return [(g, part[part["regime"] == g]) for g in sorted(set(part["regime"]), key=lambda g: (order.get(g, 99), g))]


def ranking_blocks(data: ReportData, task: str) -> list[Block]:
    """Per regime: tiers with rank intervals, and the seeds needed per dataset."""
    s, pct = data.sections, f"{100 * data.confidence:g} %"
    out = []
    power = s.seed_power[s.seed_power["task"] == task]
    for regime, tiers in _regimes(s.tiers, task):
        ranks = s.rank_intervals[(s.rank_intervals["task"] == task)
                                 & (s.rank_intervals["regime"] == regime)].set_index("model")
        basis = tiers["basis"].iloc[0]
        rows = []
        for t in tiers.itertuples(index=False):
            r = ranks.loc[t.model]
            rows.append({"model": t.model, f"mean {basis}": _num(t.score), "tier": str(t.tier),
                         "rank": str(r["rank_point"]),
                         f"rank, {pct} interval": (f"{r['rank_low']}" if r["rank_low"] == r["rank_high"]
                                                   else f"{r['rank_low']}–{r['rank_high']}"),
                         f"tier leader − model, {pct} CI": (
                             "leader" if t.leader == t.model else
                             f"[{_num(t.ci_low)}, {_num(t.ci_high)}] vs {t.leader}")})
        block = Block(regime, [("Significance tiers and rank intervals", pd.DataFrame(rows))])
        p = power[power["regime"] == regime]
        if len(p):
            wide = []
            for (dataset, metric), g in p.groupby(["dataset", "metric"], sort=True):
                g = g.set_index("delta")
                row = {"dataset": dataset, "metric": metric, "between-seed sd": _num(g["sd"].iloc[0], 4),
                       "df": str(int(g["df"].iloc[0]))}
                for d in POWER_DELTAS:
                    n = int(g.loc[d, "seeds_needed"]) if d in g.index else -1
                    row[f"seeds for Δ = {d:g}"] = str(n) if n >= 2 else "–"
                wide.append(row)
            block.tables.append(("Seeds per model needed to detect a difference Δ in the raw metric "
                                 f"at {100 * p['power'].iloc[0]:g} % power (two-sided t-test, "
                                 f"α = {p['alpha'].iloc[0]:g})", pd.DataFrame(wide)))
        out.append(block)
    return out


def calibration_blocks(data: ReportData, task: str) -> list[Block]:
    s = data.sections
    out = []
    for regime, part in _regimes(s.calibration, task):
        rows = [{"dataset": r.dataset, "model": r.model, "runs": str(r.runs), "ECE": _num(r.ece),
                 "ECE, temperature-scaled": _num(r.ece_temperature_scaled),
                 "temperature": _num(r.temperature, 2), "AURC": _num(r.aurc)}
                for r in part.sort_values(["dataset", "model"]).itertuples(index=False)]
        block = Block(regime, [("Calibration, mean over seeds (test split)", pd.DataFrame(rows))])
        missing = s.uncalibrated.get((task, regime), [])
        if missing:
            block.lines.append(f"Not shown (their records hold no calibration metrics): "
                               f"{', '.join(missing)}.")
        out.append(block)
    return out


def cost_blocks(data: ReportData, task: str) -> list[Block]:
    s = data.sections
    out = []
    for regime, part in _regimes(s.cost, task):
        cost, time = [], []
        for r in part.itertuples(index=False):
            pareto = [name for name, flag in (("FLOPs", r.pareto_flops), ("time", r.pareto_time)) if flag]
            cost.append({"model": r.model, "runs": str(r.runs), "datasets": str(r.datasets),
                         "FLOPs / image": _si(r.flops_per_image), "parameters": _si(r.parameters),
                         "trainable": _si(r.trainable_parameters),
                         "peak memory": _bytes(r.peak_memory_bytes),
                         "energy / run": (f"{_si(r.energy_joules, 'J')} (n={r.energy_runs})"
                                          if r.energy_runs else "not measured"),
                         "score": _num(r.score), "Pareto front": ", ".join(pareto) or "–"})
            time.append({"model": r.model, "setup": _num(r.setup_s, 1),
                         "feature extraction": _num(r.feature_extraction_s, 1),
                         "training": _num(r.training_s, 1), "evaluation": _num(r.evaluation_s, 1),
                         "total": _num(r.total_s, 1)})
        block = Block(regime, [("Cost per model (means over its runs; peak memory: the largest)",
                                pd.DataFrame(cost)),
                               ("Wall time per run by stage, mean over runs (seconds)", pd.DataFrame(time))])
        kinds = sorted({k for v in part["peak_memory_kind"] for k in str(v).split("; ") if k})
        if kinds:
            block.lines.append(f"Peak memory is {' / '.join(kinds)}.")
        unmeasured = part[part["energy_runs"] == 0]
        sources = sorted({k for v in unmeasured["energy_source"] for k in str(v).split("; ") if k})
        if len(unmeasured):
            block.lines.append("Energy not measured" + (f" ({'; '.join(sources)})" if sources else "")
                               + "; never estimated.")
        kinds = sorted({k for k in part["score_kind"] if k})
        if kinds:
            block.lines.append(f"Score: {' / '.join(kinds)}, full training set.")
        missing = s.uncosted.get((task, regime), [])
        if missing:
            block.lines.append(f"Not shown (their records hold no cost): {', '.join(missing)}.")
        out.append(block)
    return out


def html_table(frame: pd.DataFrame, data: ReportData) -> str:
    """The display frame as HTML (escaped), a colour swatch before each model name."""
    colours = model_colours(data.table["model"].unique(), data.baseline_models)

    def swatch(model: str) -> str:
        rgb = colours.get(model)
        if rgb is None:
            return ""
        hex_ = "#" + "".join(f"{round(255 * c):02x}" for c in rgb[:3])
        return f'<span class="swatch" style="background:{hex_}"></span>'

    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row):
            text = escape(str(value))
            cells.append(f'<td class="model">{swatch(str(value))}{text}</td>' if column == "model"
                         else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return ('<table class="section"><thead><tr>' + head + "</tr></thead><tbody>" + "".join(body)
            + "</tbody></table>")
