"""`marsbench report`: aggregate results and write the HTML / Markdown / CSV report.

Heavy imports (pandas, matplotlib, scipy) happen inside the command so `marsbench --help` stays fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class Baselines(str, Enum):
    paper = "paper"
    none = "none"


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def _read_inputs(store: Path | None, csvs: list[Path], renumber_seeds: bool):
    import pandas as pd

    from marsbench.aggregate.published import read_published_csv
    from marsbench.aggregate.table import concat_tables, is_tidy_csv, read_results_csv

    tables: list[pd.DataFrame] = []
    if store is not None:
        try:
            from marsbench.runs.store import ResultsStore  # written alongside; imported only when asked
        except ImportError as err:
            raise _fail(f"--store needs marsbench.runs.store.ResultsStore, which cannot be imported "
                        f"({err}); export the runs to CSV and pass --csv instead") from None
        if not store.exists():
            raise _fail(f"results store {store} does not exist")
        tables.append(ResultsStore(store).to_table())
    for path in csvs:
        if not path.is_file():
            raise _fail(f"--csv {path}: no such file")
        if is_tidy_csv(path):
            tables.append(read_results_csv(path))
        else:
            tables.append(read_published_csv(path, duplicate_seeds="renumber" if renumber_seeds else "error"))
    return concat_tables(tables)


def _normaliser(choice: str, table):
    from marsbench.aggregate.normalise import Normaliser, default_normaliser, select_headline

    def from_table():
        return Normaliser.from_table(select_headline(table), version="table",
                                     source="min and max of the input runs (full training set)")

    if choice == "paper":
        return default_normaliser()
    if choice == "table":
        return from_table()
    if choice == "paper+table":
        return default_normaliser().merged(from_table())
    path = Path(choice)
    if not path.is_file():
        raise _fail(f"--normaliser {choice!r}: use paper, table, paper+table or the path of a "
                    "normaliser JSON file (e.g. the normaliser.json of an earlier report)")
    return Normaliser.load(path)


def report_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the report into.")],
    store: Annotated[Path | None, typer.Option("--store", help="SQLite results store to read.")] = None,
    csv: Annotated[list[Path] | None, typer.Option(
        "--csv", help="Results CSV (tidy schema or a published Mars-Bench CSV); repeatable.")] = None,
    baselines: Annotated[Baselines, typer.Option(
        "--baselines", help="Show the published baselines beside your models.")] = Baselines.paper,
    normaliser: Annotated[str, typer.Option(
        "--normaliser", help="paper (shipped, default), table (from your runs), paper+table, or a JSON file.",
    )] = "paper",
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="DATASET=METRIC: the metric to aggregate for a dataset; repeatable.")] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Bootstrap rounds.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    confidence: Annotated[float, typer.Option("--confidence", min=0.5, max=0.999)] = 0.95,
    resample_datasets: Annotated[bool, typer.Option(
        "--resample-datasets", help="Also resample datasets in the bootstrap.")] = False,
    partial: Annotated[bool, typer.Option(
        "--partial", help="Rank models even if they lack datasets or seeds.")] = False,
    renumber_seeds: Annotated[bool, typer.Option(
        "--renumber-seeds", help="Number runs 0, 1, ... where a published CSV repeats seeds (earth_data.csv).",
    )] = False,
    title: Annotated[str, typer.Option("--title")] = "Mars-Bench report",
) -> None:
    """Write a self-contained HTML report, a Markdown summary and CSV tables (incl. leaderboard.csv)."""
    from marsbench.aggregate.normalise import parse_metric_overrides
    from marsbench.aggregate.published import paper_baselines
    from marsbench.aggregate.table import ResultsTableError
    from marsbench.report.build import build_report_data
    from marsbench.report.write import write_report

    csvs = list(csv or [])
    if store is None and not csvs:
        raise _fail("give results with --store PATH and/or --csv FILE")
    try:
        table = _read_inputs(store, csvs, renumber_seeds)
        data = build_report_data(
            table, normaliser=_normaliser(normaliser, table),
            baselines=paper_baselines() if baselines is Baselines.paper else None,
            metrics=parse_metric_overrides(metric or []), rounds=rounds, seed=seed,
            confidence=confidence, resample_datasets=resample_datasets, partial=partial,
            inputs=[str(store)] * (store is not None) + [str(p) for p in csvs],
        )
        written = write_report(data, out, title=title)
    except (ResultsTableError, ValueError, OSError) as err:
        raise _fail(str(err)) from None
    for note in data.notes():
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"report: {written['html']}")
    typer.echo(f"summary: {written['markdown']}")
    if "leaderboard" in written:
        typer.echo(f"leaderboard: {written['leaderboard']}")
    typer.echo(f"tables: {out / 'tables'}")
