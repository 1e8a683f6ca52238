"""`marsbench run`: one experiment, printed and recorded in the results store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import MarsbenchError, OptionError
from . import common
from ..runs.options import build_options, options_help

console = Console()
DEFAULT_STORE = Path("runs/results.sqlite")
OPTIONS_HELP = options_help().splitlines()
EPILOG = ("Examples:\n\n"
          "marsbench run --dataset mb-landmark_cls --model efficientnet_lite0 "
          "--regime feature_extraction\n\n"
          "marsbench run --dataset mb-crater_binary_seg --model unet_efficientnet_lite0 "
          "--regime fine_tuning --max-epochs 20 -o input_policy=tile -o tile_size=256\n\n"
          "marsbench run --dataset mb-landmark_cls --model efficientnet_lite0 "
          "--regime feature_extraction --split observation_disjoint\n\n"
          "nohup marsbench run --dataset mb-frost_cls --model timm:resnet18 --regime scratch "
          "> run.log &    # one plain line per epoch in run.log")


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
        help="classification: auto | ce | bce; segmentation: auto | ce | dice | combined; "
             "detection: auto")] = "auto",
    augment: Annotated[bool, typer.Option(help="train-time augmentation")] = True,
    profile: Annotated[str, typer.Option(
        help="marsbench (our defaults) | paper (the reference's semantics: docs/fidelity.md)"
    )] = "marsbench",
    precision: Annotated[str, typer.Option(
        help="auto (bf16 autocast on CUDA, fp32 on the CPU) | fp32 | bf16 | fp16")] = "auto",
    compile: Annotated[bool, typer.Option(
        "--compile/--no-compile", help="torch.compile the model (classification, "
                                       "segmentation)")] = False,
    fe_path: Annotated[Optional[str], typer.Option(
        help="option fe_path: feature_extraction only: cached (backbone once, no augmentation; "
             "default) | online")] = None,
    input_size: Annotated[Optional[int], typer.Option(help="option input_size (px)")] = None,
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", "--extra", "-o",
        help="a typed run option KEY=VALUE, repeatable; part of the run's identity; unknown "
             "names and values are refused. " + " | ".join(OPTIONS_HELP))] = None,
    band_strategy: Annotated[Optional[str], typer.Option(
        help="option band_strategy: Earth-observation models: replicate | visible | "
             "adapter")] = None,
    weights: Annotated[Optional[Path], typer.Option(
        help="your own checkpoint (state dict; loaded without unpickling objects)")] = None,
    subset_seed: Annotated[Optional[int], typer.Option(
        help="draw a recorded stratified subset where the variant has no official file")] = None,
    split: Annotated[str, typer.Option(
        help="official | observation_disjoint | region:<name> | latitude_band:<lo>:<hi> "
             "(re-drawn with --subset-seed, else 0; docs/splits.md)")] = "official",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    store: Annotated[Path, typer.Option(help="results database (SQLite)")] = DEFAULT_STORE,
    out: Annotated[Path, typer.Option(help="folder for predictions")] = Path("runs"),
    force: Annotated[bool, typer.Option(help="rerun even if the store has this spec")] = False,
    logger: Annotated[Optional[str], typer.Option(
        help="log epochs and metrics to tensorboard | mlflow | wandb (optional extras; "
             "default: $MARSBENCH_LOGGER, else none)")] = None,
    log_dir: Annotated[Optional[Path], typer.Option(
        help="where the logger writes (default: $MARSBENCH_LOG_DIR, else runs/logs)")] = None,
    quiet: bool = False,
) -> None:
    """Train and score one model on one dataset in one regime; record the run.

    On a terminal, progress is shown as bars (epochs, and the batches of the current epoch);
    in a file or pipe (nohup, SLURM) as one plain line per epoch, flushed at once."""
    from ..models.weights import file_sha256
    from ..runs.spec import RunSpec
    from ..runs.store import ResultsStore
    from ..training.run import run_experiment

    common.use_logger(logger, log_dir)
    options = {name: value for name, value in (("fe_path", fe_path), ("input_size", input_size),
                                                ("band_strategy", band_strategy))
               if value is not None}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError("a run option must be KEY=VALUE", where="--option", value=item,
                              fix="e.g. --option input_policy=tile")
        if key.strip() in options:
            raise OptionError("run option given twice", where="--option", value=key.strip())
        options[key.strip()] = value.strip()
    if root is not None and not root.is_dir():
        raise OptionError("data root not found", where="--root", value=str(root),
                          fix="pass the folder holding the dataset folders, or leave --root "
                              "out to use $MARSBENCH_DATA / the user cache")
    if weights is not None and not weights.is_file():
        raise OptionError("checkpoint not found" if not weights.exists() else
                          "checkpoint is not a file", where="--weights", value=str(weights),
                          fix="pass the path of a checkpoint file (.pt, .pth, .safetensors)")
    if weights is not None:
        from ..models.weights import read_state_dict

        read_state_dict(weights)  # empty, unreadable or not a state dict: before the store exists
    spec = RunSpec(dataset=dataset, model=model, regime=regime, variant=variant, seed=seed,
                   lr=lr, batch_size=batch_size, optimizer=optimizer,
                   weight_decay=weight_decay, scheduler=scheduler, max_epochs=max_epochs,
                   patience=patience, loss=loss, augment=augment, precision=precision,
                   profile=profile,
                   compile=compile, weights=f"sha256:{file_sha256(weights)}" if weights else "default",
                   subset_seed=subset_seed, split=split, options=options,
                   data_root=str(root) if root else None, source=source)
    if spec.options.to_dict().get("band_strategy") is not None:
        build_options(spec.task, spec.options, regime=spec.regime, loss=spec.loss,
                      model=spec.model, where="--band-strategy")
    from ..models.registry import get_spec
    from ..training.run import pick_device

    get_spec(spec.model)  # an unknown model (did you mean ...?) before anything runs
    pick_device(device)  # a device this machine lacks, likewise
    from ..training.distributed import init_from_env

    world = init_from_env()  # under torchrun, rank 0 alone reads and writes the store
    if world is not None and not world.is_main:
        run_experiment(spec, weights_path=weights, device=device)
        return
    results = ResultsStore(store)
    existing = results.get(spec.key)
    if existing is not None and existing.ok and not force:
        console.print(f"already in {store} (spec {spec.short_key}); use --force to rerun")
        _print_record(existing)
        return
    import contextlib

    from . import env as _env

    bars = (contextlib.nullcontext() if quiet else
            _ProgressBars(spec.max_epochs) if _env.stdout_is_terminal() else
            _EpochLines(spec.max_epochs))
    try:
        with bars as progress:
            record = run_experiment(spec, weights_path=weights, device=device, out_dir=out,
                                    store=results, progress=progress)
    except MarsbenchError:
        raise  # bad input or environment (data, weights): one line, exit 2, not recorded
    except Exception as exc:  # recorded as failed in the store by run_experiment
        console.print(f"[red]run failed:[/red] {type(exc).__name__}: {exc}", highlight=False)
        if existing is not None and existing.ok:  # the store never lets a failure displace it
            console.print(f"the earlier successful record {spec.short_key} stays in {store}; "
                          "this failure is kept in its history only", highlight=False)
        raise typer.Exit(1)
    _print_record(record)
    console.print(f"record {spec.short_key} written to {store}; predictions: "
                  f"{record.predictions_path}")


class _ProgressBars:
    """Rich bars for epochs and batches (on a terminal); the trainer calls the object after
    each epoch and, through ``.batch(done, total)``, after each training batch, where ``done``
    and ``total`` count the batches of the current epoch."""

    def __init__(self, max_epochs: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
                             console=console, transient=False)
        self.epochs = self.bars.add_task("epochs", total=max_epochs, losses="")
        self.batches = self.bars.add_task("batches of epoch 1", total=None, losses="")
        self.epoch = 0  # epochs finished

    def __enter__(self):
        self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.stop()

    def __call__(self, epoch: int, train_loss: float, val_loss: float) -> None:
        self.epoch = epoch
        self.bars.update(self.epochs, completed=epoch,
                         losses=f"train {train_loss:.4f}  val {val_loss:.4f}")

    def batch(self, done: int, total: int) -> None:
        """``done`` of the ``total`` training batches of the current epoch."""
        self.bars.update(self.batches, completed=done, total=total,
                         description=f"batches of epoch {self.epoch + 1}")


class _EpochLines:
    """Progress for a file or pipe (nohup, SLURM, ``| tee``): one plain line per epoch,
    ``epoch 3/20  train 0.4123  val 0.3981  12.3s``, flushed at once. The seconds are those
    since the previous line; the first line's also count the run's setup (data, model,
    cached features). Batches print nothing: a log gets a line per epoch, not per batch."""

    def __init__(self, max_epochs: int, stream=None, clock=None) -> None:
        import time

        self.max_epochs = max_epochs
        self.stream = stream
        self.clock = clock or time.perf_counter
        self.last: float | None = None  # when the previous line (or the run) began

    def __enter__(self):
        self.last = self.clock()
        return self

    def __exit__(self, *exc) -> None:
        return None

    def __call__(self, epoch: int, train_loss: float, val_loss: float) -> None:
        import sys

        now = self.clock()
        seconds = now - (self.last if self.last is not None else now)
        stream = self.stream or sys.stdout
        stream.write(f"epoch {epoch}/{self.max_epochs}  train {train_loss:.4f}  "
                     f"val {val_loss:.4f}  {seconds:.1f}s\n")
        stream.flush()
        self.last = now

    def batch(self, done: int, total: int) -> None:
        return None


def _print_record(record) -> None:
    # one row per metric (val, test): any number of metrics fits any width, names whole
    console.print(record.spec.describe(), highlight=False)
    table = Table()
    table.add_column("metric", no_wrap=True)
    table.add_column("val", justify="right")
    table.add_column("test", justify="right")
    test = record.metrics.get("test", {})
    val = record.metrics.get("val", {})
    for name in [k for k, v in test.items() if isinstance(v, (int, float))
                 and not isinstance(v, bool)]:
        v = val.get(name)
        table.add_row(name, "" if not isinstance(v, (int, float)) else f"{v:.4f}",
                      f"{test[name]:.4f}")
    console.print(table)
    t = record.timings
    console.print(f"best epoch {record.best_epoch} of {record.epochs_run}; features "
                  f"{t.get('feature_extraction_s', 0):.1f}s, training {t.get('training_s', 0):.1f}s, "
                  f"total {t.get('total_s', 0):.1f}s on {record.device}", highlight=False)
