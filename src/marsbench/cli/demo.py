"""`marsbench demo`: the main job on the embedded default (the SYNTHETIC Mars-Bench suite).

1. writes the synthetic suite (all 20 cards, public folder layout) and loads every dataset back;
2. runs a small but complete comparison through the protocol (grid search on validation loss,
   then seeds): EfficientNet-Lite0 with its real ImageNet weights in all three regimes and
   SqueezeNet1.1 from scratch, on synthetic datasets plus the real Mars subsets in
   ``../shared/data`` where present;
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
    exp = demo_experiment(data, real_data)
    store = out / "results.sqlite"
    from .sweep import _sweep

    try:
        _sweep(exp, store, quiet=False, executor="process" if workers > 1 else "local",
               workers=workers, out_dir=out, threads=max(1, (os.cpu_count() or 2) // workers))
    except typer.Exit as exc:
        if exc.exit_code not in (0, 1):  # 1: some runs failed; they are listed above
            raise
    console.rule("3. results and report")
    table = final_table(exp, store)
    _print_results(table)
    from ..report import make_report

    # Synthetic scores say nothing about Mars: no published baselines beside them, and a
    # normaliser drawn from this table, not the paper's.
    from ..aggregate import Normaliser

    normaliser = Normaliser.from_table(table, version="demo", source=str(store))
    files = make_report(table, out / "report", baselines=False, normaliser=normaliser,
                        partial=True, inputs=[str(store)])
    console.print(f"report: [bold]{files.get('html', out / 'report')}[/bold]", highlight=False)


def demo_experiment(data: Path, real_data: Path):
    """The demo's study, built in code because the real subsets are optional."""
    from ..protocol import load_experiment
    from ..protocol.experiment import DatasetEntry, ModelEntry

    base = load_experiment("paper:demo_synthetic")
    datasets = [DatasetEntry(name) for name in SYNTHETIC_DATASETS]
    datasets += [DatasetEntry(str((real_data / name).resolve())) for name in REAL_SUBSETS
                 if (real_data / name).is_dir()]
    models = (ModelEntry("efficientnet_lite0"),
              ModelEntry("squeezenet1_1", regimes=("scratch",)))
    grid = dict(base.grid) | {"max_epochs": (6,), "patience": (2,)}
    return base.with_overrides(name="demo", datasets=tuple(datasets), models=models,
                               grid=tuple(grid.items()), data_root=str(data.resolve()))


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
        out.add_column(col)
    for row in stats.itertuples():
        out.add_row(Path(row.dataset).name, row.model, row.regime, row.metric,
                    f"{row.mean:.3f} ± {0.0 if row.count < 2 else row.std:.3f}", str(row.count))
    console.print(out)
