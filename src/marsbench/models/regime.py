"""The training regimes, written once for every task (classification, segmentation, detection).

A regime decides, here and nowhere else:

- whether published weights are loaded (`Regime.pretrained`) and whether a user checkpoint may
  be given (`check_weights`: not with ``scratch``);
- what is frozen (`RegimeModel.freeze`): in ``feature_extraction`` everything but the model's
  trainable parts gets no gradients;
- how frozen parts behave under ``.train()``: kept in eval mode (BatchNorm running statistics
  never change, Dropout off), or -- the paper profile, as the reference -- put in train mode
  like the rest (`RegimeModel.frozen_in_train_mode`, set by the engine from the profile);
- which tensors a run trains and so has to snapshot for its best epoch (`RegimeModel.trained`).

`ClassifierModel` (backbone + head) and `DenseModel` (a segmentation or detection network and
its named head modules) are both `RegimeModel`s; the engine treats them alike.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from torch import nn

from ..vocab import FROZEN_REGIMES, PROBE_REGIMES


class Regime(StrEnum):
    """How a model is trained (facts sheet §4)."""

    SCRATCH = "scratch"  # random init, every parameter trainable
    FEATURE_EXTRACTION = "feature_extraction"  # published weights, backbone frozen, head trained
    FINE_TUNING = "fine_tuning"  # published weights, every parameter trainable
    # probes on cached frozen features (`marsbench.training.probes`), classification only
    KNN = "knn"
    LINEAR_PROBE = "linear_probe"
    MLP_PROBE = "mlp_probe"
    FEW_SHOT_EPISODES = "few_shot_episodes"

    @property
    def pretrained(self) -> bool:
        return self is not Regime.SCRATCH

    @property
    def frozen_backbone(self) -> bool:
        return self.value in FROZEN_REGIMES

    @property
    def probe(self) -> bool:
        return self.value in PROBE_REGIMES


def check_weights(regime: Regime | str, weights: str | Path | None) -> Regime:
    """The regime, refusing a user checkpoint for ``scratch`` (random init by definition)."""
    regime = Regime(regime)
    if weights is not None and not regime.pretrained:
        raise ValueError("--weights loads a pretrained checkpoint, but regime 'scratch' means "
                         "random init; use feature_extraction or fine_tuning")
    return regime


class RegimeModel(nn.Module):
    """A model in a regime: its frozen parts and how they behave (see the module doc)."""

    # The paper profile sets this: the reference never puts a frozen backbone in eval mode, so
    # its BatchNorm uses batch statistics (and updates running ones) and dropout stays on.
    frozen_in_train_mode = False

    def __init__(self, regime: Regime | str) -> None:
        super().__init__()
        self.regime = Regime(regime)
        self._frozen: dict[str, nn.Module] = {}

    def freeze(self, parts: dict[str, nn.Module]) -> None:
        """Freeze ``parts`` (name -> submodule) when the regime freezes a backbone; else no-op.
        A part may re-enable gradients of its own children (a learned band adapter does)."""
        if not self.regime.frozen_backbone:
            return
        self._frozen = dict(parts)
        for module in self._frozen.values():
            module.requires_grad_(False)
            module.eval()

    @property
    def backbone_frozen(self) -> bool:
        return self.regime.frozen_backbone

    @property
    def frozen_modules(self) -> list[nn.Module]:
        return list(self._frozen.values())

    @property
    def frozen_names(self) -> list[str]:
        """The frozen submodules that hold parameters (e.g. ``backbone``, ``encoder``)."""
        return [n for n, m in self._frozen.items() if any(True for _ in m.parameters())]

    def train(self, mode: bool = True) -> RegimeModel:
        """As `nn.Module.train`, but frozen parts stay in eval mode unless
        `frozen_in_train_mode`."""
        super().train(mode)
        if not self.frozen_in_train_mode:
            for module in self._frozen.values():
                module.eval()
        return self

    def trained(self) -> nn.Module:
        """What this run trains: the whole model, or (a backbone frozen) the modules holding
        trainable parameters of their own, with their buffers -- the state a best-epoch
        snapshot needs, without copying a frozen ViT-L every time validation improves.
        Frozen parts in train mode (`frozen_in_train_mode`) update their BatchNorm statistics,
        so then the whole model is what changes."""
        if not self._frozen or self.frozen_in_train_mode:
            return self
        return nn.ModuleList(m for m in self.modules()
                             if any(p.requires_grad for p in m.parameters(recurse=False)))
