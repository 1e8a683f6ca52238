"""`marsbench sweep`: run an experiment file's protocol (grid, selection, seeds), resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import OptionError, in_range
from . import common

console = Console(highlight=False)
DEFAULT_STORE = Path("runs/results.sqlite")
SHOW = 10  # failed / stale runs listed by name before "... and N more"
MAX_WORKERS = 65536  # workers, threads, CPUs and GPUs per run: beyond any machine or cluster
EPILOG = ("Examples:\n\n"
          "marsbench sweep paper:demo_synthetic --root marsbench-demo/data --dry-run\n\n"
          "marsbench sweep paper:main_classification --search tpe:30 --dry-run    # runs, cost\n\n"
          "marsbench sweep paper:main_classification --root ~/mars-bench --executor process "
          "--workers 4\n\n"
          "marsbench sweep my_study.yaml --executor ray --gpus-per-run 1    # on a Ray cluster")


def sweep_command(
    experiment: Annotated[Optional[str], typer.Argument(
        help="experiment file (YAML), or paper:<name> for a shipped one (see --list)")] = None,
    store: Annotated[Path, typer.Option(help="results database (SQLite)")] = DEFAULT_STORE,
    executor: Annotated[str, typer.Option(help="local | process | ray")] = "local",
    workers: Annotated[Optional[int], typer.Option(
        help="parallel runs (process: pool size; ray: most in flight, default all CPUs)")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="print the plan (runs per stage, done, failed, stale) and an estimated "
                          "cost from throughput measured here, and stop")] = False,
    search: Annotated[Optional[str], typer.Option(
        help="grid | random:<n> | tpe:<n> (Optuna TPE), overriding the file's search: which "
             "grid points each group trains")] = None,
    estimate: Annotated[bool, typer.Option(
        help="--dry-run: estimate the cost (measures each model's throughput once, cached; "
             "--no-estimate: counts only)")] = True,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="run again the runs recorded as failed")] = False,
    rerun_stale: Annotated[bool, typer.Option(
        "--rerun-stale", help="run again records made by other code or data (default: keep "
                              "them and report them)")] = False,
    out: Annotated[Optional[Path], typer.Option(
        help="folder for predictions (default: the store's folder)")] = None,
    root: Annotated[Optional[Path], typer.Option(
        help="data root, overriding the file's data.root")] = None,
    source: Annotated[Optional[str], typer.Option(
        help="auto | folder | hf, overriding the file's data.source")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    gpus_per_run: Annotated[float, typer.Option(help="ray: GPUs per run (e.g. 1 or 0.5)")] = 0.0,
    cpus_per_run: Annotated[float, typer.Option(help="ray: CPUs per run")] = 1.0,
    ray_address: Annotated[Optional[str], typer.Option(
        help="ray: cluster address (default: a local runtime)")] = None,
    threads: Annotated[Optional[int], typer.Option(
        help="torch CPU threads per run (default: CPUs / workers)")] = None,
    check_data: Annotated[bool, typer.Option(
        help="check the data before anything runs: every dataset present, and stored "
             "records' data fingerprints compared with the data now (--no-check-data: "
             "neither, e.g. to plan on a machine without the data)")] = True,
    logger: Annotated[Optional[str], typer.Option(
        help="log epochs and metrics to tensorboard | mlflow | wandb (optional extras; "
             "default: $MARSBENCH_LOGGER, else none)")] = None,
    log_dir: Annotated[Optional[Path], typer.Option(
        help="where the logger writes (default: $MARSBENCH_LOG_DIR, else runs/logs)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="summary only")] = False,
    list_experiments: Annotated[bool, typer.Option(
        "--list", help="list the shipped experiments and stop")] = False,
) -> None:
    """Search the grid on validation loss (every point, random or TPE), then the best at every seed.

    Every finished run is written to the store at once; run the same command again to
    continue an interrupted sweep (finished runs are skipped)."""
    from ..protocol import list_experiments as shipped, load_experiment

    if list_experiments:
        _print_shipped(shipped())
        return
    if experiment is None:
        raise OptionError("no experiment given", where="marsbench sweep",
                          fix="give an experiment file or paper:<name> (see --list)")
    # Everything is checked before the store is opened or anything runs: a bad option is one
    # line and exit code 2, never a sweep of failed runs.
    common.choice(executor, ("local", "process", "ray"), "--executor")
    in_range(workers, "--workers", 1, MAX_WORKERS, example="4")
    in_range(threads, "--threads", 1, MAX_WORKERS, example="2")
    in_range(gpus_per_run, "--gpus-per-run", 0, MAX_WORKERS, example="1")
    in_range(cpus_per_run, "--cpus-per-run", 0, MAX_WORKERS, low_open=True, example="1")
    if search is not None:
        from ..protocol.search import parse_search

        search = str(parse_search(search, "--search"))
    common.use_logger(logger, log_dir)  # worker processes inherit it
    if source is not None:
        from ..vocab import DATA_SOURCES as SOURCES

        common.choice(source, SOURCES, "--source")
    root = common.data_root(root)
    if out is not None:
        common.output_folder(out, "--out", create=False)
    from ..training.run import pick_device

    picked = pick_device(device) if dry_run or executor != "ray" else None  # ray: the cluster's
    exp = load_experiment(experiment)
    changes = {}
    if root is not None:
        changes["data_root"] = str(root.resolve())
    if source is not None:
        changes["source"] = source
    if search is not None:
        changes["search"] = search
    exp = exp.with_overrides(**changes) if changes else exp
    from ..protocol.plan import check_data_present

    if check_data:  # missing data: one line naming all of it, before the store opens
        check_data_present(exp)

    from ..runs.store import ResultsStore

    results = ResultsStore(store)
    if dry_run:
        _dry_run(exp, results, retry_failed, rerun_stale, check_data,
                 picked if estimate else None)
        return
    _sweep(exp, results, executor=executor, workers=workers, retry_failed=retry_failed,
           rerun_stale=rerun_stale, out_dir=out or store.parent, device=None if device == "auto"
           else device, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run,
           ray_address=ray_address, threads=threads, check_data=check_data, quiet=quiet)


# -- dry run ------------------------------------------------------------------------------------

def _dry_run(exp, store, retry_failed: bool, rerun_stale: bool, check_data: bool,
             device) -> None:
    from ..protocol import make_plan

    plan = make_plan(exp, store, retry_failed=retry_failed, rerun_stale=rerun_stale,
                     check_data=check_data)
    groups = len(plan.selections)
    searched = "every grid point" if exp.search == "grid" else f"search {exp.search}"
    axes = (" x split" if len(exp.splits) > 1 else "") + "".join(
        f" x {name}" for name, _ in exp.option_axes)
    console.print(f"[bold]{exp.name}[/bold]: {groups} groups (dataset x variant x model x "
                  f"regime{axes}), {searched} at seed {exp.grid_seed}, then "
                  f"{len(exp.seeds)} seeds; store {store.path}", highlight=False)
    retrains = sum(not s.reused for s in plan.seeds) + plan.pending_seed_runs()
    console.print(f"runs: {plan.search_runs} search trial(s) (stage grid), then {retrains} seed "
                  "retrain(s) (stage seeds; the winning trial itself is reused)",
                  highlight=False)
    table = Table(title="plan")
    for col in ("stage", "planned", "done", "failed", "stale", "to do", "will run",
                "reused from grid"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for row in plan.counts():
        table.add_row(row["stage"], *(str(row[k]) for k in (
            "planned", "done", "failed", "stale", "todo", "will_run", "reused")))
    console.print(table)
    pending = plan.pending_seed_runs()
    if pending:
        console.print(f"seeds stage of {len(plan.undecided)} group(s) not decided yet (their "
                      f"grid is unfinished): about {pending} more runs after selection")
    no_winner = [g for g, s in plan.selections.items() if s.decided and s.winner is None]
    if no_winner:
        console.print(f"[yellow]{len(no_winner)} group(s) have no successful grid run, so no "
                      "selection:[/yellow] " + "; ".join(g.describe() for g in no_winner[:SHOW]),
                      highlight=False)
    _list_failed([s.record for s in plan.grid + plan.seeds
                  if s.state == "failed" and not s.reused], retry_failed)
    _list_stale([s.stale for s in plan.stale], rerun_stale)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if device is not None:
        _print_estimate(plan, device)


def _print_estimate(plan, device) -> None:
    from ..protocol.estimate import EVAL_SPEEDUP, describe_seconds, estimate_plan

    est = estimate_plan(plan, device)
    console.print(f"estimated cost on {device}: at most {describe_seconds(est.seconds)} for "
                  f"{est.runs - est.unknown} of the {est.runs} run(s) still to run"
                  + (f" ({est.unknown} without an estimate: detectors or unknown dataset "
                     "sizes)" if est.unknown else ""), highlight=False)
    for label, t in sorted(est.throughputs.items()):
        rate = "-" if t.images_per_s is None else f"{t.images_per_s:.3g} train images/s"
        console.print(f"  {label}: {rate}, {t.how}{' (cached)' if t.cached else ''}",
                      highlight=False)
    console.print("  assumed: every epoch to max_epochs (early stopping ignored: an upper "
                  "bound), the whole network trained on every train image (cached features "
                  f"and frozen backbones ignored), val at {EVAL_SPEEDUP:g}x the training rate, "
                  "images at the model's input size; image counts from the dataset cards",
                  highlight=False)


def _list_failed(records, retried: bool) -> None:
    if not records:
        return
    what = "will be run again (--retry-failed)" if retried else \
        "kept; --retry-failed runs them again"
    console.print(f"[red]{len(records)} failed run(s)[/red], {what}:", highlight=False)
    for r in records[:SHOW]:
        console.print(f"  {r.spec_key[:12]} {r.spec.describe()}\n    {_last_line(r.error)}",
                      highlight=False)
    if len(records) > SHOW:
        console.print(f"  ... and {len(records) - SHOW} more")


def _list_stale(stale, rerun: bool) -> None:
    if not stale:
        return
    what = "will be run again (--rerun-stale)" if rerun else \
        "kept and used; --rerun-stale runs them again with this code and data"
    console.print(f"[yellow]{len(stale)} stale record(s)[/yellow] (made by other code or from "
                  f"other data), {what}:", highlight=False)
    for s in stale[:SHOW]:
        why = " and ".join(w for w, c in (("code", s.code_changed), ("data", s.data_changed))
                           if c)
        console.print(f"  {s.record.spec_key[:12]} {why} changed: {s.record.spec.describe()}",
                      highlight=False)
    if len(stale) > SHOW:
        console.print(f"  ... and {len(stale) - SHOW} more")


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _print_shipped(names: list[str]) -> None:
    from ..protocol import load_experiment
    from ..protocol.plan import group_count

    table = Table(title="shipped experiments")
    for col in ("name", "groups x grid", "search", "seeds", "description"):
        table.add_column(col)
    for name in names:
        exp = load_experiment(f"paper:{name}")
        groups = group_count(exp)
        loss = " x loss" if "paper" in exp.grid_dict["loss"] else ""  # its axis per dataset
        table.add_row(f"paper:{name}", f"{groups} x {exp.grid_size}{loss}", exp.search,
                      str(len(exp.seeds)), exp.description)
    console.print(table)


# -- the sweep ----------------------------------------------------------------------------------

def _sweep(exp, store, *, quiet: bool, **options) -> None:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    from ..protocol import SweepInterrupted, run_sweep

    live = console.is_terminal and not quiet
    progress = Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ok {task.fields[ok]} · [red]failed {task.fields[failed]}[/red] · "
                   "running {task.fields[running]} · remaining {task.fields[remaining]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
    ) if live else None
    bar = None

    def on_event(event) -> None:
        nonlocal bar
        p = event.progress
        if event.kind == "finished" and not live and not quiet:
            r = event.record
            status = "ok    " if r.ok else "FAILED"
            detail = f"val loss {r.val_loss:.4f}" if r.ok and r.val_loss is not None else \
                _last_line(r.error)
            console.print(f"[{p.finished}/{p.to_run}] {status} {event.run.stage:5} "
                          f"{r.spec.describe()}  {detail}", highlight=False, soft_wrap=True)
        if event.kind == "finished" and live and not event.record.ok:
            progress.console.print(f"[red]failed[/red] {event.record.spec.describe()}: "
                                   f"{_last_line(event.record.error)}", highlight=False)
        if event.kind == "selected" and live and event.selection.winner is not None:
            s = event.selection
            progress.console.print(f"selected for {s.group.describe()}: "
                                   f"{s.winner.spec.describe()} ({s.metric} {s.value:.4f})",
                                   highlight=False)
        if progress is not None:
            fields = dict(ok=p.ok, failed=p.failed, running=p.running, remaining=p.remaining)
            if bar is None:
                bar = progress.add_task(exp.name, total=p.to_run, **fields)
            progress.update(bar, total=p.to_run, completed=p.finished, **fields)

    try:
        if progress is not None:
            progress.start()
        try:
            summary = run_sweep(exp, store, on_event=on_event, **options)
        finally:
            if progress is not None:
                progress.stop()
    except SweepInterrupted as exc:
        _summarise(exc.summary)
        console.print("[yellow]interrupted[/yellow]: finished runs are in the store; run the "
                      "same command again to continue")
        raise typer.Exit(130)
    _summarise(summary)
    if summary.progress.failed:
        raise typer.Exit(1)


def _summarise(summary) -> None:
    p = summary.progress
    console.print(f"[bold]{summary.experiment}[/bold] on {summary.executor}: ran {p.finished} "
                  f"(ok {p.ok}, failed {p.failed}); {p.skipped} already done in "
                  f"{summary.store}", highlight=False)
    if p.elsewhere:
        failed = sum(not r.ok for r in summary.elsewhere)
        console.print(f"{p.elsewhere} run(s) were done by a concurrent sweep on the same store"
                      + (f" ({failed} failed)" if failed else ""), highlight=False)
    if summary.skipped_failed:
        console.print(f"{summary.skipped_failed} failed record(s) kept; --retry-failed runs "
                      "them again")
    if summary.failures:
        console.print(f"[red]{len(summary.failures)} run(s) failed[/red] and are recorded as "
                      "failed:", highlight=False)
        for r in summary.failures[:SHOW]:
            console.print(f"  {r.spec.describe()}\n    {_last_line(r.error)}", highlight=False)
    _list_stale(summary.stale_kept, rerun=False)
    if summary.stale_rerun:
        console.print(f"{len(summary.stale_rerun)} stale record(s) were run again")
    won = sum(s.winner is not None for s in summary.selections.values())
    console.print(f"selection: a winner for {won} of {len(summary.selections)} group(s) "
                  f"(table `selections` in {summary.store})", highlight=False)
    if summary.no_winner:
        console.print(f"[yellow]{len(summary.no_winner)} group(s) without any successful grid "
                      "run[/yellow]: " + "; ".join(g.describe() for g in summary.no_winner[:SHOW]),
                      highlight=False)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
