"""Optional experiment loggers: TensorBoard, MLflow, Weights & Biases (off by default).

A logger sees what the run's progress sees -- each epoch's training and validation loss -- and,
at the end, the run's val and test metrics and its spec; it never changes a result, so it is not
part of the run's identity. Choose one with ``--logger`` (``marsbench run`` / ``sweep``) or
``$MARSBENCH_LOGGER``; logs go under ``--log-dir`` / ``$MARSBENCH_LOG_DIR`` (default
``runs/logs``). Each backend is an optional extra (``pip install marsbench[tensorboard]``,
``[mlflow]``, ``[wandb]``); asking for one that is not installed is a one-line error naming the
extra. W&B runs in offline mode unless ``$WANDB_MODE`` says otherwise (``wandb sync`` uploads).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import OptionError, did_you_mean
from ..vocab import LOGGERS

LOGGER_ENV, LOG_DIR_ENV = "MARSBENCH_LOGGER", "MARSBENCH_LOG_DIR"
DEFAULT_LOG_DIR = Path("runs/logs")
_MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def chosen_logger() -> tuple[str, Path]:
    """The logger and folder the environment asks for (``none`` when unset)."""
    name = os.environ.get(LOGGER_ENV, "none").strip().lower() or "none"
    check_logger(name, where=LOGGER_ENV)
    return name, Path(os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR).expanduser()


def check_logger(name: str, where: str = "--logger") -> str:
    """``name`` if it is a known logger whose library is installed (else one-line error)."""
    if name not in LOGGERS:
        raise OptionError("unknown logger", where=where, value=name,
                          fix=did_you_mean(name, LOGGERS))
    if name != "none":
        import importlib.util

        if importlib.util.find_spec(_MODULES[name]) is None:
            raise OptionError(f"the {name} logger is not installed", where=where, value=name,
                              fix=f"pip install 'marsbench[{name}]'")
    return name


class RunLogger:
    """One run's log: `epoch` after each epoch, `finish` with the record at the end."""

    def __init__(self, name: str, spec, folder: Path) -> None:
        self.name, self.spec = name, spec
        self.folder = Path(folder)
        run_name = f"{spec.short_key}-{spec.dataset}-{spec.model}-{spec.regime}-s{spec.seed}"
        params = {k: v for k, v in spec.identity().items() if isinstance(v, (str, int, float))}
        params["options"] = spec.options.describe()
        self.folder.mkdir(parents=True, exist_ok=True)
        if name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.folder / run_name))
            self._tb.add_text("spec", spec.describe())
        elif name == "mlflow":
            import mlflow

            if not os.environ.get("MLFLOW_TRACKING_URI"):  # a local SQLite tracking store
                mlflow.set_tracking_uri(f"sqlite:///{(self.folder / 'mlflow.db').resolve()}")
            mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "marsbench"))
            self._run = mlflow.start_run(run_name=run_name)
            mlflow.log_params(params)
        elif name == "wandb":
            import wandb

            self._run = wandb.init(project=os.environ.get("WANDB_PROJECT", "marsbench"),
                                   name=run_name, config=params, dir=str(self.folder),
                                   mode=os.environ.get("WANDB_MODE", "offline"), reinit=True)

    def epoch(self, epoch: int, train_loss: float, val_loss: float) -> None:
        scalars = {"loss/train": train_loss, "loss/val": val_loss}
        if self.name == "tensorboard":
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, epoch)
        elif self.name == "mlflow":
            import mlflow

            mlflow.log_metrics({k.replace("/", "_"): v for k, v in scalars.items()}, step=epoch)
        elif self.name == "wandb":
            self._run.log({**scalars, "epoch": epoch})

    def finish(self, metrics: dict[str, Any] | None) -> None:
        flat = {f"{split}/{name}": float(value)
                for split, values in (metrics or {}).items() if isinstance(values, dict)
                for name, value in values.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)}
        if self.name == "tensorboard":
            for key, value in flat.items():
                self._tb.add_scalar(key, value, 0)
            self._tb.close()
        elif self.name == "mlflow":
            import mlflow

            mlflow.log_metrics({k.replace("/", "_"): v for k, v in flat.items()})
            mlflow.end_run("FINISHED" if metrics is not None else "FAILED")
        elif self.name == "wandb":
            self._run.summary.update(flat)
            self._run.finish(exit_code=0 if metrics is not None else 1)


class LoggedProgress:
    """A progress callable that also feeds a `RunLogger` (and keeps the inner one's ``batch``)."""

    def __init__(self, inner, logger: RunLogger) -> None:
        self.inner, self.logger = inner, logger
        if inner is not None and hasattr(inner, "batch"):
            self.batch = inner.batch

    def __call__(self, epoch: int, train_loss: float, val_loss: float) -> None:
        self.logger.epoch(epoch, train_loss, val_loss)
        if self.inner is not None:
            self.inner(epoch, train_loss, val_loss)
