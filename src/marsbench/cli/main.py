"""Entry point of the `marsbench` command. Each command group lives in its own module."""

from __future__ import annotations

import typer

from .datasets import app as datasets_app
from .demo import demo_command
from .models import app as models_app
from .report import report_command
from .run import run_command
from .sweep import sweep_command
from .vlm import vlm_command

app = typer.Typer(
    name="marsbench",
    help="Mars-Bench: evaluate vision foundation models on Mars science tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("demo")(demo_command)
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
app.command("run")(run_command)
app.command("sweep")(sweep_command)
app.command("report")(report_command)
app.command("vlm")(vlm_command)

if __name__ == "__main__":  # pragma: no cover
    app()
