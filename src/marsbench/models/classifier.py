"""`ClassifierModel`: a backbone (image -> features) and a head (features -> logits).

The split is the contract the trainer relies on: in ``feature_extraction`` the backbone is frozen
(no gradients, BatchNorm/Dropout kept in eval mode even under ``model.train()``), so its features
can be computed once, cached, and only ``.head`` trained on them.

``forward(x)`` always returns logits ``(B, num_outputs)``. InceptionV3's auxiliary classifier is
used through ``forward_with_aux(x) -> (logits, aux_logits | None)``; the trainer adds
``aux_loss_weight * loss(aux_logits, y)`` when ``aux_logits`` is not ``None`` (training mode, and
only in ``scratch`` / ``fine_tuning``: a frozen backbone gives the auxiliary loss nothing to
train, so ``feature_extraction`` models have no ``aux_head``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from ..catalog.card import Task
from .preprocess import Preprocessing
from .registry import get_spec
from .regime import Regime, RegimeModel, check_weights
from .spec import BackboneParts, ModelSpec
from .weights import LoadReport, WeightsLoadError, file_sha256, match_keys, read_state_dict


class ClassifierModel(RegimeModel):
    """Backbone + head (the spec's `Head`, a ``Linear`` by default); see the module doc."""

    def __init__(
        self,
        spec: ModelSpec,
        parts: BackboneParts,
        head: nn.Module,
        num_outputs: int,
        regime: Regime,
        multilabel: bool = False,
        aux_head: nn.Module | None = None,
    ) -> None:
        super().__init__(regime)
        self.spec = spec
        self.backbone = parts.backbone
        self.head = head
        self.aux_head = aux_head
        self.feature_dim = parts.feature_dim
        self.num_outputs = num_outputs
        self.multilabel = multilabel
        self.weights_tag = parts.weights_tag
        self.load_report: LoadReport | None = None
        self.freeze({"backbone": self.backbone})

    @property
    def aux_loss_weight(self) -> float:
        return self.spec.aux_loss_weight if self.aux_head is not None else 0.0

    @property
    def preprocessing(self) -> Preprocessing:
        return self.spec.preprocessing

    def describe(self) -> dict:
        """What a run record needs to know about the model."""
        return {
            "model": self.spec.name,
            "regime": str(self.regime),
            "weights": self.weights_tag,
            "head": self.spec.head.name,
            "feature_dim": self.feature_dim,
            "num_outputs": self.num_outputs,
            "multilabel": self.multilabel,
            "aux_loss_weight": self.aux_loss_weight,
            "preprocessing": self.preprocessing.to_dict(),
            "feature_key": self.feature_key(),
        }

    def feature_key(self) -> str:
        """Identifies what ``.backbone`` computes: model, weights and preprocessing. Two models
        with the same key give the same frozen features (a feature-cache key, with the data).
        Meaningful for pretrained backbones only: every random init has the tag ``random``."""
        text = json.dumps([self.spec.name, self.weights_tag, self.preprocessing.key()])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, aux_logits)``; ``aux_logits`` is ``None`` unless training with an aux head."""
        if self.aux_head is None or not self.training:
            return self(x), None
        captured: list[torch.Tensor] = []
        layer = self.backbone.get_submodule(self.spec.aux_input_layer or "")
        hook = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            features = self.backbone(x)
        finally:
            hook.remove()
        return self.head(features), self.aux_head(captured[-1])

    def head_parameters(self) -> list[nn.Parameter]:
        """What ``feature_extraction`` trains: the head (and nothing else)."""
        return list(self.head.parameters())


def num_outputs_for(num_classes: int, multilabel: bool = False) -> int:
    """One logit for a binary task, one per label for multi-label, one per class otherwise."""
    if num_classes < 2 and not multilabel:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    return num_classes if multilabel or num_classes > 2 else 1


def build_classifier(
    spec_or_name: ModelSpec | str,
    num_classes: int,
    regime: Regime | str,
    weights: str | Path | None = None,
    multilabel: bool = False,
    num_outputs: int | None = None,
    keep_pretrained_head: bool = False,
) -> ClassifierModel:
    """Build a classifier for ``num_classes`` classes in a training ``regime``.

    ``weights`` is the path of a user checkpoint (a state dict, possibly under ``state_dict`` /
    ``model``, with ``module.``-style prefixes) used instead of the spec's published weights;
    head keys may be absent (the head is then new), backbone keys may not.
    ``num_outputs`` overrides the head width (default: `num_outputs_for`).
    ``keep_pretrained_head`` keeps the published classifier (e.g. ImageNet's 1000 classes).
    Raises `WeightsUnavailableError` when published weights are needed but missing.
    """
    spec = get_spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    if spec.task != Task.CLASSIFICATION:
        raise ValueError(f"model {spec.name!r} is a {spec.task} model, not a classifier")
    if weights is None and spec.weights.kind == "file" and Regime(regime).pretrained:
        weights = spec.weights.filename  # a file:<path> model: its file is its weights
    regime = check_weights(regime, weights)
    outputs = num_outputs or num_outputs_for(num_classes, multilabel)
    parts = spec.builder(regime.pretrained and weights is None)

    head: nn.Module
    if keep_pretrained_head:
        head = _pretrained_head(spec, parts, outputs)
    else:
        head = spec.head.build(parts.feature_dim, outputs)
    aux_head = None
    if parts.aux_head is not None and not regime.frozen_backbone:
        aux_head = parts.aux_head
        if not keep_pretrained_head:
            aux_head.fc = nn.Linear(aux_head.fc.in_features, outputs)
    model = ClassifierModel(spec, parts, head, outputs, regime, multilabel, aux_head)
    if weights is not None:
        model.load_report = load_checkpoint(model, weights)
        model.weights_tag = f"file:sha256:{file_sha256(weights)}"
    return model


def _pretrained_head(spec: ModelSpec, parts: BackboneParts, outputs: int) -> nn.Module:
    head = parts.pretrained_head
    if head is None:
        raise ValueError(f"model {spec.name!r} has no published classifier on pooled features")
    width = getattr(head, "out_features", None)
    if width != outputs:
        raise ValueError(
            f"model {spec.name!r}: the published classifier has {width} outputs, not {outputs}"
        )
    return head


def load_checkpoint(model: ClassifierModel, path: str | Path) -> LoadReport:
    """Load a user checkpoint into ``model``; every backbone tensor must be provided.

    Accepted key forms: this model's own (``backbone.*``, ``head.*``), or the original
    architecture's (e.g. ``conv1.weight`` and ``fc.weight`` for a torchvision ResNet), each
    possibly behind ``module.``/``model.``-style prefixes. Head tensors whose shape differs
    (another number of classes) are skipped and reported; the head stays new.
    """
    source = read_state_dict(path)
    target = model.state_dict()
    mapping, prefix = match_keys(source, _key_aliases(model, target))
    report = LoadReport(path=str(path), stripped_prefix=prefix)
    if not mapping:
        raise WeightsLoadError(
            f"{path}: none of its {len(source)} keys (e.g. {next(iter(source), '-')!r}) match "
            f"model {model.spec.name!r} (e.g. {next(iter(target))!r}); is it a checkpoint of "
            "this architecture?"
        )
    new_state = {}
    for src_key, dst_key in mapping.items():
        tensor = source[src_key]
        if tensor.shape != target[dst_key].shape:
            if not dst_key.startswith("backbone."):
                report.shape_mismatch.append(f"{src_key} {tuple(tensor.shape)}")
                continue
            raise WeightsLoadError(
                f"{path}: tensor {src_key} has shape {tuple(tensor.shape)}, but model "
                f"{model.spec.name!r} expects {tuple(target[dst_key].shape)} for {dst_key}"
            )
        new_state[dst_key] = tensor
    report.loaded = sorted(new_state)
    report.unexpected = sorted(set(source) - set(mapping))
    report.missing = sorted(k for k in target if k not in new_state)
    missing_backbone = [
        k for k in report.missing
        if k.startswith("backbone.") and not k.endswith("num_batches_tracked")
    ]
    if missing_backbone:
        raise WeightsLoadError(
            f"{path}: {len(missing_backbone)} backbone tensors of model {model.spec.name!r} are "
            f"missing, e.g. {', '.join(missing_backbone[:5])}; a partly random backbone is "
            "refused. " + report.summary()
        )
    model.load_state_dict(new_state, strict=False)
    return report


def _key_aliases(model: ClassifierModel, target: dict[str, torch.Tensor]) -> dict[str, str]:
    """Accepted checkpoint names -> this model's keys (own names and native names)."""
    spec = model.spec
    aliases = {key: key for key in target}
    for key in target:
        module, _, rest = key.partition(".")
        if module == "backbone":
            aliases.setdefault(rest, key)
        elif module == "head":
            for native in spec.head_names:
                aliases.setdefault(f"{native}.{rest}", key)
        elif module == "aux_head" and spec.aux_head_name:
            aliases.setdefault(f"{spec.aux_head_name}.{rest}", key)
    return aliases
