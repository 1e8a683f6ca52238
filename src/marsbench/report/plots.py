"""Report figures with matplotlib (Agg backend, no display needed). Each function takes the
aggregate tables of `ReportData` and returns a `Figure`; `png_bytes` renders one.

Published baselines are drawn in muted colours with hollow markers / dashed lines so the user's
own models stand out.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # must precede pyplot; the report never opens a window
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator  # noqa: E402

from ..vocab import REGIMES  # noqa: E402

DPI = 90
_OWN_COLOURS = plt.get_cmap("tab10").colors
_BASELINE_COLOURS = plt.get_cmap("tab20").colors[1::2]  # light twins of tab10


def model_colours(models: Sequence[str], baselines: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per model, the same in every figure of a report."""
    own = [m for m in sorted(set(models)) if m not in set(baselines)]
    base = [m for m in sorted(set(models)) if m in set(baselines)]
    colours = {m: _OWN_COLOURS[i % len(_OWN_COLOURS)] for i, m in enumerate(own)}
    colours.update({m: _BASELINE_COLOURS[i % len(_BASELINE_COLOURS)] for i, m in enumerate(base)})
    return colours


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG; closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)  # layout set by each plot: no costly second "tight" pass
    plt.close(fig)
    return buf.getvalue()


def _grid(n: int, width: float = 4.2, height: float = 3.0) -> tuple[Figure, list]:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def interval_plot(scores: pd.DataFrame, task: str, colours: dict[str, tuple],
                  baselines: Sequence[str], confidence: float = 0.95) -> Figure:
    """IQM of normalised scores with its interval, one row per model (and regime), best on top."""
    rows = scores[scores["task"] == task].sort_values("iqm")
    several_regimes = rows["regime"].nunique() > 1
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.4))
    for y, r in enumerate(rows.itertuples(index=False)):
        hollow = r.model in baselines
        ax.plot([r.ci_low, r.ci_high], [y, y], color=colours[r.model], lw=5, alpha=0.55, solid_capstyle="butt")
        ax.plot(r.iqm, y, "o", ms=7, color=colours[r.model], mfc="white" if hollow else colours[r.model])
    labels = [f"{m} · {g}" if several_regimes else m for m, g in zip(rows["model"], rows["regime"])]
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel(f"IQM of min-max normalised score ({100 * confidence:g} % CI)")
    ax.set_title(f"{task}: aggregate over datasets × seeds (full training set)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def regime_plot(scores: pd.DataFrame, task: str) -> Figure:
    """IQM with interval per model, one marker per regime side by side."""
    rows = scores[scores["task"] == task]
    models = sorted(rows["model"].unique())
    regimes = [g for g in REGIMES if g in set(rows["regime"])]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(models) + 2), 4.2))
    width = 0.8 / len(regimes)
    for j, regime in enumerate(regimes):
        part = rows[rows["regime"] == regime].set_index("model")
        xs = [i - 0.4 + width * (j + 0.5) for i, m in enumerate(models) if m in part.index]
        sub = part.loc[[m for m in models if m in part.index]]
        ax.errorbar(xs, sub["iqm"], yerr=[sub["iqm"] - sub["ci_low"], sub["ci_high"] - sub["iqm"]],
                    fmt="o", capsize=3, label=regime, color=plt.get_cmap("tab10").colors[j])
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax.set_ylabel("IQM of normalised score")
    ax.set_title(f"{task}: training regimes")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def dataset_plot(summary: pd.DataFrame, task: str, colours: dict[str, tuple],
                 baselines: Sequence[str], confidence: float = 0.95) -> Figure:
    """Per dataset: raw-metric IQM over seeds with its interval, one row per model and regime."""
    rows = summary[summary["task"] == task]
    datasets = sorted(rows["dataset"].unique())
    fig, axes = _grid(len(datasets), height=max(2.4, 0.32 * rows.groupby("dataset").size().max() + 1.2))
    for ax, dataset in zip(axes, datasets):
        part = rows[rows["dataset"] == dataset].sort_values(["model", "regime"])
        several_regimes = part["regime"].nunique() > 1
        for y, r in enumerate(part.itertuples(index=False)):
            ax.plot([r.ci_low, r.ci_high], [y, y], color=colours[r.model], lw=4, alpha=0.55)
            ax.plot(r.iqm, y, "o", ms=5, color=colours[r.model],
                    mfc="white" if r.model in baselines else colours[r.model])
        ax.set_yticks(range(len(part)), [f"{m} · {g}" if several_regimes else m
                                         for m, g in zip(part["model"], part["regime"])], fontsize=7)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel(part["metric"].iloc[0], fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{task}: raw metric per dataset (IQM over seeds, {100 * confidence:g} % CI)")
    fig.tight_layout()  # leaves room for the suptitle
    return fig


def curve_plot(curves: pd.DataFrame, task: str, kind: str, colours: dict[str, tuple],
               baselines: Sequence[str], confidence: float = 0.95) -> Figure:
    """Metric against training fraction or shots, per dataset, with interval bands."""
    rows = curves[curves["task"] == task]
    datasets = sorted(rows["dataset"].unique())
    fig, axes = _grid(len(datasets))
    for ax, dataset in zip(axes, datasets):
        part = rows[rows["dataset"] == dataset]
        several_regimes = part["regime"].nunique() > 1
        for (model, regime), line in part.groupby(["model", "regime"], sort=True):
            line = line.sort_values("x")
            style = "--" if model in baselines else "-"
            label = f"{model} · {regime}" if several_regimes else model
            ax.plot(line["x"], line["mean"], style, marker="o", ms=3, color=colours[model], label=label)
            ax.fill_between(line["x"], line["ci_low"], line["ci_high"], color=colours[model], alpha=0.18)
        ax.set_xscale("log")
        ticks = sorted(part["x"].unique())
        ax.xaxis.set_major_locator(FixedLocator(ticks))  # few labelled ticks: cheap to lay out
        ax.xaxis.set_major_formatter(FixedFormatter([f"{t:g}" for t in ticks]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("fraction of training set" if kind == "partition" else "shots per class", fontsize=8)
        ax.set_ylabel(part["metric"].iloc[0], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    legend: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    labels = sorted(legend)
    height = fig.get_figheight()
    legend_rows = math.ceil(len(labels) / 5)
    title = "training-set size" if kind == "partition" else "few-shot"
    fig.suptitle(f"{task}: {title} curves (mean over seeds, {100 * confidence:g} % CI band)",
                 y=1 - 0.08 / height, va="top")
    fig.legend([legend[k] for k in labels], labels, loc="upper center", ncol=min(5, len(labels)),
               fontsize=8, bbox_to_anchor=(0.5, 1 - 0.4 / height))
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.5 + 0.2 * legend_rows) / height))
    return fig
