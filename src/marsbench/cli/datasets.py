"""`marsbench datasets list | info | check | audit | synth | download`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..catalog import Task, get_card, list_cards
from ..errors import in_range
from . import common

app = typer.Typer(no_args_is_help=True, help="The 20 Mars-Bench datasets: list, inspect, "
                                            "download, validate, synthesise.")
console = Console()

RootOption = Annotated[Optional[Path], typer.Option(
    "--root", help="data root (default: $MARSBENCH_DATA or the user cache dir)")]


_LIST_EPILOG = ("Examples:\n\n"
                "marsbench datasets list '*seg*'\n\n"
                "marsbench datasets list --task detection --json\n\n"
                "marsbench datasets list | cut -f1,6    # plain tab-separated rows in a pipe")
_COLUMNS = ("name", "task", "kind", "platform", "instrument", "px", "bands", "classes",
            "train/val/test")


@app.command("list", epilog=_LIST_EPILOG)
def list_command(
    patterns: Annotated[Optional[list[str]], typer.Argument(
        metavar="PATTERN", show_default=False,
        help="only the names matching a shell-style pattern ('*seg*', 'mb-crater_*'; "
             "case-insensitive, several allowed)")] = None,
    task: Annotated[Optional[str], typer.Option(help="classification|segmentation|detection")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per dataset")] = False,
) -> None:
    """List the datasets of the catalog: a table on a terminal, tab-separated rows (a header
    line, names whole) in a pipe or file."""
    from .env import match_patterns, print_rows, stdout_is_terminal

    if task is not None:
        common.choice(task, [t.value for t in Task], "--task")
    cards = list_cards(task)
    names = match_patterns([c.name for c in cards], patterns, what="dataset",
                           where="marsbench datasets list",
                           everything=[c.name for c in list_cards()] if task else None)
    cards = [c for c in cards if c.name in set(names)]
    if as_json:
        typer.echo(json.dumps([c.to_dict() for c in cards], indent=2))
        return
    rows = [[c.name, str(c.task), str(c.kind), str(c.platform), c.instrument, str(c.image_size),
             str(c.bands), str(c.num_classes),
             f"{c.split_sizes['train']}/{c.split_sizes['val']}/{c.split_sizes['test']}"]
            for c in cards]
    if not stdout_is_terminal():
        print_rows(list(_COLUMNS), rows)
        return
    table = Table(title=f"Mars-Bench datasets ({len(cards)})")
    table.add_column("name", no_wrap=True, min_width=max((len(c.name) for c in cards), default=4))
    for col in _COLUMNS[1:]:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


_INFO_EPILOG = ("Examples:\n\n"
    "marsbench datasets info mb-domars16k\n\n"
    "marsbench datasets info mb-frost_cls --root ~/mars-bench\n\n"
    "marsbench datasets info ./my_dataset")


@app.command("info", epilog=_INFO_EPILOG)
def info_command(name: str, root: RootOption = None) -> None:
    """Show a dataset's card and whether (and where) its data is present locally."""
    from ..sources.cache import find_copies, local_path

    card = get_card(name)
    root = common.data_root(root)
    info = card.to_dict()
    table = Table(show_header=False, title=card.name)
    for key in ("task", "kind", "platform", "mission", "instrument", "image_size", "bands",
                "num_classes", "class_names", "known_class_names", "splits", "variants",
                "headline_metric", "hf_repo", "zenodo_record", "license", "notes", "citation"):
        value = info[key]
        if key == "zenodo_record" and value is None:
            value = "resolved by name in the Zenodo community 'mars-bench'"
        if key == "class_names" and value is None:
            value = "read from the data (mapping.json / HF label feature)"
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    present = find_copies(card.name, root)  # by layout: <root>/<name> may hold an HF copy
    for layout, source in (("folder", "zenodo"), ("hf", "hf")):
        where = present.get(layout)
        table.add_row(f"local ({source})", f"[green]{where}[/green]" if where else
                      f"absent (would be {local_path(card.name, source, root)})")
    console.print(table)


_CHECK_EPILOG = ("Examples:\n\n"
    "marsbench datasets check mb-domars16k\n\n"
    "marsbench datasets check mb-mars_seg_msl --root ~/mars-bench --ignore-index 255\n\n"
    "marsbench datasets check mb-boulder_det --source hf")


@app.command("check", epilog=_CHECK_EPILOG)
def check_command(
    name: Annotated[str, typer.Argument(help="dataset name or folder")],
    root: RootOption = None,
    source: Annotated[str, typer.Option(help="auto|folder|hf")] = "auto",
    ignore_index: Annotated[Optional[int], typer.Option(
        "--ignore-index", help="mask value to ignore (e.g. 255)")] = None,
) -> None:
    """Validate a local copy in one pass and list every problem; exit 1 if any."""
    from ..sources.check import check_dataset
    from ..vocab import DATA_SOURCES as SOURCES

    common.choice(source, SOURCES, "--source")
    in_range(ignore_index, "--ignore-index", 0, 65535, example="255")  # 8/16-bit masks
    root = common.data_root(root)
    common.dataset_name(name)
    _require_hub_for(name, root, source)
    report = check_dataset(name, root=root, source=source, ignore_index=ignore_index)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    console.print(f"{report.dataset} ({report.source}, {report.location}): {counts}",
                  soft_wrap=True)  # the path whole (a terminal wraps it, nothing breaks it)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if report.ok:
        console.print("[green]clean: no problems found[/green]")
        return
    table = Table(title=f"{len(report.problems)} problems")
    for col in ("split", "file", "problem"):
        table.add_column(col, overflow="fold")
    for p in report.problems:
        table.add_row(p.split, p.path, p.message)
    console.print(table)
    first = report.problems[0]
    common.echo_error(first.message if len(report.problems) == 1 else
                      f"{len(report.problems)} problems in {report.location} (listed above); "
                      f"the first: {first.message}")
    raise typer.Exit(1)


_AUDIT_EPILOG = ("Examples:\n\n"
    "marsbench datasets audit mb-landmark_cls\n\n"
    "marsbench datasets audit mb-frost_cls --root ~/mars-bench --json\n\n"
    "marsbench datasets audit ./my_dataset --threshold 3")


@app.command("audit", epilog=_AUDIT_EPILOG)
def audit_command(
    name: Annotated[str, typer.Argument(help="dataset name or folder")],
    root: RootOption = None,
    threshold: Annotated[int, typer.Option(
        "--threshold", help="near-duplicate: dHash Hamming distance at most this (0-64 bits)")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="the whole audit as JSON")] = False,
) -> None:
    """Audit the splits for leakage: observation groups decoded from the product ids in file
    names (HiRISE, CTX, THEMIS, MSL), exact and near-duplicate images within and across splits,
    and how many val/test images share an observation with, or (nearly) duplicate, a train
    image. A table on a terminal, tab-separated rows in a pipe (docs/audit.md)."""
    from ..errors import OptionError
    from ..sources.audit import audit_dataset, summary_rows
    from .env import print_rows, stdout_is_terminal

    if not 0 <= threshold <= 64:
        raise OptionError("--threshold must be 0..64 bits", value=threshold,
                          fix="use e.g. 5 (the default)")
    root = common.data_root(root)
    common.dataset_name(name)
    report = audit_dataset(name, root=root, threshold=threshold)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    header, rows = summary_rows(report)
    if not stdout_is_terminal():
        print_rows(header, rows)
        return
    table = Table(title=f"{report['dataset']}: split audit (near-duplicate: dHash distance "
                        f"<= {report['threshold']}; leakage columns against train)")
    for col in header:
        table.add_column(col)
    for row in rows:
        table.add_row(*map(str, row))
    console.print(table)
    for pair, comp in report["comparisons"].items():
        shared = comp["shared_groups"]
        examples = ", ".join(shared[:3]) + (", ..." if len(shared) > 3 else "")
        line = f"{pair}: {len(shared)} shared observation groups"
        if shared:
            line += f" (e.g. {examples})"
        line += (f", {len(comp['exact_duplicates'])} exact and "
                 f"{len(comp['near_duplicates'])} near-duplicate pairs")
        near = comp["near_duplicates"][:1]
        if near:
            line += f" (e.g. {near[0]['a']} ~ {near[0]['b']}, distance {near[0]['distance']})"
        console.print(line, highlight=False, soft_wrap=True)
    console.print("all groups, pairs and decoded latitudes: --json", highlight=False)


def _require_hub_for(name: str, root: Path | None, source: str) -> None:
    """Where the data would be read from the Hub (no local copy, --source hf or a repo id), one
    line at once if the Hub cannot be used (offline, HF_HUB_OFFLINE=1): reading each split
    would otherwise wait for the library's retries, then list the same problem per split."""
    from ..sources.errors import DataError
    from ..sources.hf import require_hub
    from ..sources.open import resolve

    if Path(name).is_dir():
        return
    try:
        card, src, location = resolve(name, root=root, source=source)
    except DataError:
        return  # check_dataset reports it as before
    if src == "hf" and not Path(location).is_dir():
        require_hub(location, card.name)


_SYNTH_EPILOG = ("Examples:\n\n"
    "marsbench datasets synth mb-domars16k --out synth/\n\n"
    "marsbench datasets synth all --out synth/ --format hf")


@app.command("synth", epilog=_SYNTH_EPILOG)
def synth_command(
    name: Annotated[str, typer.Argument(help="dataset name, or 'all' for the 20")],
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    fmt: Annotated[str, typer.Option("--format", help="folder (Zenodo layout) or hf")] = "folder",
    seed: int = 0,
) -> None:
    """Write a small SYNTHETIC dataset mirroring a card, in its exact public format."""
    from ..runs.spec import MAX_SEED
    from ..sources.synth import generate, generate_suite

    common.choice(fmt, ("folder", "hf"), "--format")
    in_range(seed, "--seed", 0, MAX_SEED, example="0")
    cards = None if name == "all" else [get_card(name)]  # a typo is refused before writing
    out = common.output_folder(out, "--out")
    paths = (generate_suite(out, fmt, seed=seed) if cards is None
             else [generate(cards[0], out, fmt, seed=seed)])
    for path in paths:
        console.print(f"wrote synthetic {path.name} ({fmt}) to {path}")


_DOWNLOAD_EPILOG = ("Examples:\n\n"
    "marsbench datasets download mb-domars16k\n\n"
    "marsbench datasets download mb-frost_cls --source zenodo --root ~/mars-bench")


@app.command("download", epilog=_DOWNLOAD_EPILOG)
def download_command(
    name: str,
    source: Annotated[str, typer.Option(help="hf or zenodo")] = "hf",
    root: RootOption = None,
    zenodo_record: Annotated[Optional[str], typer.Option(help="Zenodo record id")] = None,
    force: bool = False,
    quiet: bool = False,
) -> None:
    """Download a dataset (resumable, integrity-checked) into the data root."""
    from ..sources.cache import data_root
    from ..sources.download import download

    get_card(name)  # refused before any network access: a typo, the source, the root
    common.choice(source, ("hf", "zenodo", "folder"), "--source")
    common.output_folder(data_root(root), "--root")
    path = download(name, source, root, progress=not quiet, zenodo_record=zenodo_record,
                    force=force)
    console.print(f"{name} is in {path}")
