"""`marsbench demo`: the main job on the embedded default (the SYNTHETIC Mars-Bench suite).

1. writes the synthetic suite (all 20 cards, public folder layout) and loads every dataset back;
2. runs a small but complete comparison through the protocol (grid search on validation loss,
   then seeds): EfficientNet-Lite0 with its real ImageNet weights in all three regimes and
   SqueezeNet1.1 from scratch (classification), a U-Net and a Faster R-CNN on the frozen
   EfficientNet-Lite0 (segmentation, detection), on synthetic datasets plus the real Mars
   subsets in ``../shared/data`` where present;
3. prints the results table and writes the report (HTML + Markdown + CSV).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
REAL_SUBSETS = ("mb-landmark_cls-mini",)
SYNTHETIC_DATASETS = ("mb-frost_cls", "mb-landmark_cls")
EPILOG = ("Examples:\n\n"
          "marsbench demo --summary-only    # only write and check the synthetic suite\n\n"
          "marsbench demo --out /tmp/mb-demo --workers 1\n\n"
          "marsbench demo --real-data ~/mars-subsets")


def demo_command(
    out: Annotated[Path, typer.Option(help="working folder for data, results and report")] = Path(
        "marsbench-demo"),
    real_data: Annotated[Path, typer.Option(
        help="folder with the real Mars subsets (used where present)")] = Path("../shared/data"),
    workers: Annotated[int, typer.Option(help="parallel runs (process pool)")] = 2,
    summary_only: Annotated[bool, typer.Option(
        help="only write and summarise the synthetic suite")] = False,
) -> None:
    """Write the SYNTHETIC suite, run a small comparison through the protocol, write a report."""
    from ..sources.synth import generate_suite

    data = out / "data"
    console.rule("1. the synthetic Mars-Bench suite (SYNTHETIC data)")
    paths = generate_suite(data, "folder")
    _summarise_suite(paths)
    if summary_only:
        return
    console.rule("2. a comparison through the protocol")
    store = out / "results.sqlite"
    from .sweep import _sweep

    experiments = demo_experiments(data, real_data)
    for exp in experiments:
        console.print(f"[bold]{exp.name}[/bold]: {exp.description}", highlight=False)
        try:
            _sweep(exp, store, quiet=False, executor="process" if workers > 1 else "local",
                   workers=workers, out_dir=out,
                   threads=max(1, (os.cpu_count() or 2) // workers))
        except typer.Exit as exc:
            if exc.exit_code not in (0, 1):  # 1: some runs failed; they are listed above
                raise
    console.rule("3. results and report")
    import pandas as pd

    table = pd.concat([final_table(exp, store) for exp in experiments], ignore_index=True)
    _print_results(table)
    from ..report import make_report

    # Synthetic scores say nothing about Mars: no published baselines beside them, and a
    # normaliser drawn from this table, not the paper's.
    from ..aggregate import Normaliser

    normaliser = Normaliser.from_table(table, version="demo", source=str(store))
    files = make_report(table, out / "report", baselines=False, normaliser=normaliser,
                        partial=True, inputs=[str(store)])
    console.print(f"report: [bold]{files.get('html', out / 'report')}[/bold]", highlight=False)


def demo_experiments(data: Path, real_data: Path) -> list:
    """The demo's three small studies (one per task), built in code because the real subsets
    are optional: synthetic datasets plus the real ones found in ``real_data``."""
    from ..protocol import load_experiment
    from ..protocol.experiment import DatasetEntry, ModelEntry

    base = load_experiment("paper:demo_synthetic")
    root = str(data.resolve())

    def datasets(synthetic: tuple[str, ...], real: tuple[str, ...]) -> tuple:
        found = [DatasetEntry(str((real_data / n).resolve())) for n in real
                 if (real_data / n).is_dir()]
        return tuple(DatasetEntry(n) for n in synthetic) + tuple(found)

    def grid(**fields) -> tuple:
        return tuple((dict(base.grid) | {k: (v,) for k, v in fields.items()}).items())

    classification = base.with_overrides(
        name="demo_classification", datasets=datasets(SYNTHETIC_DATASETS, REAL_SUBSETS),
        models=(ModelEntry("efficientnet_lite0"),
                ModelEntry("squeezenet1_1", regimes=("scratch",))),
        grid=grid(max_epochs=6, patience=2), data_root=root,
        description="EfficientNet-Lite0 (real ImageNet weights) in 3 regimes, SqueezeNet1.1 "
                    "from scratch; 2-point grid, 3 seeds")
    segmentation = base.with_overrides(
        name="demo_segmentation", task="segmentation",
        datasets=datasets(("mb-crater_binary_seg",), ("ai4mars_seg-mini",)),
        models=(ModelEntry("unet_efficientnet_lite0"),), regimes=("feature_extraction",),
        grid=grid(max_epochs=3, patience=2, batch_size=8), seeds=(0, 1),
        options=(("input_policy", "reference"), ("input_size", 64)), data_root=root,
        description="U-Net on the frozen EfficientNet-Lite0 encoder; 2-point grid, 2 seeds")
    detection = base.with_overrides(
        name="demo_detection", task="detection",
        datasets=datasets(("mb-boulder_det",), ("crater_det-mini",)),
        models=(ModelEntry("fasterrcnn_efficientnet_lite0"),), regimes=("feature_extraction",),
        grid=grid(lr=1e-3, max_epochs=2, patience=2, batch_size=4), seeds=(0, 1),
        options=(("input_policy", "tile"), ("tile_size", 128)), data_root=root,
        description="Faster R-CNN on the frozen EfficientNet-Lite0 trunk, 128 px tiles; 2 seeds")
    return [classification, segmentation, detection]


def final_table(exp, store: Path):
    """The seeds-stage runs of the study, as the tidy results table."""
    from ..protocol import final_keys
    from ..runs.store import ResultsStore

    results = ResultsStore(store)
    return results.to_table(spec_key=final_keys(exp, results))


def _summarise_suite(paths: list[Path]) -> None:
    from ..catalog import list_cards
    from ..sources import open_dataset

    table = Table(title="Synthetic Mars-Bench suite (SYNTHETIC data, loaded back)")
    for col in ("dataset", "task", "classes", "train", "val", "test", "sample", "variants"):
        table.add_column(col)
    for card, path in zip(list_cards(), paths):
        splits = {s: open_dataset(path, s) for s in ("train", "val", "test")}
        sample = splits["train"][0]
        shape = "x".join(str(d) for d in sample.image.shape)
        variants = len(list(path.glob("few_shot/*.csv"))) + len(list(path.glob("partitions/*.csv")))
        table.add_row(card.name, str(card.task), str(splits["train"].num_classes),
                      *(str(len(splits[s])) for s in ("train", "val", "test")), shape,
                      str(variants))
    console.print(table)


def _print_results(table) -> None:
    if table.empty:
        console.print("[red]no successful runs to show[/red]")
        return
    from ..aggregate import select_headline

    head = select_headline(table)
    grouped = head.groupby(["dataset", "model", "regime", "metric"])["value"]
    stats = grouped.agg(["mean", "std", "count"]).reset_index()
    out = Table(title="Test scores of the selected configuration (mean ± std over seeds)")
    for col in ("dataset", "model", "regime", "metric", "score", "seeds"):
        out.add_column(col, overflow="fold")
    for row in stats.itertuples():
        out.add_row(Path(row.dataset).name, row.model, row.regime, row.metric,
                    f"{row.mean:.3f} ± {0.0 if row.count < 2 else row.std:.3f}", str(row.count))
    console.print(out)
