"""Entry point of the `marsbench` command. Each command group lives in its own module."""

from __future__ import annotations

import typer

from .datasets import app as datasets_app
from .demo import demo_command

app = typer.Typer(
    name="marsbench",
    help="Mars-Bench: evaluate vision foundation models on Mars science tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(datasets_app, name="datasets")
app.command("demo")(demo_command)

# Command groups added by later stages register themselves here, one line each.

if __name__ == "__main__":  # pragma: no cover
    app()
