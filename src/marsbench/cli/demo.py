"""`marsbench demo`: the main job on the embedded default (the synthetic Mars-Bench suite)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def demo_command(
    out: Annotated[Path, typer.Option(help="working folder for data and results")] = Path(
        "marsbench-demo"),
    fmt: Annotated[str, typer.Option("--format", help="folder or hf")] = "folder",
) -> None:
    """Generate the SYNTHETIC Mars-Bench suite and summarise every dataset loaded from it."""
    from ..catalog import list_cards
    from ..sources import open_dataset
    from ..sources.synth import generate_suite

    data = out / "data" / fmt
    console.print(f"writing the synthetic suite ({fmt} layout) to {data} ...")
    paths = generate_suite(data, fmt)
    table = Table(title="Synthetic Mars-Bench suite (SYNTHETIC data, loaded back)")
    for col in ("dataset", "task", "classes", "train", "val", "test", "sample", "variants"):
        table.add_column(col)
    for card, path in zip(list_cards(), paths):
        splits = {s: open_dataset(path, s) for s in ("train", "val", "test")}
        sample = splits["train"][0]
        shape = "x".join(str(d) for d in getattr(sample, "image").shape)
        n_variants = _count_variants(path, fmt)
        table.add_row(card.name, str(card.task), str(splits["train"].num_classes),
                      *(str(len(splits[s])) for s in ("train", "val", "test")), shape,
                      str(n_variants))
    console.print(table)


def _count_variants(path: Path, fmt: str) -> int:
    """How many few-shot / partition train variants the dataset folder publishes."""
    if fmt == "hf":
        from ..sources.hf import list_shards

        return sum(1 for s in list_shards(str(path))[0] if s not in ("train", "val", "test"))
    return len(list(path.glob("few_shot/*.csv"))) + len(list(path.glob("partitions/*.csv")))
