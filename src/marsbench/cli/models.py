"""`marsbench models list | info`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .common import choice

app = typer.Typer(no_args_is_help=True, help="The model registry: baselines, timm:<name>, "
                                            "and how each model is fed and initialised.")
console = Console()


@app.callback()
def _group() -> None:
    """The model registry."""


_LIST_EPILOG = ("Examples:\n\n"
                "marsbench models list '*lite*'\n\n"
                "marsbench models list --task segmentation 'unet*' 'deeplab*'\n\n"
                "marsbench models list --json | jq -r '.[].name'")
_COLUMNS = ("name", "task", "input", "mean / std", "weights", "head (trained when frozen)",
            "notes")


@app.command("list", epilog=_LIST_EPILOG)
def list_command(
    patterns: Annotated[list[str] | None, typer.Argument(
        metavar="PATTERN", show_default=False,
        help="only the names matching a shell-style pattern ('*lite*', 'vit_*'; "
             "case-insensitive, several allowed)")] = None,
    task: Annotated[
        str | None, typer.Option(help="classification|segmentation|detection")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list of model objects")] = False,
) -> None:
    """List the registered models (any timm model is also accepted as timm:<name>): a table
    on a terminal, tab-separated rows (a header line, names whole) in a pipe or file."""
    from ..catalog.card import Task
    from ..models import list_specs, registered_prefixes
    from .env import match_patterns, print_rows, stdout_is_terminal

    if task is not None:
        choice(task, [t.value for t in Task], "--task")
    specs = list_specs(task)
    names = set(match_patterns([s.name for s in specs], patterns, what="model",
                               where="marsbench models list",
                               everything=[s.name for s in list_specs()] if task else None))
    specs = [s for s in specs if s.name in names]
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in specs], indent=2))
        return
    rows = []
    for s in specs:
        notes = ["paper baseline"] if s.paper_baseline else []
        notes += [f"aux loss {s.aux_loss_weight:g}"] if s.aux_loss_weight else []
        rows.append([s.name, str(s.task), f"{s.in_channels}x{s.input_size}px",
                     f"{_fmt(s.mean)} / {_fmt(s.std)}",
                     f"{s.weights.kind} {s.weights.tag}".strip(),
                     ", ".join(s.head_names), ", ".join(notes)])
    also = ("Also accepted: " + ", ".join(f"{p}<name>" for p in registered_prefixes())
            + " (e.g. timm:resnet18).") if registered_prefixes() else None
    if not stdout_is_terminal():
        print_rows(list(_COLUMNS), rows)
        if also:  # on stderr: the rows on stdout stay one table
            typer.echo(also, err=True)
        return
    table = Table(title=f"marsbench models ({len(specs)})")
    table.add_column("name", no_wrap=True, min_width=max((len(s.name) for s in specs), default=4))
    for col in _COLUMNS[1:]:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if also:
        console.print(also, highlight=False)


_INFO_EPILOG = ("Examples:\n\n"
                "marsbench models info efficientnet_lite0\n\n"
                "marsbench models info unet:resnet50 --json\n\n"
                "marsbench models info timm:convnext_tiny")


@app.command("info", epilog=_INFO_EPILOG)
def info_command(
    name: Annotated[str, typer.Argument(help="registry name or timm:<name>")],
    as_json: Annotated[bool, typer.Option("--json", help="the model as a JSON object")] = False,
) -> None:
    """Show how one model is built, fed and initialised."""
    from ..models import get_spec

    spec = get_spec(name)  # an unknown name: one line with "did you mean"
    info = spec.to_dict()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    table = Table(show_header=False, title=spec.name)
    for key, value in info.items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    console.print(table)


def _fmt(values: tuple[float, ...]) -> str:
    from ..models.preprocess import IMAGENET_MEAN, IMAGENET_STD

    if values in (IMAGENET_MEAN, IMAGENET_STD):
        return "ImageNet"
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
