"""`marsbench report`: aggregate results and write the HTML / Markdown / CSV report.

Heavy imports (pandas, matplotlib, scipy) happen inside the command so `marsbench --help` stays fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import OptionError
from . import common


EPILOG = ("Examples:\n\n"
          "marsbench report --store runs/results.sqlite --out report/\n\n"
          "marsbench report --store runs/results.sqlite --experiment demo_synthetic --out report/"
          "\n\n"
          "marsbench report --csv mine.csv --out report/ --baselines none --normaliser table"
          "\n\n"
          "marsbench report --figure figure:training_size --published --out paper/    # one "
          "paper figure (list: marsbench paper)")


class Baselines(str, Enum):
    paper = "paper"
    none = "none"


def _check_inputs(store: Path | None, csvs: list[Path]) -> None:
    """Refuse missing, folder or unreadable inputs by name, before any work."""
    if store is None and not csvs:
        raise OptionError("no results given", where="marsbench report",
                          fix="give results with --store PATH and/or --csv FILE")
    for path in csvs:
        if path.is_dir():
            raise OptionError("--csv is a folder, not a CSV file", where=path,
                              fix="give the results CSV file itself")
        if not path.is_file():
            raise OptionError("--csv: no such file", where=path, fix="check the path")


def _read_store(store: Path, experiments: list[str], all_runs: bool):
    """The store's runs to report: with selections recorded by sweeps, the seed runs of the
    selected configurations (of ``experiments`` only, if named; grid candidates and other runs
    left out, as the protocol reports them); without, or with ``all_runs``, every run."""
    from marsbench.protocol.selections import selected_final_keys
    from marsbench.runs.store import ResultsStore

    results = ResultsStore(store, readonly=True)  # folder, foreign, corrupt: one clear line
    keys, found, old = selected_final_keys(results, experiments or None)
    if experiments and not all_runs:
        keys = _experiment_keys(results, experiments, keys, found)
    elif all_runs or (not found and not experiments):
        keys = None  # every successful run in the store
    elif old:
        raise OptionError(
            "this store's selections were recorded before marsbench kept their seed-run keys",
            where=store, value=", ".join(old),
            fix="run the same `marsbench sweep` again (it finds every run done and records "
                "the keys), or name the experiment file: --experiment FILE")
    table = results.to_table() if keys is None else results.to_table(spec_key=keys)
    if table.empty:
        failed = len(results.records(status="failed"))
        what = "no successful runs" if keys is None else "no finished seed runs"
        raise OptionError(
            f"the results store has {what} to report", where=store,
            value=f"{len(results)} run(s), {failed} failed",
            fix="run `marsbench run` or `marsbench sweep` with this --store first"
                + (" (`marsbench sweep --dry-run` lists the failures)" if failed else ""))
    if keys is not None:
        left_out = len(results.records(status="ok")) - table["spec_key"].nunique()
        typer.secho(f"note: reporting the seed runs of the configurations selected by "
                    f"{', '.join(experiments or found)} ({table['spec_key'].nunique()} runs); "
                    f"{left_out} other run(s) in the store (grid candidates, single runs) left "
                    "out -- --all-runs reports every run", fg=typer.colors.YELLOW, err=True)
    return table


def _experiment_keys(results, names: list[str], recorded: list[str], found: list[str]):
    """Seed-run keys of the named experiments: their recorded selections, or (a name the store
    does not know) the experiment file or ``paper:`` name itself, selected afresh."""
    from marsbench.errors import did_you_mean
    from marsbench.protocol import final_keys, load_experiment, read_selections

    known = sorted(set(read_selections(results)["experiment"]))
    keys = list(recorded)
    for name in names:
        if name in found:
            continue
        try:
            exp = load_experiment(name)
        except Exception:  # noqa: BLE001 - not a loadable experiment: say what the store has
            hint = (did_you_mean(name, known) + "; " if known else
                    "no sweep recorded an experiment there; ")
            raise OptionError("no such experiment in the store", where="--experiment",
                              value=name, fix=hint + "or give an experiment file or "
                                                     "paper:<name>") from None
        keys += final_keys(exp, results)
    return list(dict.fromkeys(keys))


def _read_csv(path: Path, renumber_seeds: bool):
    import pandas as pd

    from marsbench.aggregate.published import read_published_csv
    from marsbench.aggregate.table import is_tidy_csv, read_results_csv

    try:
        if is_tidy_csv(path):
            return read_results_csv(path)
        return read_published_csv(path, duplicate_seeds="renumber" if renumber_seeds else "error")
    except UnicodeDecodeError as err:
        raise OptionError("--csv is not a text CSV file", where=path,
                          value=f"{err.reason} at byte {err.start}",
                          fix="give a results CSV (tidy schema or a published Mars-Bench CSV)"
                          ) from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise OptionError("--csv cannot be read as CSV", where=path,
                          value=" ".join(str(err).split()),
                          fix="give a results CSV (tidy schema or a published Mars-Bench CSV)"
                          ) from None


def _check_metric_datasets(metrics: dict[str, str], table) -> None:
    """Each --metric DATASET=METRIC must name a dataset of the results (a typo is refused)."""
    from ..errors import did_you_mean

    known = set(table["dataset"].astype(str))
    for dataset, metric in metrics.items():
        if dataset not in known:
            raise OptionError("--metric names a dataset the results do not hold",
                              where="--metric", value=f"{dataset}={metric}",
                              fix=did_you_mean(dataset, known))


def _read_inputs(store: Path | None, csvs: list[Path], renumber_seeds: bool,
                 experiments: list[str], all_runs: bool):
    from marsbench.aggregate.table import concat_tables

    tables = [_read_store(store, experiments, all_runs)] if store is not None else []
    tables += [_read_csv(path, renumber_seeds) for path in csvs]
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
        raise OptionError("--normaliser is neither a known choice nor a JSON file", value=choice,
                          fix="use paper, table, paper+table or the path of a normaliser JSON "
                              "file (e.g. the normaliser.json of an earlier report)")
    try:
        return Normaliser.load(path)
    except UnicodeDecodeError:
        raise OptionError("--normaliser is not a JSON text file", where=path,
                          fix="give the normaliser.json of an earlier report") from None


def report_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the report into.")],
    store: Annotated[Path | None, typer.Option(
        "--store", help="SQLite results store to read. Where sweeps recorded selections: the "
                        "seed runs of the selected configurations (see --all-runs).")] = None,
    experiment: Annotated[list[str] | None, typer.Option(
        "--experiment", help="Report this experiment's selected seed runs only: its name as "
                             "recorded by `marsbench sweep`, an experiment file or "
                             "paper:<name>; repeatable.")] = None,
    all_runs: Annotated[bool, typer.Option(
        "--all-runs", help="Report every successful run in the store, grid runs included.")
    ] = False,
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
    seed: Annotated[int, typer.Option("--seed", min=0, help="Bootstrap seed.")] = 0,
    confidence: Annotated[float, typer.Option(
        "--confidence", help="interval level, from 0.5 to 0.999")] = 0.95,
    resample_datasets: Annotated[bool, typer.Option(
        "--resample-datasets", help="Also resample datasets in the bootstrap.")] = False,
    partial: Annotated[bool, typer.Option(
        "--partial", help="Rank models even if they lack datasets or seeds.")] = False,
    renumber_seeds: Annotated[bool, typer.Option(
        "--renumber-seeds", help="Number runs 0, 1, ... where a published CSV repeats seeds (earth_data.csv).",
    )] = False,
    title: Annotated[str, typer.Option("--title")] = "Mars-Bench report",
    figure: Annotated[str | None, typer.Option(
        "--figure", help="Regenerate one of the paper's tables/figures instead (names: "
                         "`marsbench paper`): PNG/SVG, CSV and Markdown/HTML in --out.")] = None,
    published: Annotated[bool, typer.Option(
        "--published", help="With --figure: from the published per-seed runs shipped with "
                            "marsbench instead of --store/--csv.")] = False,
) -> None:
    """Write a self-contained HTML report, a Markdown summary and CSV tables (incl. leaderboard.csv)."""
    common.confidence(confidence)
    if figure is not None or published:
        ignored = {"--baselines": baselines is not Baselines.paper, "--normaliser": normaliser
                   != "paper", "--metric": bool(metric), "--resample-datasets": resample_datasets,
                   "--partial": partial, "--title": title != "Mars-Bench report"}
        if any(ignored.values()):
            raise OptionError("does not apply to --figure (the paper's recipe: headline metric, "
                              "min-max over the figure's runs)", where="marsbench report",
                              value=", ".join(k for k, v in ignored.items() if v),
                              fix="leave it out, or drop --figure for the full report")
        return _paper_figure(figure, published, out, store, list(experiment or []), all_runs,
                             list(csv or []), renumber_seeds, rounds, seed, confidence)
    from marsbench.aggregate.normalise import parse_metric_overrides
    from marsbench.aggregate.published import paper_baselines
    from marsbench.report.build import build_report_data
    from marsbench.report.write import write_report
    from marsbench.runs.store import ResultsStore

    csvs = list(csv or [])
    experiments = list(experiment or [])
    _check_inputs(store, csvs)
    if experiments and store is None:
        raise OptionError("--experiment selects runs of a results store", where="--experiment",
                          value=experiments[0], fix="give the store too: --store PATH")
    if experiments and all_runs:
        raise OptionError("--experiment and --all-runs contradict each other",
                          where="marsbench report", fix="use one of them")
    metrics = parse_metric_overrides(metric or [])
    common.output_folder(out, "--out", create=False)
    table = _read_inputs(store, csvs, renumber_seeds, experiments, all_runs)
    _check_metric_datasets(metrics, table)
    data = build_report_data(
        table, normaliser=_normaliser(normaliser, table),
        baselines=paper_baselines() if baselines is Baselines.paper else None,
        metrics=metrics, rounds=rounds, seed=seed,
        confidence=confidence, resample_datasets=resample_datasets, partial=partial,
        inputs=[str(store)] * (store is not None) + [str(p) for p in csvs],
        # the runs' records: synthetic-data banner, per-class scores, training curves
        records=ResultsStore(store, readonly=True) if store is not None else None,
    )
    written = write_report(data, out, title=title)
    for note in data.notes():
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"report: {written['html']}")
    typer.echo(f"summary: {written['markdown']}")
    if "leaderboard" in written:
        typer.echo(f"leaderboard: {written['leaderboard']}")
    typer.echo(f"tables: {out / 'tables'}")


def _paper_figure(name: str | None, published: bool, out: Path, store: Path | None,
                  experiments: list[str], all_runs: bool, csvs: list[Path], renumber_seeds: bool,
                  rounds: int, seed: int, confidence: float) -> None:
    """`report --figure NAME`: one of the paper's tables or figures (report/paper_figures.py)."""
    from marsbench.report.paper_figures import compute, get_item
    from marsbench.report.paper_output import write_item

    if name is None:
        raise OptionError("--published regenerates one paper table or figure", where="--published",
                          fix="name it: --figure NAME (list them with `marsbench paper`)")
    item = get_item(name)
    if (experiments or all_runs) and store is None:
        raise OptionError("--experiment and --all-runs select runs of a results store",
                          where="--figure", fix="give the store: --store PATH")
    if experiments and all_runs:
        raise OptionError("--experiment and --all-runs contradict each other",
                          where="marsbench report", fix="use one of them")
    if published:
        if store is not None or csvs:
            raise OptionError("--published and --store/--csv are two sources", where="--published",
                              fix="give one of them")
        if not item.published:
            raise OptionError("the published runs shipped with marsbench do not cover it",
                              where="--figure", value=name, fix=f"regenerate it with: "
                              f"{item.regenerate}")
        from marsbench.aggregate.published import PAPER_BASELINES_FILE, paper_baselines

        table, source = paper_baselines(suffix=""), f"published runs ({PAPER_BASELINES_FILE})"
    else:
        from marsbench.aggregate.table import concat_tables

        _check_inputs(store, csvs)
        # the experiments' selected seed runs (by the name sweeps record; else their file); no
        # experiment file (the VLM table) or --all-runs: every run, zero-shot ones included
        names = [] if all_runs else experiments or [e.removeprefix("paper:")
                                                    for e in item.experiments]
        tables = [_read_store(store, names, not names)] if store is not None else []
        table = concat_tables(tables + [_read_csv(path, renumber_seeds) for path in csvs])
        source = ", ".join([str(store)] * (store is not None) + [str(p) for p in csvs])
    common.output_folder(out, "--out", create=False)
    numbers = compute(item, table, rounds=rounds, seed=seed, confidence=confidence)
    written = write_item(item, numbers, out, source=source, confidence=confidence)
    for what, path in written.items():
        typer.echo(f"{what}: {path}")
