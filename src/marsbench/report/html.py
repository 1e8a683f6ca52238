"""The self-contained HTML report: one file, figures embedded as base64 PNG, no scripts, no
external resources, so it opens offline. Rendered with jinja2 (autoescaped)."""

from __future__ import annotations

import base64

import jinja2
import pandas as pd

from . import paper_table, section_tables
from .extra_sections import extra_sections
from .build import ReportData
from .figures import ReportFigure

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% if data.synthetic %}[SYNTHETIC DATA] {% endif %}{{ title }}</title>
<link rel="icon" href="data:,">
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1, h2, h3 { color: #7a2e12; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f6efe9; }
td:first-child, th:first-child { text-align: left; }
table.matrix th { vertical-align: bottom; max-width: 9rem; }
table.matrix td { vertical-align: top; white-space: nowrap; }
table.matrix td.best { background: #fbeee2; }
table.matrix small { color: #555; }
.notes { background: #fff6e0; border-left: 4px solid #e0a100; padding: 0.5rem 1rem; }
.synthetic { background: #b00020; color: #fff; border: 4px solid #5c0010; border-radius: 6px;
             padding: 0.9rem 1.2rem; margin: 0 0 1.2rem; font-size: 1.15rem; line-height: 1.45; }
.synthetic strong { font-size: 1.6rem; letter-spacing: 0.06em; display: block; }
.needs { background: #eef2f7; border-left: 4px solid #5a7393; padding: 0.5rem 1rem; }
.meta td { text-align: left; }
.meta td:first-child { white-space: nowrap; vertical-align: top; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #555; }
details { margin: 0.3rem 0 1rem; }
table.section td { white-space: nowrap; }
table.section td.model { white-space: normal; overflow-wrap: anywhere; min-width: 8rem; max-width: 16rem; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; margin-right: 0.35em; vertical-align: -0.05em; }
.small { font-size: 0.85rem; color: #555; }
</style>
</head>
<body>
{% if data.synthetic %}
<div class="synthetic" id="synthetic-banner" role="alert"><strong>⚠ SYNTHETIC DATA</strong>{{ data.synthetic_message() }}</div>
{% endif %}
<h1>{{ title }}</h1>
<table class="meta">
<tr><td>created</td><td>{{ data.created }} by marsbench {{ data.version }}</td></tr>
<tr><td>inputs</td><td>{{ data.inputs | join(", ") or "(table given in Python)" }}</td></tr>
<tr><td>normaliser</td><td>{{ data.normaliser.version }} (saved as normaliser.json)<ul>{% for line in data.normaliser_lines() %}<li>{{ line }}</li>{% endfor %}</ul></td></tr>
<tr><td>intervals</td><td>{{ (100 * data.confidence) | round(1) }} % percentile intervals, {{ data.rounds }} stratified bootstrap rounds, seed {{ data.seed }}</td></tr>
<tr><td>models</td><td>{{ own_models | join(", ") or "none" }}{% if data.baseline_models %}; published baselines: {{ data.baseline_models | join(", ") }}{% endif %}</td></tr>
</table>
{% if notes %}
<section class="notes" id="notes">
<h2>Notes</h2>
<ul>{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>
</section>
{% endif %}
{% for task in data.tasks %}
<section id="{{ task }}">
<h2>{{ task | capitalize }}</h2>
<h3>Results per dataset and model</h3>
<p>Raw test metric, mean ± std over seeds (full training set); the best mean of each dataset in bold.
Also in tables/paper_table.csv and, for LaTeX, tables/paper_table.tex; every run: results.csv.</p>
{% for regime, matrix in matrices[task] %}{% if matrices[task] | length > 1 %}<h4>{{ regime }}</h4>{% endif %}
<div class="scroll">{{ matrix }}</div>{% endfor %}
<h3>Aggregate: IQM of normalised scores</h3>
{% if tables[task]["scores"] %}
<p>Per-dataset min-max normalisation {{ data.normalisation_phrase(task) }}; runs pooled over datasets and seeds,
interquartile mean with its stratified-bootstrap interval (full training set).</p>
{% for f in figs[task]["tasks"] %}{{ figure(f) }}{% endfor %}
<div class="scroll">{{ tables[task]["scores"] }}</div>
{% else %}
<p class="needs">No normalised aggregate: {{ needs[task] }}</p>
{% endif %}
{% if figs[task]["profiles"] or figs[task]["improvement"] %}<h3>Score distributions and probability of improvement</h3>
<p>Performance profile: the fraction of runs (datasets × seeds) whose normalised score exceeds τ; a curve above another is better everywhere.
Probability of improvement: how likely a run of the row model beats a run of the column model on the same dataset (averaged over the datasets both have; ties count ½).</p>
{% for f in figs[task]["profiles"] %}{{ figure(f) }}{% endfor %}
{% for f in figs[task]["improvement"] %}{{ figure(f) }}{% endfor %}{% endif %}
{% if rank_blocks[task] %}<h3>Rankings that survive noise</h3>
<p>Paired bootstrap over datasets and seeds ({{ data.rounds }} rounds, seed {{ data.seed }}; every model scored on the same resampled cells).
A model joins the current tier when the {{ pct }} interval of <em>score(tier leader) − score(model)</em> reaches 0, i.e. they are tied at {{ pct }}; otherwise it leads the next tier (no multiple-comparison correction).
Rank interval: the {{ pct }} range of its bootstrap ranks. Win probability: P(row model's mean score &gt; column model's) over the rounds.
Files: tables/tiers.csv, tables/rank_intervals.csv, tables/win_probability.csv, tables/seed_power.csv.</p>
{% for b in rank_blocks[task] %}<h4>{{ b.regime }}</h4>
{% for caption, t in b.tables %}<p class="small">{{ caption }}</p><div class="scroll">{{ t }}</div>{% endfor %}
{% for line in b.lines %}<p class="small">{{ line }}</p>{% endfor %}{% endfor %}
{% for f in figs[task]["rankings"] %}{{ figure(f) }}{% endfor %}{% endif %}
{% if figs[task]["regimes"] %}<h3>Regime comparison</h3>{% for f in figs[task]["regimes"] %}{{ figure(f) }}{% endfor %}
{% else %}<p>Regime comparison: only {{ regimes[task] | join(", ") }} runs present.</p>{% endif %}
<h3>Per dataset (raw metric)</h3>
{% for f in figs[task]["datasets"] %}{{ figure(f) }}{% endfor %}
<p>IQM over seeds with its interval, per model: tables/dataset_summary.csv.</p>
{% if figs[task]["partition"] %}<h3>Training-set size</h3>{% for f in figs[task]["partition"] %}{{ figure(f) }}{% endfor %}{% endif %}
{% if figs[task]["few_shot"] %}<h3>Few-shot</h3>{% for f in figs[task]["few_shot"] %}{{ figure(f) }}{% endfor %}{% endif %}
{% if figs[task]["per_class"] %}<h3>Per-class scores</h3>{% for f in figs[task]["per_class"] %}{{ figure(f) }}{% endfor %}
{% for dataset, t in per_class[task] %}<details><summary>{{ dataset }}: per-class table</summary><div class="scroll">{{ t }}</div></details>{% endfor %}{% endif %}
{% if figs[task]["history"] %}<h3>Training curves</h3>{% for f in figs[task]["history"] %}{{ figure(f) }}{% endfor %}{% endif %}
{% if cal_blocks[task] %}<h3>Calibration</h3>
<p>Expected calibration error (15 equal-width bins of top-label confidence), the same after temperature scaling (temperature fitted on the validation split) and the area under the risk-coverage curve (lower is better for all three), from the run records; mean over seeds.
The figures pool the test predictions (the runs' predictions CSVs) of each model's seeds on one dataset. Numbers: tables/calibration.csv, tables/reliability.csv, tables/risk_coverage.csv.</p>
{% for b in cal_blocks[task] %}<h4>{{ b.regime }}</h4>
{% for caption, t in b.tables %}<p class="small">{{ caption }}</p><div class="scroll">{{ t }}</div>{% endfor %}
{% for line in b.lines %}<p class="small">{{ line }}</p>{% endfor %}{% endfor %}
{% for f in figs[task]["calibration"] %}{{ figure(f) }}{% endfor %}{% endif %}
{% if cost_blocks[task] %}<h3>Cost per result</h3>
<p>From the run records (full training set): FLOPs of one forward pass of one image, parameters (trainable: what the optimiser updated), wall time per run by stage, peak memory and energy where a meter measured it.
Pareto front: the models no other model beats with a higher score at a lower cost. Numbers: tables/cost.csv.</p>
{% for b in cost_blocks[task] %}<h4>{{ b.regime }}</h4>
{% for caption, t in b.tables %}<p class="small">{{ caption }}</p><div class="scroll">{{ t }}</div>{% endfor %}
{% for line in b.lines %}<p class="small">{{ line }}</p>{% endfor %}{% endfor %}
{% for f in figs[task]["cost"] %}{{ figure(f) }}{% endfor %}{% endif %}
{% for heading, intro, made in extras[task] %}<h3>{{ heading }}</h3><p>{{ intro }}</p>
{% for b in made %}<h4>{{ b.regime }}</h4>
{% for caption, t in b.tables %}<p class="small">{{ caption }}</p><div class="scroll">{{ t }}</div>{% endfor %}
{% for line in b.lines %}<p class="small">{{ line }}</p>{% endfor %}{% endfor %}{% endfor %}
</section>
{% endfor %}
<section id="leaderboard">
<h2>Leaderboard</h2>
{% if leaderboard %}<div class="scroll">{{ leaderboard }}</div>{% else %}<p>Not ranked: see the notes above.</p>{% endif %}
</section>
</body>
</html>
"""

_FIGURE = ('<figure><img src="data:image/png;base64,{{ b64 }}" alt="{{ f.title }}">'
           "<figcaption>{{ f.title }}{% if synthetic %} (synthetic data){% endif %}</figcaption></figure>")


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.3f}", na_rep="–",
                         escape=True)


def needs_text(data: ReportData, task: str) -> str:
    """Why a task has no normalised aggregate."""
    datasets = set(data.table.loc[data.table["task"] == task, "dataset"])
    reasons = data.excluded[data.excluded["dataset"].isin(datasets)]
    if reasons["reason"].str.startswith("needs ≥").any():
        return ("needs ≥2 models. The normalisation bounds were derived from these runs, which hold "
                "one model only; min-max over one model scores it 0 to 1 by construction, so an "
                "IQM, interval or normalised score would mean nothing. Compare against the paper "
                "baselines (--baselines paper --normaliser paper) or add a second model.")
    return "every dataset of this task is left out of the normalised aggregates (see the notes)."


def per_class_tables(data: ReportData, task: str) -> list[tuple[str, str]]:
    part = data.per_class[data.per_class["task"] == task]
    several = part["regime"].nunique() > 1
    out = []
    for dataset, rows in part.groupby("dataset", sort=True):
        rows = rows.assign(entry=[f"{m} · {g}" if several else m for m, g in zip(rows["model"], rows["regime"])],
                           cell=[f"{m:.3f} ± {s:.3f}" if n > 1 else f"{m:.3f}"
                                 for m, s, n in zip(rows["mean"], rows["std"], rows["runs"])])
        classes = list(dict.fromkeys(rows["class"]))
        wide = rows.pivot(index="class", columns="entry", values="cell").reindex(classes).reset_index()
        wide.columns.name = None
        out.append((dataset, _table_html(wide.fillna("–"))))
    return out


def render_html(data: ReportData, figures: list[ReportFigure], title: str = "Mars-Bench report") -> str:
    """The report as one HTML string."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    figure_template = env.from_string(_FIGURE)
    markup = jinja2.utils.markupsafe.Markup

    def figure(f: ReportFigure) -> str:
        return markup(figure_template.render(f=f, b64=base64.b64encode(f.png).decode("ascii"),
                                             synthetic=data.synthetic))

    from .figures import SECTIONS

    figs = {t: {s: [f for f in figures if f.task == t and f.section == s] for s in SECTIONS} for t in data.tasks}
    tables, matrices, needs, per_class = {}, {}, {}, {}
    def as_html(made: list) -> list:  # the blocks with their tables rendered
        for b in made:
            b.tables = [(c, markup(section_tables.html_table(t, data))) for c, t in b.tables]
        return made

    blocks = {name: {} for name in ("rank", "cal", "cost")}
    extras = {}
    for task in data.tasks:
        for name, make in (("rank", section_tables.ranking_blocks), ("cal", section_tables.calibration_blocks),
                           ("cost", section_tables.cost_blocks)):
            blocks[name][task] = as_html(make(data, task))
        extras[task] = [(heading, intro, as_html(made))
                        for heading, intro, made in extra_sections(data, task)]
        scores = data.task_scores[data.task_scores["task"] == task].sort_values(["regime", "iqm"], ascending=[True, False])
        tables[task] = {"scores": markup(_table_html(scores.drop(columns=["task", "variant"]))) if len(scores) else ""}
        matrices[task] = [(regime, markup(paper_table.html_table(rows, data)))
                          for _, regime, rows in paper_table.blocks(data, task)]
        needs[task] = needs_text(data, task)
        per_class[task] = [(d, markup(t)) for d, t in per_class_tables(data, task)]
    regimes = {t: sorted(data.table.loc[(data.table["task"] == t) & (data.table["variant"] == "full"), "regime"].unique())
               for t in data.tasks}
    board = markup(_table_html(data.leaderboard)) if data.leaderboard is not None else None
    own = sorted(set(data.table["model"]) - set(data.baseline_models))
    return env.from_string(_TEMPLATE).render(
        title=title, data=data, notes=data.notes(), figs=figs, tables=tables, regimes=regimes,
        leaderboard=board, own_models=own, figure=figure, matrices=matrices, needs=needs,
        per_class=per_class, rank_blocks=blocks["rank"], cal_blocks=blocks["cal"],
        cost_blocks=blocks["cost"], extras=extras,
        pct=f"{100 * data.confidence:g} %",
    )
