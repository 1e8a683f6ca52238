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


@app.command("list")
def list_command(
    task: Annotated[
        str | None, typer.Option(help="classification|segmentation|detection")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list of model objects")] = False,
) -> None:
    """List the registered models (any timm model is also accepted as timm:<name>)."""
    from ..catalog.card import Task
    from ..models import list_specs, registered_prefixes

    if task is not None:
        choice(task, [t.value for t in Task], "--task")
    specs = list_specs(task)
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in specs], indent=2))
        return
    table = Table(title=f"marsbench models ({len(specs)})")
    for col in ("name", "task", "input", "mean / std", "weights", "head (trained when frozen)",
                "notes"):
        table.add_column(col)
    for s in specs:
        notes = ["paper baseline"] if s.paper_baseline else []
        notes += [f"aux loss {s.aux_loss_weight:g}"] if s.aux_loss_weight else []
        table.add_row(s.name, str(s.task), f"{s.in_channels}x{s.input_size}px",
                      f"{_fmt(s.mean)} / {_fmt(s.std)}",
                      f"{s.weights.kind} {s.weights.tag}".strip(),
                      ", ".join(s.head_names), ", ".join(notes))
    console.print(table)
    if registered_prefixes():
        console.print("Also accepted: " + ", ".join(f"{p}<name>" for p in registered_prefixes())
                      + " (e.g. timm:resnet18).", highlight=False)


@app.command("info")
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
