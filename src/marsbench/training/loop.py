"""The epoch loop shared by every trainer: optimiser, scheduler, early stopping, best restore.

It knows nothing about models or data: the caller gives a ``train_step(batch) -> loss`` and a
``val_loss() -> float``. The best weights (lowest validation loss) are kept in memory and put
back at the end, so the test set is scored with the best checkpoint (the reference scores the
last epoch; we do not).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ..runs.profiles import LOOP_SETTINGS, LoopSettings, loop_settings
from ..vocab import OPTIMIZERS, SCHEDULERS


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, max_epochs: int,
                   settings: LoopSettings = LOOP_SETTINGS["marsbench"]):
    """The epoch scheduler ``name`` under a profile's `LoopSettings` (stepped once per epoch,
    plateau on the validation loss)."""
    if name == "none":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=settings.cosine_t_max or max_epochs, eta_min=settings.cosine_eta_min)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.1, patience=settings.plateau_patience)
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=settings.step_size or max(1, max_epochs // 3), gamma=0.1)
    raise ValueError(f"unknown scheduler {name!r}; use one of {', '.join(SCHEDULERS)}")


@dataclass
class FitResult:
    best_epoch: int  # 1-based
    epochs_run: int
    best_val_loss: float
    history: list[dict]
    tested_epoch: int = 0  # whose weights the module holds now: best_epoch, or the last epoch


def fit(module: nn.Module, *, train_epoch: Callable[[torch.optim.Optimizer], float],
        val_loss: Callable[[], float], optimizer: str, lr: float, weight_decay: float,
        scheduler: str, max_epochs: int, patience: int,
        progress: Callable[[int, float, float], None] | None = None,
        profile: str = "marsbench") -> FitResult:
    """Train ``module`` (whose trainable parameters the optimiser gets) with early stopping.

    ``train_epoch(opt)`` runs one epoch and returns the mean training loss; ``val_loss()``
    returns the validation loss. An epoch improves when its validation loss beats the best by
    more than the profile's ``min_delta`` (0; the paper's 0.01); training stops after
    ``patience`` epochs without improvement (``patience=0`` disables early stopping). Under
    ``marsbench`` the best state is restored (the test set is scored with the best checkpoint);
    under ``paper`` the last epoch's weights stay, as the reference tests them.
    """
    settings = loop_settings(profile)
    opt = make_optimizer(optimizer, module.parameters(), lr, weight_decay)
    sched = make_scheduler(scheduler, opt, max_epochs, settings)
    best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0
    history = []
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        train_loss = train_epoch(opt)
        loss = val_loss()
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": loss})
        if progress:
            progress(epoch, train_loss, loss)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training loss became {train_loss} at epoch {epoch}; "
                                     "lower the learning rate")
        if loss + settings.min_delta < best_loss:
            best_loss, best_epoch, stale = loss, epoch, 0
            if settings.restore_best:
                best_state = copy.deepcopy(module.state_dict())
        else:
            stale += 1
        if sched is not None:
            sched.step(loss) if scheduler == "plateau" else sched.step()
        if patience and stale >= patience:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    tested = best_epoch if settings.restore_best and best_state is not None else epoch
    return FitResult(best_epoch, epoch, best_loss, history, tested)
