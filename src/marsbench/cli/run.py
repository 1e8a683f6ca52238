"""`marsbench run`: one experiment, printed and recorded in the results store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
DEFAULT_STORE = Path("runs/results.sqlite")


def run_command(
    dataset: Annotated[str, typer.Option(help="catalog name or a folder in the Mars-Bench layout")],
    model: Annotated[str, typer.Option(help="registry name or timm:<name>")],
    regime: Annotated[str, typer.Option(help="scratch | feature_extraction | fine_tuning")],
    seed: int = 0,
    root: Annotated[Optional[Path], typer.Option(help="data root")] = None,
    source: Annotated[str, typer.Option(help="auto | folder | hf")] = "auto",
    variant: Annotated[str, typer.Option(help="full | few_shot:<k> | partition:<p>")] = "full",
    lr: float = 1e-3,
    batch_size: int = 32,
    optimizer: Annotated[str, typer.Option(help="adam | adamw | sgd")] = "adamw",
    weight_decay: float = 0.05,
    scheduler: Annotated[str, typer.Option(help="none | cosine | plateau | step")] = "none",
    max_epochs: int = 50,
    patience: int = 5,
    loss: Annotated[str, typer.Option(
        help="auto | ce | bce (classification); ce | dice | combined (segmentation)")] = "auto",
    augment: Annotated[bool, typer.Option(help="train-time augmentation")] = True,
    fe_path: Annotated[str, typer.Option(
        help="feature_extraction only: cached (backbone once, no augmentation) | online")] = "cached",
    input_size: Annotated[Optional[int], typer.Option(
        help="override the model's input size (px); part of the run's identity")] = None,
    option: Annotated[Optional[list[str]], typer.Option(
        "--extra", help="task option KEY=VALUE, repeatable (e.g. input_policy=tile, "
                        "tile_size=256, dice_weighting=square); part of the run's identity")] = None,
    band_strategy: Annotated[Optional[str], typer.Option(
        help="Earth-observation models: replicate | visible | adapter")] = None,
    weights: Annotated[Optional[Path], typer.Option(
        help="your own checkpoint (state dict; loaded without unpickling objects)")] = None,
    subset_seed: Annotated[Optional[int], typer.Option(
        help="draw a recorded stratified subset where the variant has no official file")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    store: Annotated[Path, typer.Option(help="results database (SQLite)")] = DEFAULT_STORE,
    out: Annotated[Path, typer.Option(help="folder for predictions")] = Path("runs"),
    force: Annotated[bool, typer.Option(help="rerun even if the store has this spec")] = False,
    quiet: bool = False,
) -> None:
    """Train and score one model on one dataset in one regime; record the run."""
    from ..models.weights import file_sha256
    from ..runs.spec import RunSpec
    from ..runs.store import ResultsStore
    from ..training.run import run_experiment

    extra = {"fe_path": fe_path} if regime == "feature_extraction" else {}
    if subset_seed is not None:
        extra["subset_seed"] = str(subset_seed)
    if band_strategy is not None:
        extra["band_strategy"] = band_strategy
    if input_size is not None:
        extra["input_size"] = str(input_size)
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            console.print(f"[red]error:[/red] --extra {item!r}: use KEY=VALUE", highlight=False)
            raise typer.Exit(2)
        extra[key.strip()] = value.strip()
    try:
        spec = RunSpec(dataset=dataset, model=model, regime=regime, variant=variant, seed=seed,
                       lr=lr, batch_size=batch_size, optimizer=optimizer,
                       weight_decay=weight_decay, scheduler=scheduler, max_epochs=max_epochs,
                       patience=patience, loss=loss, augment=augment,
                       weights=f"sha256:{file_sha256(weights)}" if weights else "default",
                       extra=extra, data_root=str(root) if root else None, source=source)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2)
    from ..training.distributed import init_from_env

    world = init_from_env()  # under torchrun, rank 0 alone reads and writes the store
    if world is not None and not world.is_main:
        run_experiment(spec, weights_path=weights, device=device, subset_seed=subset_seed)
        return
    results = ResultsStore(store)
    existing = results.get(spec.key)
    if existing is not None and existing.ok and not force:
        console.print(f"already in {store} (spec {spec.short_key}); use --force to rerun")
        _print_record(existing)
        return
    import contextlib

    bars = contextlib.nullcontext() if quiet else _ProgressBars(spec.max_epochs)
    try:
        with bars as progress:
            record = run_experiment(spec, weights_path=weights, device=device, out_dir=out,
                                    store=results, subset_seed=subset_seed, progress=progress)
    except Exception as exc:  # recorded as failed in the store by run_experiment
        console.print(f"[red]run failed:[/red] {type(exc).__name__}: {exc}", highlight=False)
        raise typer.Exit(1)
    _print_record(record)
    console.print(f"record {spec.short_key} written to {store}; predictions: "
                  f"{record.predictions_path}")


class _ProgressBars:
    """Rich bars for epochs and batches; the trainer calls the object after each epoch and,
    through ``.batch(done, total)``, after each training batch."""

    def __init__(self, max_epochs: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
                             console=console, transient=False)
        self.epochs = self.bars.add_task("epochs", total=max_epochs, losses="")
        self.batches = self.bars.add_task("batches", total=None, losses="")

    def __enter__(self):
        self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.stop()

    def __call__(self, epoch: int, train_loss: float, val_loss: float) -> None:
        self.bars.update(self.epochs, completed=epoch,
                         losses=f"train {train_loss:.4f}  val {val_loss:.4f}")

    def batch(self, done: int, total: int) -> None:
        self.bars.update(self.batches, completed=done, total=total)


def _print_record(record) -> None:
    table = Table(title=record.spec.describe())
    table.add_column("split")
    names = [k for k, v in record.metrics.get("test", {}).items() if isinstance(v, (int, float))]
    for name in names:
        table.add_column(name, justify="right")
    for split in ("val", "test"):
        m = record.metrics.get(split, {})
        table.add_row(split, *(f"{m.get(n, float('nan')):.4f}" for n in names))
    console.print(table)
    t = record.timings
    console.print(f"best epoch {record.best_epoch} of {record.epochs_run}; features "
                  f"{t.get('feature_extraction_s', 0):.1f}s, training {t.get('training_s', 0):.1f}s, "
                  f"total {t.get('total_s', 0):.1f}s on {record.device}", highlight=False)
