"""What the report says, checked against the data: the SYNTHETIC banner (present iff a run is on
synthetic data), the dataset x model matrix (pandas' mean / std per cell, best in bold; CSV and
LaTeX), no normalised aggregate from one model's own bounds, truthful normaliser labels, one
colour per model in every figure, figures without clipped titles, colliding tick labels or axis
offsets, per-class scores and training curves from the records."""

from __future__ import annotations

import re
from itertools import combinations

import matplotlib.text
import numpy as np
import pandas as pd
import pytest
from matplotlib.ticker import ScalarFormatter

from marsbench.aggregate import Normaliser, default_normaliser, results_table, select_headline
from marsbench.report import build_report_data, make_figures, make_report, render_html, render_markdown
from marsbench.report import plots
from marsbench.runs import ResultsStore, RunRecord, RunSpec

LONG = "tiny-cnn-with-a-rather-long-model-name-v2"
CLASSES = {"mb-domars16k": ["aec", "ael", "cli", "cra", "fse", "fsf", "fsg", "fss", "mix", "rid",
                             "rou", "sfe", "sfx", "smo", "tex"],
           "mb-landmark_cls": ["other", "crater", "dark dune", "slope streak", "bright dune",
                               "impact ejecta", "swiss cheese", "spider"],
           "mb-surface_cls": [f"class {i}" for i in range(6)]}


def small_results(models=(("mars-net", 0.85), ("tiny-cnn", 0.7)),
                  regimes=("feature_extraction", "fine_tuning"), curves: bool = True) -> pd.DataFrame:
    """Models x three datasets x regimes x seeds, with partitions and few-shot runs."""
    rng = np.random.default_rng(0)
    variants = (("full", 0.0), ("partition:0.10", 0.15), ("partition:0.50", 0.05),
                ("few_shot:5", 0.3), ("few_shot:20", 0.2)) if curves else (("full", 0.0),)
    rows = []
    for model, level in models:
        for regime, shift in zip(regimes, (0.0, 0.03, 0.05)):
            for dataset in ("mb-domars16k", "mb-landmark_cls", "mb-surface_cls"):
                for variant, drop in variants:
                    for seed in (0, 1, 42):
                        rows.append(dict(model=model, dataset=dataset, task="classification",
                                         regime=regime, variant=variant, seed=seed, metric="f1_weighted",
                                         value=level + shift - drop + rng.normal(0, 0.01)))
    return results_table(rows)


def records_for(table: pd.DataFrame, *, synthetic: bool = True) -> list[RunRecord]:
    """A record behind each full-training-set run of ``table``: the same headline value, per-class
    F1, a 12-epoch loss history and the synthetic-data flag (as `marsbench run` stores them)."""
    rng = np.random.default_rng(1)
    out = []
    for r in table[table["variant"] == "full"].itertuples(index=False):
        spec = RunSpec(dataset=r.dataset, model=r.model, regime=r.regime, seed=int(r.seed))
        decay = 3.0 + 6.0 * (1 - r.value)
        history = [{"epoch": e, "train_loss": 1.9 * np.exp(-e / decay) + 0.1 + rng.normal(0, 0.02),
                    "val_loss": 2.0 * np.exp(-e / decay) + 0.25 + rng.normal(0, 0.02)}
                   for e in range(1, 13)]
        per_class = {c: float(np.clip(r.value + rng.normal(0, 0.08), 0, 1)) for c in CLASSES[r.dataset]}
        out.append(RunRecord(spec, task=r.task, metrics={"test": {
            r.metric: r.value, "accuracy": r.value + 0.01, "per_class_f1": per_class}},
            extra={"synthetic_data": synthetic, "history": history}))
    return out


COST = {"mars-net": dict(flops_per_image=4.1e9, parameters=25_557_032, trainable_parameters=2_049),
        "tiny-cnn": dict(flops_per_image=3.1e8, parameters=1_250_000, trainable_parameters=1_250_000),
        LONG: dict(flops_per_image=1.7e10, parameters=86_000_000, trainable_parameters=86_000_000)}
TIMINGS = {"mars-net": dict(setup_s=2.0, feature_extraction_s=30.0, training_s=12.0, evaluation_s=3.0),
           "tiny-cnn": dict(setup_s=1.0, feature_extraction_s=0.0, training_s=40.0, evaluation_s=1.5),
           LONG: dict(setup_s=4.0, feature_extraction_s=0.0, training_s=300.0, evaluation_s=9.0)}


def write_predictions_csv(path, classes, level: float, sharpness: float, seed: int) -> str:
    """A predictions CSV as classification runs write it (split, id, true, pred, p_<class>...):
    val and test rows, accuracy about ``level``, over-confident by ``sharpness``."""
    rng = np.random.default_rng(seed)
    lines = ["split,id,true,pred," + ",".join(f"p_{c}" for c in classes)]
    for split, n in (("val", 40), ("test", 160)):
        true = rng.integers(0, len(classes), n)
        logits = rng.normal(0, 1, (n, len(classes)))
        right = rng.random(n) < level
        logits[np.arange(n), np.where(right, true, (true + 1) % len(classes))] += 2.0
        z = sharpness * logits
        probs = np.exp(z - z.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        for i in range(n):
            lines.append(f"{split},{split}-{i},{true[i]},{probs[i].argmax()},"
                         + ",".join(f"{v:.6f}" for v in probs[i]))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def full_records(table: pd.DataFrame, folder, *, synthetic: bool = True) -> list[RunRecord]:
    """`records_for` plus what `marsbench run` also records: calibration metrics (ECE, scaled
    ECE, AURC; the temperature in extra.calibration), a predictions CSV in ``folder``, the cost
    (extra.cost) and the wall time per stage (timings)."""
    out = records_for(table, synthetic=synthetic)
    for k, rec in enumerate(out):
        model, test = rec.spec.model, rec.metrics["test"]
        level = test["f1_weighted"]
        sharp = 2.5 if model == "tiny-cnn" else 1.2
        test.update(ece=0.02 + 0.1 * (1 - level) + 0.001 * rec.spec.seed,
                    ece_temperature_scaled=0.015 + 0.001 * rec.spec.seed, aurc=0.5 * (1 - level))
        rec.extra["calibration"] = {"bins": 15, "temperature_fitted_on": "val",
                                    "temperature": 1.1 + 0.1 * rec.spec.seed}
        rec.extra["cost"] = {**COST[model], "peak_memory_bytes": 2_000_000_000 + 1_000_000 * k,
                             "peak_memory_kind": "process peak RSS (ru_maxrss)",
                             "energy_joules": None, "energy_source": "no energy meter on the CPU"}
        stages = TIMINGS[model]
        rec.timings = {**stages, "total_s": sum(stages.values())}
        rec.predictions_path = write_predictions_csv(
            folder / f"pred-{k}.csv", CLASSES[rec.spec.dataset], level, sharp, k)
    return out


def build(table, **kwargs):
    kwargs.setdefault("normaliser", default_normaliser())
    return build_report_data(table, rounds=50, **kwargs)


def texts(data):
    return render_html(data, []), render_markdown(data, [])


# -- synthetic data -----------------------------------------------------------------------------

def test_banner_iff_a_run_is_on_synthetic_data():
    table = small_results(curves=False)
    html, md = texts(build(table, records=records_for(table, synthetic=True)))
    assert html.count('id="synthetic-banner"') == 1
    body = html[html.index("<body>"):]
    assert body.index("synthetic-banner") < body.index("<h1>")  # above everything else
    banner = re.search(r'id="synthetic-banner"[^>]*>(.*?)</div>', html, re.S).group(1)
    assert "SYNTHETIC DATA" in banner and "36 of the reported runs" in banner
    assert "mb-domars16k, mb-landmark_cls, mb-surface_cls" in banner
    assert "<title>[SYNTHETIC DATA]" in html
    assert md.startswith("> **⚠ SYNTHETIC DATA")

    for real in (build(table, records=records_for(table, synthetic=False)), build(table)):
        html, md = texts(real)
        assert "synthetic-banner" not in html and "SYNTHETIC" not in html.upper().replace(
            ".SYNTHETIC", "") and "SYNTHETIC" not in md.upper()


def test_banner_names_only_the_synthetic_datasets_and_reads_a_table_column():
    table = small_results(curves=False)
    records = records_for(table, synthetic=False)
    for r in records:
        if r.spec.dataset == "mb-landmark_cls" and r.spec.model == "tiny-cnn":
            r.extra["synthetic_data"] = True
    data = build(table, records=records)
    assert data.synthetic_datasets == ["mb-landmark_cls"] and data.synthetic_runs == 6
    flagged = table.assign(synthetic=table["dataset"] == "mb-surface_cls")
    assert build(flagged).synthetic_datasets == ["mb-surface_cls"]


def test_make_report_reads_records_from_a_store(tmp_path):
    table = small_results(curves=False)
    store = ResultsStore(tmp_path / "runs.sqlite")
    for r in records_for(table):
        store.put(r)
    written = make_report(store.to_table(), tmp_path / "out", baselines=False, rounds=50, records=store)
    html, md = written["html"].read_text(), written["markdown"].read_text()
    assert 'id="synthetic-banner"' in html and "SYNTHETIC DATA" in md.splitlines()[0]
    assert "SYNTHETIC DATA" in (tmp_path / "out/tables/paper_table.tex").read_text()
    per_class = pd.read_csv(tmp_path / "out/tables/per_class.csv")
    history = pd.read_csv(tmp_path / "out/tables/training_history.csv")
    # per class: mean over the three seeds of each class's stored F1
    stored = [(r.spec.model, r.spec.regime, r.metrics["test"]["per_class_f1"]["crater"])
              for r in store.records() if r.spec.dataset == "mb-landmark_cls"]
    expect = pd.DataFrame(stored, columns=["model", "regime", "v"]).groupby(["model", "regime"])["v"].mean()
    got = per_class[(per_class["dataset"] == "mb-landmark_cls") & (per_class["class"] == "crater")]
    assert got.set_index(["model", "regime"])["mean"].sort_index().to_numpy() == pytest.approx(expect.to_numpy())
    assert (got["runs"] == 3).all() and len(per_class) == 2 * 2 * sum(map(len, CLASSES.values()))
    assert len(history) == len(store) * 12 and set(history.columns) >= {"epoch", "train_loss", "val_loss"}
    assert {"figure:classification_per_class", "figure:classification_training_curves"} <= set(written)


def test_records_are_matched_by_key_and_value_not_by_key_alone():
    table = small_results(curves=False, regimes=("feature_extraction",))
    records = records_for(table, synthetic=False)
    grid = []
    for r in records[:3]:  # a grid candidate: same label and seed, other score, on synthetic data
        twin = RunRecord(r.spec, task=r.task, metrics={"test": {"f1_weighted": 0.01}},
                         extra={"synthetic_data": True, "history": [{"epoch": 1, "train_loss": 9, "val_loss": 9}]})
        grid.append(twin)
    data = build(table, records=records + grid)
    assert data.history["train_loss"].max() < 9  # the seed runs' curves, not the candidate's
    assert data.synthetic_datasets == ["mb-domars16k"]  # conservative: same dataset, same data


# -- the dataset x model matrix -----------------------------------------------------------------

def matrix_cells(html: str) -> dict[tuple[str, str], tuple[str, bool]]:
    """{(dataset, model): (cell text, bold)} of the first matrix table in ``html``."""
    table = re.search(r'<table class="matrix">(.*?)</table>', html, re.S).group(1)
    models = re.findall(r"<th>(.*?)</th>", re.search(r"<thead>(.*?)</thead>", table, re.S).group(1))[1:]
    out = {}
    for row in re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", table, re.S):
        dataset = row.split("<br>")[0]
        for model, cell in zip(models, re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)):
            text = re.sub(r"<[^>]+>", " ", cell).split()
            out[(dataset, model)] = (" ".join(text), "<strong>" in cell)
    return out


def test_matrix_cells_are_pandas_mean_and_std_with_the_best_in_bold(tmp_path):
    table = small_results(models=(("mars-net", 0.85), ("tiny-cnn", 0.7), (LONG, 0.78)),
                          regimes=("fine_tuning",), curves=True)
    data = build(table, baselines=None)
    full = table[table["variant"] == "full"]
    expect = full.groupby(["dataset", "model"])["value"].agg(["mean", "std"])
    cells = matrix_cells(render_html(data, []))
    assert len(cells) == 3 * 3
    for (dataset, model), row in expect.iterrows():
        text, bold = cells[(dataset, model)]
        assert text == f"{row['mean']:.3f} ± {row['std']:.3f}"
        assert bold == (row["mean"] == expect.loc[dataset, "mean"].max())
    assert sum(bold for _, bold in cells.values()) == 3  # one best per dataset here

    md = render_markdown(data, [])
    best = expect.loc["mb-domars16k"]["mean"].idxmax()
    value = expect.loc[("mb-domars16k", best)]
    assert f"**{value['mean']:.3f} ± {value['std']:.3f}**" in md
    # the long per-run table is gone from the main view; it stays in tables/*.csv
    assert "ci_low" not in md.split("### IQM")[0]

    written = make_report(table, tmp_path / "out", baselines=False, rounds=50)
    csv = pd.read_csv(written["table:paper_table"])
    got = csv.set_index(["dataset", "model"])[["mean", "std"]].sort_index()
    pd.testing.assert_frame_equal(got, expect.sort_index(), check_names=False)
    assert csv.groupby("dataset")["best"].sum().eq(1).all()


def latex_rows(tex: str) -> list[list[str]]:
    body = re.search(r"\\midrule\n(.*?)\\bottomrule", tex, re.S).group(1)
    return [line.removesuffix(r" \\").split(" & ") for line in body.strip().splitlines()]


def test_latex_table_is_structurally_sound(tmp_path):
    table = small_results(models=(("mars_net", 0.85), ("tiny&cnn", 0.7), (LONG, 0.78)),
                          regimes=("feature_extraction",), curves=False)
    written = make_report(table, tmp_path / "out", baselines=False, rounds=50)
    tex = written["table:paper_table.tex"].read_text()
    unescaped = re.sub(r"\\[{}&_%$#]", "", tex)
    code = "\n".join(line.split("%")[0] for line in unescaped.splitlines())  # drop comments
    depth = 0
    for ch in code:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    for env in ("table", "tabular"):
        assert code.count(f"\\begin{{{env}}}") == code.count(f"\\end{{{env}}}") == 1
    assert r"mars\_net" in tex and r"tiny\&cnn" in tex and "tiny&cnn" not in code.replace(r"\&", "")
    header = re.search(r"\\toprule\n(.*?) \\\\\n", tex).group(1).split(" & ")
    models = header[1:]
    assert header[0] == "Dataset" and len(models) == 3
    assert re.search(r"\\begin\{tabular\}\{l(c+)\}", tex).group(1) == "ccc"
    rows = latex_rows(tex)
    assert [r[0] for r in rows] == [r"mb-domars16k", r"mb-landmark\_cls", r"mb-surface\_cls"]
    means = table.groupby(["dataset", "model"])["value"].mean()
    for row, dataset in zip(rows, ["mb-domars16k", "mb-landmark_cls", "mb-surface_cls"]):
        assert len(row) == 1 + len(models)
        bold = [i for i, cell in enumerate(row[1:]) if cell.startswith(r"\textbf{")]
        values = [float(re.search(r"(\d\.\d{3})", cell).group(1)) for cell in row[1:]]
        assert len(bold) == 1 and values[bold[0]] == max(values)
        best = means[dataset].idxmax()
        assert models[bold[0]] == best.replace("_", r"\_").replace("&", r"\&")
        assert all(r"$\pm$" in cell for cell in row[1:])


# -- normalisation: one model, provenance ------------------------------------------------------

def test_no_aggregate_for_one_model_with_bounds_from_its_own_runs():
    table = small_results(models=(("solo", 0.8),), regimes=("feature_extraction",), curves=False)
    derived = Normaliser.from_table(select_headline(table), version="table",
                                    source="min and max of the input runs (full training set)")
    data = build(table, normaliser=derived)
    assert data.task_scores.empty and data.leaderboard is None
    assert data.profiles.empty and data.improvement.empty
    assert data.excluded["reason"].str.startswith("needs ≥2 models").all() and len(data.excluded) == 3
    html, md = texts(data)
    for text in (html, md):
        assert "needs ≥2 models" in text
        assert "0.500" not in text and "1.000" not in text.split("Leaderboard")[-1]
        assert "fixed" not in text.split("Results per dataset")[0].lower()  # the header says derived
        assert "derived from these runs" in text
    assert {f.name for f in make_figures(data)} == {"classification_datasets"}
    # the matrix (raw scores) is still shown
    values = table.loc[table["dataset"] == "mb-domars16k", "value"]
    assert matrix_cells(html)[("mb-domars16k", "solo")] == (f"{values.mean():.3f} ± {values.std():.3f}", True)


def test_normaliser_labels_say_where_the_bounds_came_from():
    table = small_results(regimes=("feature_extraction",), curves=False)
    derived = Normaliser.from_table(select_headline(table), version="table", source="input runs")
    data = build(table, normaliser=derived)
    assert set(data.provenance["kind"]) == {"derived"} and not data.task_scores.empty
    html, md = texts(data)
    assert "with bounds derived from these runs" in html and "with fixed" not in html
    assert "derived from these runs" in md
    paper = build(table)
    assert set(paper.provenance["kind"]) == {"paper"}
    assert "with fixed, saved bounds" in render_html(paper, [])
    mixed = build(table.assign(dataset=table["dataset"].replace("mb-surface_cls", "own-data")),
                  normaliser=default_normaliser().merged(Normaliser.from_table(
                      select_headline(table.assign(dataset=table["dataset"].replace(
                          "mb-surface_cls", "own-data"))), version="table", source="input runs")))
    kinds = mixed.provenance.set_index("dataset")["kind"]
    assert kinds["own-data"] == "derived" and kinds["mb-domars16k"] == "paper"
    assert "except bounds derived from these runs for own-data" in render_html(mixed, [])


# -- figures: colours and layout ---------------------------------------------------------------

@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    """A synthetic report with every figure kind, its data and the figures before rendering."""
    table = small_results(models=(("mars-net", 0.85), (LONG, 0.7)))
    data = build(table, records=full_records(table, tmp_path_factory.mktemp("predictions")))
    drawn = []
    original = plots.png_bytes

    def keep(fig):
        fig.canvas.draw()
        drawn.append((fig, fig.canvas.get_renderer()))
        return b"png"

    plots.png_bytes = keep
    try:
        figures = make_figures(data)
    finally:
        plots.png_bytes = original
    yield data, figures, drawn
    for fig, _ in drawn:
        plots.plt.close(fig)


def test_one_colour_per_model_in_every_figure(rich):
    data, figures, _ = rich
    # partition and few-shot curves twice: raw, and as the paper draws them (normalised)
    assert [f.section for f in figures] == ["tasks", "profiles", "improvement", "rankings", "regimes",
                                            "datasets", "partition", "partition", "few_shot",
                                            "few_shot", "per_class", "history", "calibration",
                                            "calibration", "cost"]
    expected = plots.model_colours(data.table["model"].unique(), data.baseline_models)
    assert expected["mars-net"] != expected[LONG]
    for f in figures:
        assert set(f.colours) == {"mars-net", LONG}, f.name
        assert f.colours == {m: expected[m] for m in f.colours}, f.name
    # and the artists drawn really are in those colours
    fig, colours = plots.interval_plot(data.task_scores, "classification", expected, [])
    drawn = {tuple(line.get_color()) for line in fig.axes[0].lines}
    assert drawn == {expected["mars-net"], expected[LONG]} and colours == expected
    plots.plt.close(fig)


def drawn_ticklabels(axis) -> list:
    """The tick labels matplotlib draws: those of ticks inside the view interval."""
    lo, hi = sorted(axis.get_view_interval())
    eps = 1e-9 * max(1.0, abs(hi - lo))
    return [label for loc, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
            if lo - eps <= loc <= hi + eps and label.get_visible() and label.get_text()]


def _overlaps(a, b, slack=1.0) -> bool:
    return (a.x0 + slack < b.x1 and b.x0 + slack < a.x1 and a.y0 + slack < b.y1 and b.y0 + slack < a.y1)


def test_figures_have_no_clipped_text_colliding_ticks_or_offsets(rich):
    _, figures, drawn = rich
    assert len(drawn) == len(figures)
    for (fig, renderer), f in zip(drawn, figures):
        box = fig.bbox
        ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
                 for t in axis.get_majorticklabels() + axis.get_minorticklabels()}
        shown = [t for ax in fig.axes if ax.get_visible() for axis in (ax.xaxis, ax.yaxis)
                 for t in drawn_ticklabels(axis)]
        others = [t for t in fig.findobj(matplotlib.text.Text) if id(t) not in ticks]
        for text in others + shown:
            if not text.get_visible() or not text.get_text().strip():
                continue
            if text.axes is not None and not text.axes.get_visible():
                continue
            ext = text.get_window_extent(renderer)
            assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1 and ext.y0 >= box.y0 - 1 \
                and ext.y1 <= box.y1 + 1, (f.name, text.get_text(), ext, box)
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            for axis in (ax.xaxis, ax.yaxis):
                labels = [t.get_window_extent(renderer) for t in drawn_ticklabels(axis)]
                for a, b in combinations(labels, 2):
                    assert not _overlaps(a, b), (f.name, [t.get_text() for t in axis.get_ticklabels()])
                formatter = axis.get_major_formatter()
                if isinstance(formatter, ScalarFormatter):
                    assert not formatter.get_useOffset() and formatter.get_offset() == "", f.name


def test_curve_tick_labels_of_the_paper_partitions_do_not_collide():
    from marsbench.aggregate import paper_baselines, variant_curves

    runs = select_headline(paper_baselines())
    curves = variant_curves(runs[runs["task"] == "classification"], "partition", rounds=20)
    colours = plots.model_colours(curves["model"].unique(), curves["model"].unique())
    fig, _ = plots.curve_plot(curves, "classification", "partition", colours, list(colours))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        if ax.get_visible():
            labels = [t.get_window_extent(renderer) for t in drawn_ticklabels(ax.xaxis)]
            assert len(labels) >= 4
            assert not any(_overlaps(a, b) for a, b in combinations(labels, 2))
    plots.plt.close(fig)
