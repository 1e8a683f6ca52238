"""`marsbench paper`: the paper's tables and figures, the experiment file that regenerates each,
its run count and how much of it a results store already holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import OptionError

EPILOG = ("Examples:\n\n"
          "marsbench paper\n\n"
          "marsbench paper --store runs/results.sqlite figure:training_size\n\n"
          "marsbench report --figure figure:few_shot --published --out paper/")


def paper_command(
    names: Annotated[Optional[list[str]], typer.Argument(
        help="only these tables/figures (default: all)", show_default=False)] = None,
    store: Annotated[Optional[Path], typer.Option(
        help="results store: count the runs of each experiment it already holds "
             "(plans every run: seconds per experiment)")] = None,
) -> None:
    """List the paper's tables and figures: experiment file, runs planned, runs in the store.

    Runs are counted as `marsbench sweep --dry-run` counts them (grid stage plus the seeds
    stage); `marsbench report --figure NAME` regenerates one from a store, a CSV or the
    published runs (--published)."""
    from ..protocol import load_experiment
    from ..report.paper_figures import REGISTRY, get_item, planned_runs, store_coverage

    items = [get_item(n) for n in names] if names else list(REGISTRY)
    results = None
    if store is not None:
        from ..runs.store import ResultsStore

        if not store.is_file():
            raise OptionError("no results store", where=store,
                              fix="give --store the SQLite file `marsbench run` / `sweep` wrote")
        results = ResultsStore(store, readonly=True)
    plans: dict[str, tuple[int, str]] = {}
    for item in items:
        typer.echo(f"{item.name}: {item.caption}")
        if not item.experiments:
            typer.echo(f"  regenerate: {item.command}")
            continue
        for name in item.experiments:
            if name not in plans:
                exp = load_experiment(name)
                have = ""
                if results is not None:
                    done, needed = store_coverage(exp, results)
                    have = f"  in store: {done}/{needed}"
                plans[name] = (planned_runs(exp), have)
            count, have = plans[name]
            typer.echo(f"  experiment: {name}  runs: {count}{have}")
        published = "yes" if item.published else "no"
        typer.echo(f"  regenerate: {item.regenerate}  (--published: {published})")
