"""`marsbench demo`: the main job on the embedded default (the SYNTHETIC Mars-Bench suite).

1. writes the synthetic suite (all 20 cards, public folder layout) and loads every dataset back;
2. runs a small but complete comparison through the protocol (grid search on validation loss,
   then seeds): EfficientNet-Lite0 with its real ImageNet weights in all three regimes and
   SqueezeNet1.1 from scratch (classification), a U-Net and a Faster R-CNN on the frozen
   EfficientNet-Lite0 (segmentation, detection), on synthetic datasets plus the real Mars
   subsets in ``../shared/data`` where present (one line says when they are absent: the demo
   then runs on SYNTHETIC data only);
3. prints the results table and writes the report (HTML + Markdown + CSV).

Detection learns visibly in seconds: synthetic cones (``mb-conequest_det`` written at twice the
suite's size, 16 train images, into ``<out>/data-detection``) resized to 256 px, 5 epochs.
Tables keep names whole: no wrapping on a terminal, tab-separated rows in a pipe or file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import in_range

console = Console()
REAL_SUBSETS = ("mb-landmark_cls-mini",)
SYNTHETIC_DATASETS = ("mb-frost_cls", "mb-landmark_cls")
REAL_SEGMENTATION, REAL_DETECTION = ("ai4mars_seg-mini",), ("crater_det-mini",)
ALL_REAL_SUBSETS = REAL_SUBSETS + REAL_SEGMENTATION + REAL_DETECTION
# detection: large synthetic cones, upscaled so the stride-8..32 features see them (the suite's
# 96 px images with 5-8 px boulders, in 128 px tiles for 2 epochs, learned next to nothing)
DETECTION_DATASET, DETECTION_SCALE, DETECTION_FOLDER = "mb-conequest_det", 2.0, "data-detection"
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
    from .sweep import MAX_WORKERS

    in_range(workers, "--workers", 1, MAX_WORKERS, example="1")
    data = out / "data"
    note = real_data_note(real_data)
    if note:
        console.print(note, style="yellow", markup=False, highlight=False, soft_wrap=True)
    console.rule("1. the synthetic Mars-Bench suite (SYNTHETIC data)")
    paths = generate_suite(data, "folder")
    _summarise_suite(paths)
    if summary_only:
        return
    detection_data(out)
    console.rule("2. a comparison through the protocol")
    store = out / "results.sqlite"
    from .sweep import _sweep

    experiments = demo_experiments(data, real_data, detection_root=out / DETECTION_FOLDER)
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
    from ..runs.store import ResultsStore

    # the runs' records: the SYNTHETIC banner, per-class scores, curves, calibration and cost
    files = make_report(table, out / "report", baselines=False, normaliser=normaliser,
                        partial=True, inputs=[str(store)],
                        records=ResultsStore(store, readonly=True))
    console.print(f"report: [bold]{files.get('html', out / 'report')}[/bold]", highlight=False)


def real_data_note(real_data: Path) -> str | None:
    """The line saying which real Mars subsets are absent from ``real_data`` (all absent: the
    demo runs on SYNTHETIC data only), or None when every one is there."""
    where = real_data.expanduser().resolve()
    missing = [n for n in ALL_REAL_SUBSETS if not (real_data / n).is_dir()]
    if not missing:
        return None
    if len(missing) == len(ALL_REAL_SUBSETS):
        return (f"real Mars subsets absent: {where} has none of {', '.join(missing)}; this demo "
                "runs on SYNTHETIC data only (its scores say nothing about Mars); pass "
                "--real-data DIR to add them")
    return (f"real Mars subsets absent from {where}: {', '.join(missing)}; those parts run on "
            "SYNTHETIC data only")


def detection_data(out: Path) -> Path:
    """Write the demo's detection dataset (SYNTHETIC, `DETECTION_SCALE` x the suite's size) to
    ``<out>/data-detection``; its root for `demo_experiments`."""
    from ..sources.synth import generate

    root = out / DETECTION_FOLDER
    generate(DETECTION_DATASET, root, "folder", scale=DETECTION_SCALE)
    return root


def demo_experiments(data: Path, real_data: Path, detection_root: Path | None = None) -> list:
    """The demo's three small studies (one per task), built in code because the real subsets
    are optional: synthetic datasets plus the real ones found in ``real_data``. Detection reads
    its synthetic data from ``detection_root`` (`detection_data`; default: ``data``)."""
    from ..protocol import load_experiment
    from ..protocol.experiment import ModelEntry

    base = load_experiment("paper:demo_synthetic")
    root = str(data.resolve())

    def grid(**fields) -> tuple:
        return tuple((dict(base.grid) | {k: (v,) for k, v in fields.items()}).items())

    classification = base.with_overrides(
        name="demo_classification",
        datasets=_datasets(SYNTHETIC_DATASETS, REAL_SUBSETS, real_data),
        models=(ModelEntry("efficientnet_lite0"),
                ModelEntry("squeezenet1_1", regimes=("scratch",))),
        grid=grid(max_epochs=6, patience=2), data_root=root,
        description="EfficientNet-Lite0 (real ImageNet weights) in 3 regimes, SqueezeNet1.1 "
                    "from scratch; 2-point grid, 3 seeds")
    segmentation = base.with_overrides(
        name="demo_segmentation", task="segmentation",
        datasets=_datasets(("mb-crater_binary_seg",), REAL_SEGMENTATION, real_data),
        models=(ModelEntry("unet_efficientnet_lite0"),), regimes=("feature_extraction",),
        grid=grid(max_epochs=3, patience=2, batch_size=8), seeds=(0, 1),
        options=(("input_policy", "reference"), ("input_size", 64)), data_root=root,
        description="U-Net on the frozen EfficientNet-Lite0 encoder; 2-point grid, 2 seeds")
    return [classification, segmentation,
            detection_experiment(detection_root or data, real_data)]


def detection_experiment(root: Path, real_data: Path):
    """Faster R-CNN on the frozen EfficientNet-Lite0 trunk: synthetic cones under ``root``
    (plus the real crater subset where present), images resized to 256 px, 5 epochs at lr
    1e-3, 2 seeds. About half a minute a run on one CPU core; mAP50 about 0.9 on the
    synthetic cones."""
    from ..protocol import load_experiment
    from ..protocol.experiment import ModelEntry

    base = load_experiment("paper:demo_synthetic")
    grid = dict(base.grid) | {"lr": (1e-3,), "max_epochs": (5,), "patience": (5,),
                              "batch_size": (4,)}
    return base.with_overrides(
        name="demo_detection", task="detection",
        datasets=_datasets((DETECTION_DATASET,), REAL_DETECTION, real_data),
        models=(ModelEntry("fasterrcnn_efficientnet_lite0"),), regimes=("feature_extraction",),
        grid=tuple(grid.items()), seeds=(0, 1),
        options=(("input_policy", "reference"), ("input_size", 256)),
        data_root=str(root.resolve()),
        description="Faster R-CNN on the frozen EfficientNet-Lite0 trunk, synthetic cones "
                    "resized to 256 px, 5 epochs; 2 seeds")


def _datasets(synthetic: tuple[str, ...], real: tuple[str, ...], real_data: Path) -> tuple:
    from ..protocol.experiment import DatasetEntry

    found = [DatasetEntry(str((real_data / n).resolve())) for n in real
             if (real_data / n).is_dir()]
    return tuple(DatasetEntry(n) for n in synthetic) + tuple(found)


def final_table(exp, store: Path):
    """The seeds-stage runs of the study, as the tidy results table."""
    from ..protocol import final_keys
    from ..runs.store import ResultsStore

    results = ResultsStore(store)
    return results.to_table(spec_key=final_keys(exp, results))


def _summarise_suite(paths: list[Path]) -> None:
    from ..catalog import list_cards
    from ..sources import open_dataset

    header = ["dataset", "task", "classes", "train", "val", "test", "sample", "variants"]
    rows = []
    for card, path in zip(list_cards(), paths):
        splits = {s: open_dataset(path, s) for s in ("train", "val", "test")}
        sample = splits["train"][0]
        shape = "x".join(str(d) for d in sample.image.shape)
        variants = len(list(path.glob("few_shot/*.csv"))) + len(list(path.glob("partitions/*.csv")))
        rows.append([card.name, str(card.task), str(splits["train"].num_classes),
                     *(str(len(splits[s])) for s in ("train", "val", "test")), shape,
                     str(variants)])
    _print_table("Synthetic Mars-Bench suite (SYNTHETIC data, loaded back)", header, rows,
                 names=1)


def _print_table(title: str, header: list[str], rows: list[list[str]], *, names: int) -> None:
    """A rich table on a terminal, its first ``names`` columns never wrapped nor cut (at least
    as wide as their longest value); tab-separated rows under a header line in a pipe or file,
    every value whole."""
    from .env import print_rows, stdout_is_terminal

    widths = [max([len(col), *(len(r[i]) for r in rows)]) for i, col in enumerate(header)]
    # the names whole, the other columns at least as wide as their header, and the borders
    needed = sum(widths[:names]) + sum(len(c) for c in header[names:]) + 3 * len(header) + 1
    if not stdout_is_terminal() or console.width < needed:
        typer.echo(f"# {title}")
        print_rows(header, rows)
        return
    table = Table(title=title)
    for i, col in enumerate(header):
        if i < names:
            table.add_column(col, no_wrap=True, min_width=widths[i])
        else:
            table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _print_results(table) -> None:
    if table.empty:
        console.print("[red]no successful runs to show[/red]")
        return
    from ..aggregate import select_headline

    head = select_headline(table)
    grouped = head.groupby(["dataset", "model", "regime", "metric"])["value"]
    stats = grouped.agg(["mean", "std", "count"]).reset_index()
    rows = [[Path(row.dataset).name, row.model, row.regime, row.metric,
             f"{row.mean:.3f} ± {0.0 if row.count < 2 else row.std:.3f}", str(row.count)]
            for row in stats.itertuples()]
    _print_table("Test scores of the selected configuration (mean ± std over seeds)",
                 ["dataset", "model", "regime", "metric", "score", "seeds"], rows, names=3)
