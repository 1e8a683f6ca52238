"""Report figures with matplotlib (Agg backend, no display needed). Each plotting function takes
aggregate tables of `ReportData` and returns ``(Figure, colours)``: the figure and the colour it
drew each model in (a subset of `model_colours`, so a model has one colour in every figure);
`png_bytes` renders a figure.

Layout: constrained layout (titles, suptitles and outside legends are never clipped), long model
names wrapped, categorical x labels rotated, no offset or scientific notation on score axes.
Published baselines are drawn in muted colours with hollow markers / dashed lines so the user's
own models stand out.
"""

from __future__ import annotations

import functools
import io
import math
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # must precede pyplot; the report never opens a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator, ScalarFormatter  # noqa: E402

from ..vocab import REGIMES  # noqa: E402

DPI = 90
# own models: tab10, then the darker tab20b hues; baselines: the light twins of tab10
_OWN_COLOURS = tuple(plt.get_cmap("tab10").colors) + tuple(plt.get_cmap("tab20b").colors[0::2])
_BASELINE_COLOURS = plt.get_cmap("tab20").colors[1::2]
_REGIME_MARKERS = {"scratch": "s", "feature_extraction": "o", "fine_tuning": "^", "zero_shot": "D",
                   "knn": "v", "linear_probe": "P", "mlp_probe": "X", "few_shot_episodes": "*"}
_REGIME_LINES = {"feature_extraction": "-", "fine_tuning": "-.", "scratch": ":", "zero_shot": (0, (6, 2)),
                 "knn": (0, (1, 1)), "linear_probe": (0, (3, 1, 1, 1)), "mlp_probe": (0, (5, 2, 1, 2)),
                 "few_shot_episodes": (0, (2, 2))}
_RC = {"axes.formatter.useoffset": False, "axes.formatter.limits": (-7, 7),
       "axes.titlesize": 10, "figure.titlesize": 11, "font.size": 9}
Colours = dict[str, tuple]


def model_colours(models: Sequence[str], baselines: Sequence[str]) -> Colours:
    """A fixed colour per model, the same in every figure of a report: own models in sorted
    order over a qualitative palette, published baselines over its light twins."""
    own = [m for m in sorted(set(models)) if m not in set(baselines)]
    base = [m for m in sorted(set(models)) if m in set(baselines)]
    colours = {m: tuple(_OWN_COLOURS[i % len(_OWN_COLOURS)]) for i, m in enumerate(own)}
    colours.update({m: tuple(_BASELINE_COLOURS[i % len(_BASELINE_COLOURS)]) for i, m in enumerate(base)})
    return colours


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG; closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def mark_synthetic(fig: Figure) -> None:
    """A large, faint 'SYNTHETIC DATA' across the figure (it travels with the PNG), sized to stay
    inside it: diagonal where the figure is tall enough, else level."""
    width, height = fig.get_size_inches()
    size = min(44.0, 0.75 * width * 72 / (14 * 0.7), 0.6 * height * 72)
    tilt = 18 if height > 0.5 * width else 0
    fig.text(0.5, 0.5, "SYNTHETIC DATA", fontsize=size, color="#c00000", alpha=0.13,
             rotation=tilt, ha="center", va="center", weight="bold", zorder=0, in_layout=False)


def _styled(fn):
    """Draw under the report's rc settings (no axis offsets) without touching global state."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(_RC):
            return fn(*args, **kwargs)
    return wrapper


def _figure(width: float, height: float, rows: int = 1, cols: int = 1, n: int | None = None):
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, layout="constrained")
    flat = list(axes.ravel())
    n = len(flat) if n is None else n
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _grid(n: int, width: float = 4.4, height: float = 3.0) -> tuple[Figure, list]:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    return _figure(width * cols, height * rows, rows, cols, n)


def wrap(label: str, width: int = 26) -> str:
    """A long label on several lines (at spaces, '·' and '/' where possible)."""
    return "\n".join(textwrap.wrap(str(label), width, break_long_words=True,
                                   break_on_hyphens=True)) or str(label)


def fit(text: str, width_in: float, fontsize: float) -> str:
    """``text`` wrapped to lines that fit ``width_in`` inches at ``fontsize`` points."""
    chars = max(12, int(width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.wrap(text, chars)) or text


def _suptitle(fig: Figure, text: str) -> None:
    fig.suptitle(fit(text, fig.get_figwidth() - 0.3, _RC["figure.titlesize"]))


def _title(ax, text: str, fontsize: float = _RC["axes.titlesize"]) -> None:
    width = ax.get_position().width * ax.figure.get_figwidth()
    ax.set_title(fit(text, width, fontsize), fontsize=fontsize)


def _plain(ax, axis: str = "both") -> None:
    """No offset ('+0.8') and no scientific notation on a linear score axis."""
    for name in ("x", "y") if axis == "both" else (axis,):
        formatter = getattr(ax, f"{name}axis").get_major_formatter()
        if isinstance(formatter, ScalarFormatter):
            formatter.set_useOffset(False)
            formatter.set_scientific(False)


def _rotate_x(ax, labels: Sequence[str], fontsize: float = 8) -> None:
    ax.set_xticks(range(len(labels)), [wrap(x, 18) for x in labels], rotation=35, ha="right",
                  rotation_mode="anchor", fontsize=fontsize)


def _spaced_labels(ticks: Sequence[float], min_gap: float = 0.11) -> list[str]:
    """Labels for ticks on a log axis, blank where a tick sits too close (in decades) to the
    last labelled one (0.2 and 0.25), so labels never collide; the last tick keeps its label."""
    labels, last = [], None
    for i, t in enumerate(ticks):
        if last is not None and math.log10(t / last) < min_gap:
            if i == len(ticks) - 1 and labels[-1]:  # keep the end of the axis labelled
                labels[-1] = ""
            else:
                labels.append("")
                continue
        labels.append(f"{t:g}")
        last = t
    return labels


def _label(model: str, regime: str, several_regimes: bool) -> str:
    return f"{model} · {regime}" if several_regimes else model


@_styled
def interval_plot(scores: pd.DataFrame, task: str, colours: Colours,
                  baselines: Sequence[str], confidence: float = 0.95) -> tuple[Figure, Colours]:
    """IQM of normalised scores with its interval, one row per model (and regime), best on top."""
    rows = scores[scores["task"] == task].sort_values("iqm")
    several_regimes = rows["regime"].nunique() > 1
    fig, (ax,) = _figure(7.5, 0.42 * len(rows) + 1.5)
    used: Colours = {}
    for y, r in enumerate(rows.itertuples(index=False)):
        colour = used.setdefault(r.model, colours[r.model])
        ax.plot([r.ci_low, r.ci_high], [y, y], color=colour, lw=5, alpha=0.55, solid_capstyle="butt")
        ax.plot(r.iqm, y, "o", ms=7, color=colour, mfc="white" if r.model in baselines else colour)
    ax.set_yticks(range(len(rows)), [wrap(_label(m, g, several_regimes), 34)
                                     for m, g in zip(rows["model"], rows["regime"])], fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(f"IQM of min-max normalised score ({100 * confidence:g} % CI)")
    _title(ax, f"{task}: aggregate over datasets × seeds (full training set)")
    ax.grid(axis="x", alpha=0.3)
    _plain(ax, "x")
    return fig, used


@_styled
def regime_plot(scores: pd.DataFrame, task: str, colours: Colours,
                baselines: Sequence[str] = ()) -> tuple[Figure, Colours]:
    """IQM with interval per model (its colour), one marker shape per regime, side by side."""
    rows = scores[scores["task"] == task]
    models = sorted(rows["model"].unique())
    regimes = [g for g in REGIMES if g in set(rows["regime"])]
    fig, (ax,) = _figure(max(6.0, 0.9 * len(models) + 2.5), 4.4)
    width = 0.8 / len(regimes)
    used: Colours = {}
    for j, regime in enumerate(regimes):
        part = rows[rows["regime"] == regime].set_index("model")
        for i, m in enumerate(models):
            if m not in part.index:
                continue
            r = part.loc[m]
            colour = used.setdefault(m, colours[m])
            x = i - 0.4 + width * (j + 0.5)
            ax.errorbar([x], [r["iqm"]], yerr=[[r["iqm"] - r["ci_low"]], [r["ci_high"] - r["iqm"]]],
                        fmt=_REGIME_MARKERS.get(regime, "o"), capsize=3, color=colour,
                        mfc="white" if m in baselines else colour)
    _rotate_x(ax, models)
    handles = [Line2D([], [], ls="", marker=_REGIME_MARKERS.get(g, "o"), color="0.3", label=g)
               for g in regimes]
    ax.legend(handles=handles, fontsize=8, title="regime", title_fontsize=8)
    ax.set_ylabel("IQM of normalised score")
    _title(ax, f"{task}: training regimes")
    ax.grid(axis="y", alpha=0.3)
    _plain(ax, "y")
    return fig, used


@_styled
def dataset_plot(summary: pd.DataFrame, task: str, colours: Colours,
                 baselines: Sequence[str], confidence: float = 0.95) -> tuple[Figure, Colours]:
    """Per dataset: raw-metric IQM over seeds with its interval, one row per model and regime."""
    rows = summary[summary["task"] == task]
    datasets = sorted(rows["dataset"].unique())
    fig, axes = _grid(len(datasets), height=max(2.4, 0.3 * rows.groupby("dataset").size().max() + 1.3))
    used: Colours = {}
    for ax, dataset in zip(axes, datasets):
        part = rows[rows["dataset"] == dataset].sort_values(["model", "regime"])
        several_regimes = part["regime"].nunique() > 1
        for y, r in enumerate(part.itertuples(index=False)):
            colour = used.setdefault(r.model, colours[r.model])
            ax.plot([r.ci_low, r.ci_high], [y, y], color=colour, lw=4, alpha=0.55)
            ax.plot(r.iqm, y, "o", ms=5, color=colour, mfc="white" if r.model in baselines else colour)
        ax.set_yticks(range(len(part)), [wrap(_label(m, g, several_regimes), 24)
                                         for m, g in zip(part["model"], part["regime"])], fontsize=7)
        ax.set_ylim(-0.6, len(part) - 0.4)
        _title(ax, dataset, 9)
        ax.set_xlabel(part["metric"].iloc[0], fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
        ax.grid(axis="x", alpha=0.3)
        _plain(ax, "x")
    _suptitle(fig, f"{task}: raw metric per dataset (IQM over seeds, {100 * confidence:g} % CI)")
    return fig, used


def _legend_below(fig: Figure, handles: dict, ncol: int = 4) -> None:
    """A legend under the axes, with as many columns as fit the figure's width."""
    labels = [wrap(k, 30) for k in handles]
    widest = max(max(len(line) for line in k.split("\n")) for k in labels)
    fits = int(fig.get_figwidth() // (0.068 * widest + 0.9))  # 8 pt text + handle + gap, inches
    fig.legend(list(handles.values()), labels, loc="outside lower center",
               ncol=max(1, min(ncol, fits, len(labels))), fontsize=8)


@_styled
def curve_plot(curves: pd.DataFrame, task: str, kind: str, colours: Colours,
               baselines: Sequence[str], confidence: float = 0.95) -> tuple[Figure, Colours]:
    """Metric against training fraction or shots, per dataset, with interval bands."""
    rows = curves[curves["task"] == task]
    datasets = sorted(rows["dataset"].unique())
    fig, axes = _grid(len(datasets))
    used: Colours = {}
    legend: dict[str, object] = {}
    for ax, dataset in zip(axes, datasets):
        part = rows[rows["dataset"] == dataset]
        several_regimes = rows["regime"].nunique() > 1
        for (model, regime), line in part.groupby(["model", "regime"], sort=True):
            line = line.sort_values("x")
            colour = used.setdefault(model, colours[model])
            style = "--" if model in baselines else (
                _REGIME_LINES.get(regime, "-") if several_regimes else "-")
            marker = _REGIME_MARKERS.get(regime, "o") if several_regimes else "o"
            label = _label(model, regime, several_regimes)
            (handle,) = ax.plot(line["x"], line["mean"], ls=style, marker=marker, ms=3.5, color=colour,
                                label=label)
            legend.setdefault(label, handle)
            ax.fill_between(line["x"], line["ci_low"], line["ci_high"], color=colour, alpha=0.18)
        ax.set_xscale("log")
        ticks = sorted(part["x"].unique())
        ax.xaxis.set_major_locator(FixedLocator(ticks))  # few labelled ticks: cheap to lay out
        ax.xaxis.set_major_formatter(FixedFormatter(_spaced_labels(ticks)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.tick_params(axis="x", labelrotation=45 if len(ticks) > 5 else 0)
        _title(ax, dataset, 9)
        ax.set_xlabel("fraction of training set" if kind == "partition" else "shots per class", fontsize=8)
        ax.set_ylabel(part["metric"].iloc[0], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        _plain(ax, "y")
    title = "training-set size" if kind == "partition" else "few-shot"
    _suptitle(fig, f"{task}: {title} curves (mean over seeds, {100 * confidence:g} % CI band)")
    _legend_below(fig, dict(sorted(legend.items())), ncol=5)
    return fig, used


@_styled
def profile_plot(profiles: pd.DataFrame, task: str, colours: Colours,
                 baselines: Sequence[str], confidence: float = 0.95) -> tuple[Figure, Colours]:
    """Performance profiles: fraction of runs with normalised score > tau, per model, one panel
    per regime, with the bootstrap band."""
    rows = profiles[profiles["task"] == task]
    regimes = [g for g in REGIMES if g in set(rows["regime"])]
    fig, axes = _figure(max(6.5, 5.2 * len(regimes)), 3.8, 1, len(regimes))
    used: Colours = {}
    legend: dict[str, object] = {}
    for ax, regime in zip(axes, regimes):
        for model, line in rows[rows["regime"] == regime].groupby("model", sort=True):
            colour = used.setdefault(model, colours[model])
            (handle,) = ax.plot(line["tau"], line["fraction"], "--" if model in baselines else "-",
                                color=colour, lw=1.6, label=model)
            ax.fill_between(line["tau"], line["ci_low"], line["ci_high"], color=colour, alpha=0.15, lw=0)
            legend.setdefault(model, handle)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("normalised score τ")
        ax.set_ylabel("fraction of runs with score > τ")
        _title(ax, regime if len(regimes) > 1 else f"{task}: performance profile ({regime})")
        ax.grid(alpha=0.3)
        _plain(ax)
    if len(regimes) > 1:
        _suptitle(fig, f"{task}: performance profiles (datasets × seeds, {100 * confidence:g} % CI band)")
    _legend_below(fig, legend)
    return fig, used


@_styled
def improvement_plot(improvement: pd.DataFrame, task: str, colours: Colours,
                     baselines: Sequence[str] = ()) -> tuple[Figure, Colours]:
    """P(row model beats column model) on their common datasets, one heatmap per regime; own
    models' tick labels in their colours."""
    rows = improvement[improvement["task"] == task]
    regimes = [g for g in REGIMES if g in set(rows["regime"])]
    n = max(rows.groupby("regime")["model"].nunique())
    side = max(4.2, 0.42 * n + 2.6)
    fig, axes = _figure(side * len(regimes) + 0.8, side, 1, len(regimes))
    used: Colours = {}
    image = None
    for ax, regime in zip(axes, regimes):
        part = rows[rows["regime"] == regime]
        models = sorted(set(part["model"]))
        grid = part.pivot(index="model", columns="other", values="probability").reindex(
            index=models, columns=models)
        image = _probability_heatmap(ax, grid)
        ax.set_yticks(range(len(models)), [wrap(m, 24) for m in models], fontsize=8)
        _rotate_x(ax, models)
        _colour_ticklabels(ax, models, colours, baselines, used)
        ax.set_xlabel("other model")
        ax.set_ylabel("model")
        _title(ax, regime if len(regimes) > 1 else f"{task}: P(model beats other) ({regime})")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="probability of improvement")
    if len(regimes) > 1:
        _suptitle(fig, f"{task}: probability of improvement (a run of the row model beats a run "
                  "of the column model on the same dataset)")
    return fig, used


def _panels(rows: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(dataset, regime, panel title): one panel per dataset, per regime where there are several."""
    several = rows["regime"].nunique() > 1
    keys = sorted(set(zip(rows["dataset"], rows["regime"])),
                  key=lambda k: (k[0], REGIMES.index(k[1]) if k[1] in REGIMES else 99))
    return [(d, g, f"{d} · {g}" if several else d) for d, g in keys]


@_styled
def per_class_plot(per_class: pd.DataFrame, task: str, colours: Colours) -> tuple[Figure, Colours]:
    """Per dataset (and regime): each class's test score (mean over seeds, std as error bar), one
    bar per model."""
    rows = per_class[per_class["task"] == task]
    panels = _panels(rows)
    cols = min(2, len(panels))
    rows_n = math.ceil(len(panels) / cols)
    bars = max(rows[rows["dataset"] == d]["class"].nunique() * rows["model"].nunique() for d, _, _ in panels)
    height = max(2.6, 0.11 * bars + 1.4)
    fig, axes = _figure(6.4 * cols, height * rows_n, rows_n, cols, len(panels))
    used: Colours = {}
    legend: dict[str, object] = {}
    for ax, (dataset, regime, title) in zip(axes, panels):
        part = rows[(rows["dataset"] == dataset) & (rows["regime"] == regime)]
        classes = list(dict.fromkeys(part["class"]))
        models = sorted(part["model"].unique())
        bar = 0.8 / len(models)
        for k, model in enumerate(models):
            line = part[part["model"] == model].set_index("class").reindex(classes)
            colour = used.setdefault(model, colours[model])
            ys = np.arange(len(classes)) - 0.4 + bar * (k + 0.5)
            handle = ax.barh(ys, line["mean"], height=bar, color=colour,
                             xerr=line["std"].fillna(0), error_kw={"lw": 0.8, "ecolor": "0.3"})
            legend.setdefault(model, handle)
        ax.set_yticks(range(len(classes)), [wrap(c, 22) for c in classes], fontsize=7)
        ax.set_ylim(len(classes) - 0.5, -0.5)
        ax.set_xlabel(part["metric"].iloc[0], fontsize=8)
        _title(ax, title, 9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
        _plain(ax, "x")
    _suptitle(fig, f"{task}: per-class test scores (mean over seeds ± std, full training set)")
    _legend_below(fig, legend)
    return fig, used


@_styled
def history_plot(history: pd.DataFrame, task: str, colours: Colours) -> tuple[Figure, Colours]:
    """Per dataset (and regime): validation (solid) and training (dashed) loss against epoch,
    mean over seeds, one colour per model."""
    rows = history[history["task"] == task]
    panels = _panels(rows)
    fig, axes = _grid(len(panels))
    used: Colours = {}
    legend: dict[str, object] = {}
    for ax, (dataset, regime, title) in zip(axes, panels):
        part = rows[(rows["dataset"] == dataset) & (rows["regime"] == regime)]
        for model, line in part.groupby("model", sort=True):
            mean = line.groupby("epoch")[["train_loss", "val_loss"]].mean()
            colour = used.setdefault(model, colours[model])
            (handle,) = ax.plot(mean.index, mean["val_loss"], "-", marker="o", ms=2.5, color=colour)
            ax.plot(mean.index, mean["train_loss"], "--", color=colour, alpha=0.8)
            legend.setdefault(model, handle)
        _title(ax, title, 9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        _plain(ax)
    legend["validation loss"] = Line2D([], [], color="0.3", ls="-")
    legend["training loss"] = Line2D([], [], color="0.3", ls="--")
    _suptitle(fig, f"{task}: training curves (mean over seeds)")
    _legend_below(fig, legend, ncol=5)
    return fig, used


def _probability_heatmap(ax, grid: pd.DataFrame):
    """A models x models probability grid on a red-blue scale centred on 0.5, each cell written
    out while they stay readable (up to 14 models); returns the image (for the colour bar)."""
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="RdBu", vmin=0, vmax=1)
    if len(grid) <= 14:
        for i in range(len(grid)):
            for j in range(len(grid.columns)):
                v = grid.iat[i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(v - 0.5) > 0.3 else "black")
    return image


def _colour_ticklabels(ax, models: Sequence[str], colours: Colours, baselines: Sequence[str],
                       used: Colours) -> None:
    """Own models' tick labels in their colour, baselines' (light colours) in grey."""
    for m, ylabel, xlabel in zip(models, ax.get_yticklabels(), ax.get_xticklabels()):
        colour = "0.35" if m in baselines else used.setdefault(m, colours[m])
        ylabel.set_color(colour)
        xlabel.set_color(colour)


@_styled
def win_probability_plot(wins: pd.DataFrame, task: str, colours: Colours,
                         baselines: Sequence[str] = ()) -> tuple[Figure, Colours]:
    """P(row model's aggregate score > column model's) under the paired bootstrap, one heatmap
    per regime, models best first; tick labels in the models' colours."""
    rows = wins[wins["task"] == task]
    regimes = [g for g in REGIMES if g in set(rows["regime"])]
    n = max(rows.groupby("regime")["model"].nunique())
    side = max(4.2, 0.42 * n + 2.6)
    fig, axes = _figure(side * len(regimes) + 0.8, side + 0.4, 1, len(regimes))
    used: Colours = {}
    image = None
    for ax, regime in zip(axes, regimes):
        part = rows[rows["regime"] == regime]
        models = list(dict.fromkeys([*part["model"], *part["opponent"]]))  # best first
        grid = part.pivot(index="model", columns="opponent", values="probability").reindex(
            index=models, columns=models)
        image = _probability_heatmap(ax, grid)
        ax.set_yticks(range(len(models)), [wrap(m, 24) for m in models], fontsize=8)
        # vertical: a wrapped (multi-line) label at an angle would lean into its neighbour's
        ax.set_xticks(range(len(models)), [wrap(m, 18) for m in models], rotation=90, ha="center",
                      va="top", fontsize=8)
        _colour_ticklabels(ax, models, colours, baselines, used)
        ax.set_xlabel("other model")
        ax.set_ylabel("model")
        _title(ax, regime if len(regimes) > 1 else f"{task}: P(row model's score > column model's) ({regime})")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="win probability (paired bootstrap)")
    if len(regimes) > 1:
        _suptitle(fig, f"{task}: win probability (the row model's aggregate score beats the "
                  "column model's in a paired bootstrap round)")
    return fig, used


@_styled
def reliability_plot(bins: pd.DataFrame, task: str, colours: Colours) -> tuple[Figure, Colours]:
    """Per dataset (and regime): accuracy against mean confidence in each confidence bin, one
    line per model (test predictions pooled over its seeds), the diagonal = perfect calibration."""
    rows = bins[(bins["task"] == task) & (bins["count"] > 0)]
    panels = _panels(rows)
    fig, axes = _grid(len(panels), width=4.2, height=3.6)
    used: Colours = {}
    legend: dict[str, object] = {}
    for ax, (dataset, regime, title) in zip(axes, panels):
        part = rows[(rows["dataset"] == dataset) & (rows["regime"] == regime)]
        ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1)
        for model, line in part.groupby("model", sort=True):
            line = line.sort_values("bin")
            colour = used.setdefault(model, colours[model])
            size = 12 + 60 * line["count"] / line["count"].max()
            (handle,) = ax.plot(line["confidence"], line["accuracy"], "-", color=colour, lw=1.4)
            ax.scatter(line["confidence"], line["accuracy"], s=size, color=colour, zorder=3,
                       edgecolor="white", linewidth=0.5)
            legend.setdefault(model, handle)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("confidence (top label)", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        _title(ax, title, 9)
        _plain(ax)
    legend["perfect calibration"] = Line2D([], [], ls="--", color="0.5")
    _suptitle(fig, f"{task}: reliability diagrams (15 confidence bins; test predictions pooled "
              "over each model's seeds; marker area ~ decisions in the bin)")
    _legend_below(fig, legend)
    return fig, used


@_styled
def risk_coverage_plot(curves: pd.DataFrame, task: str, colours: Colours) -> tuple[Figure, Colours]:
    """Per dataset (and regime): selective risk against coverage (abstaining on the least
    confident decisions first), one line per model, test predictions pooled over its seeds."""
    rows = curves[curves["task"] == task]
    panels = _panels(rows)
    fig, axes = _grid(len(panels), width=4.2, height=3.2)
    used: Colours = {}
    legend: dict[str, object] = {}
    for ax, (dataset, regime, title) in zip(axes, panels):
        part = rows[(rows["dataset"] == dataset) & (rows["regime"] == regime)]
        for model, line in part.groupby("model", sort=True):
            colour = used.setdefault(model, colours[model])
            (handle,) = ax.plot(line["coverage"], line["risk"], "-", color=colour, lw=1.5)
            legend.setdefault(model, handle)
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("coverage (share of decisions kept)", fontsize=8)
        ax.set_ylabel("selective risk (1 − accuracy)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        _title(ax, title, 9)
        _plain(ax)
    _suptitle(fig, f"{task}: risk-coverage curves (test predictions pooled over each model's "
              "seeds; lower is better)")
    _legend_below(fig, legend)
    return fig, used


def _cost_axis(ax, values: pd.Series, *, log: bool | None = None, eng: bool = False) -> None:
    """A cost axis: log scale (always when ``log``; by default where the costs span more than a
    decade) with ticks at 1, 2, 5 x 10^k (1 x 10^k over wide spans) and plain or engineering
    labels (``eng``: 2G, 500M); otherwise linear without offset."""
    lo, hi = float(values.min()), float(values.max())
    if log is None:
        log = lo > 0 and hi / lo > 10
    if not log or lo <= 0:
        _plain(ax, "x")
        pad = 0.08 * (hi - lo) if hi > lo else 0.1 * max(abs(hi), 1.0)
        ax.set_xlim(lo - pad, hi + pad)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        return
    ax.set_xscale("log")
    left, right = lo / 1.6, hi * 1.6
    ax.set_xlim(left, right)
    subs = (1.0,) if math.log10(right / left) > 2.5 else (1.0, 2.0, 5.0)
    ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(left)), math.ceil(math.log10(right)) + 1)
             for m in subs if left <= m * 10.0 ** k <= right]
    if len(ticks) > 7:  # keep every n-th decade
        step = math.ceil(len(ticks) / 6)
        ticks = ticks[::step]
    fmt = matplotlib.ticker.EngFormatter(places=0, sep="") if eng else None
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter([fmt(t) if fmt else f"{t:g}" for t in ticks]))
    ax.xaxis.set_minor_locator(NullLocator())


@_styled
def cost_plot(cost: pd.DataFrame, task: str, colours: Colours,
              baselines: Sequence[str] = ()) -> tuple[Figure, Colours]:
    """Headline score against cost, one row per regime: FLOPs per image (log x) and mean wall
    time per run; the Pareto front (no other model scores higher for less) as a step line with
    ringed points."""
    rows = cost[(cost["task"] == task) & cost["score"].notna()]
    regimes = [g for g in REGIMES if g in set(rows["regime"])]
    axes_spec = [(c, label, flag) for c, label, flag in (
        ("flops_per_image", "FLOPs per image (forward pass, log scale)", "pareto_flops"),
        ("total_s", "mean wall time per run (s)", "pareto_time")) if rows[c].notna().any()]
    fig, axes = _figure(5.0 * len(axes_spec), 3.6 * len(regimes), len(regimes), len(axes_spec))
    used: Colours = {}
    legend: dict[str, object] = {}
    for r, regime in enumerate(regimes):
        part = rows[rows["regime"] == regime]
        for c, (column, label, flag) in enumerate(axes_spec):
            ax = axes[r * len(axes_spec) + c]
            points = part[part[column].notna()]
            if points.empty:
                ax.text(0.5, 0.5, f"no {column} recorded", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8, color="0.4")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                front = points[points[flag]].sort_values(column)
                if len(front):
                    xs = [*front[column], float(points[column].max())]
                    ys = [*front["score"], float(front["score"].iloc[-1])]
                    (handle,) = ax.step(xs, ys, where="post", ls="--", color="0.35", lw=1, zorder=1)
                    legend.setdefault("Pareto front (higher score, lower cost)", handle)
                    ax.scatter(front[column], front["score"], s=140, facecolor="none",
                               edgecolor="0.2", lw=1.2, zorder=2)
                for p in points.itertuples(index=False):
                    colour = used.setdefault(p.model, colours[p.model])
                    handle = ax.scatter([getattr(p, column)], [p.score], s=45, zorder=3,
                                        color=colour, edgecolor=colour,
                                        facecolor="white" if p.model in baselines else colour)
                    legend.setdefault(p.model, handle)
                if column == "flops_per_image":
                    _cost_axis(ax, points[column], log=True, eng=True)
                else:
                    _cost_axis(ax, points[column])
                ax.set_ylabel(points["score_kind"].iloc[0], fontsize=8)
                _plain(ax, "y")
                ax.grid(alpha=0.3)
            ax.set_xlabel(label, fontsize=8)
            ax.tick_params(labelsize=7)
            _title(ax, regime, 9)
    _suptitle(fig, f"{task}: score against cost (full training set; ringed: the Pareto front)")
    if legend:
        _legend_below(fig, legend)
    return fig, used
