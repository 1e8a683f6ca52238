"""Classification heads: how a `ModelSpec` declares what its backbone's features are fed to.

A `Head` is named (the name is recorded with every model) and built as
``head.build(feature_dim, outputs)``. Every head module exposes ``in_features`` and
``out_features`` as ``nn.Linear`` does, so the trainer treats all heads alike, and in
``feature_extraction`` on cached features it runs on exactly what the backbone returns (and the
cache stores).

- `LINEAR`: ``Linear(feature_dim, outputs)`` on pooled ``(B, feature_dim)`` features (the default).
- `SQUEEZENET_REFERENCE`: the Mars-Bench reference's SqueezeNet1.1 classifier
  (``Dropout(0.5) -> Conv2d 1x1 -> ReLU -> global average pool``) on the backbone's
  ``(B, 512, H, W)`` feature map; its logits are >= 0 (docs/fidelity.md row 12).
- `MOMO_LINEAR_PROBE`: ``LayerNorm (MOMO's fc_norm, weight 1, bias 0, eps 1e-6) -> Linear`` on
  the mean-pooled patch tokens, so that the probe trains ``fc_norm`` with the head, as MOMO's
  ``--finetuning_type lp`` does (docs/momo.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class Head:
    """A named head factory: ``build(feature_dim, outputs) -> nn.Module``.

    ``pooled`` says the backbone returns ``(B, feature_dim)`` vectors, which the probe regimes
    (``knn``, ``linear_probe``, ...) can read; a head on a feature map sets it False."""

    name: str
    build: Callable[[int, int], nn.Module] = field(repr=False, compare=False)
    description: str = ""
    pooled: bool = True


class ConvPoolHead(nn.Sequential):
    """``Dropout -> Conv2d 1x1 (in -> out) -> ReLU -> AdaptiveAvgPool2d(1) -> Flatten`` on a
    ``(B, in, H, W)`` map: torchvision SqueezeNet's classifier (same module indices 0-3, so its
    published ``classifier.1`` tensors load as ``head.1``). Outputs are >= 0."""

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.5) -> None:
        super().__init__(nn.Dropout(dropout), nn.Conv2d(in_features, out_features, 1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.in_features, self.out_features = in_features, out_features


class NormLinearHead(nn.Sequential):
    """``fc_norm: LayerNorm(in, eps) -> fc: Linear(in, out)`` on pooled features."""

    def __init__(self, in_features: int, out_features: int, eps: float = 1e-6) -> None:
        super().__init__(OrderedDict(fc_norm=nn.LayerNorm(in_features, eps=eps),
                                     fc=nn.Linear(in_features, out_features)))
        self.in_features, self.out_features = in_features, out_features


LINEAR = Head("linear", nn.Linear, "Linear on the pooled features")
SQUEEZENET_REFERENCE = Head(
    "squeezenet_reference", ConvPoolHead,
    "the Mars-Bench reference's SqueezeNet classifier: Dropout(0.5) -> Conv2d 1x1 -> ReLU -> "
    "average pool, on the 512-channel feature map (logits >= 0)", pooled=False)
MOMO_LINEAR_PROBE = Head(
    "momo_linear_probe", NormLinearHead,
    "MOMO's linear probe: fc_norm (LayerNorm, eps 1e-6, weight 1 / bias 0 at start) -> Linear, "
    "trained together, on the mean of the patch tokens before fc_norm")
