"""`RunSpec`: the frozen, hashable description of one experiment; `spec.key` is its identity.

The key is the sha256 of a canonical JSON of the identity fields (all fields except
``data_root`` and ``source``, which say where the data was read from, not what was run: the data
itself is identified by the record's data fingerprint). Values are normalised first — variant
through `Variant.parse` (``partition:0.1`` == ``partition:0.10``), names lower-cased where case
carries no meaning, floats rounded to 12 significant digits — so equal experiments get equal keys
in every process and Python version. ``SPEC_SCHEMA`` is hashed too: changing what the key covers
means bumping it, never silently re-keying a store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..catalog.variant import Variant
from .fingerprint import canonical_json, normalise_float, sha256_json

SPEC_SCHEMA = "marsbench.RunSpec/1"
# The paper's three training regimes, plus zero_shot for models scored without training (VLMs).
REGIMES = ("scratch", "feature_extraction", "fine_tuning", "zero_shot")
# Fields that say where data came from, not what was run: left out of `key` and of equality.
NON_IDENTITY_FIELDS = ("data_root", "source")


@dataclass(frozen=True)
class RunSpec:
    """One run: dataset x variant x model x regime x hyper-parameters x seed.

    ``loss="auto"`` means the task's default (CE; BCE for one-logit binary and multi-label).
    ``weights`` names the pretrained weights: ``"default"`` for the model registry's, otherwise a
    tag or content hash of a user checkpoint (not its path: a path is not an identity).
    ``extra`` holds task- or model-specific options as sorted ``(name, value)`` text pairs; a dict
    is accepted and converted (non-text values become their canonical JSON).
    """

    dataset: str
    model: str
    regime: str
    variant: str = "full"
    seed: int = 0
    lr: float = 1e-3
    batch_size: int = 32
    optimizer: str = "adamw"
    weight_decay: float = 0.05
    scheduler: str = "none"
    max_epochs: int = 50
    patience: int = 5
    loss: str = "auto"
    augment: bool = True
    weights: str = "default"
    extra: tuple[tuple[str, str], ...] = ()
    data_root: str | None = field(default=None, compare=False)
    source: str = field(default="auto", compare=False)

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        for name in ("dataset", "model"):
            value = str(getattr(self, name)).strip()
            if not value:
                raise ValueError(f"RunSpec.{name} must not be empty")
            set_(name, value)
        regime = str(self.regime).strip().lower().replace("-", "_")
        if regime not in REGIMES:
            raise ValueError(f"unknown regime {self.regime!r}; use one of {', '.join(REGIMES)}")
        set_("regime", regime)
        set_("variant", str(Variant.parse(self.variant)))
        for name in ("optimizer", "scheduler", "loss"):
            set_(name, str(getattr(self, name)).strip().lower())
        set_("weights", str(self.weights).strip())
        for name, low in (("seed", None), ("batch_size", 1), ("max_epochs", 1), ("patience", 0)):
            set_(name, _as_int(name, getattr(self, name), low))
        for name in ("lr", "weight_decay"):
            value = _as_float(name, getattr(self, name))
            if value < 0 or (name == "lr" and value == 0):
                bound = "> 0" if name == "lr" else ">= 0"
                raise ValueError(f"RunSpec.{name} must be {bound}, got {value}")
            set_(name, value)
        if not isinstance(self.augment, bool):
            raise TypeError(f"RunSpec.augment must be True or False, got {self.augment!r}")
        set_("extra", _as_extra(self.extra))
        if self.data_root is not None:
            set_("data_root", str(self.data_root))

    # -- identity ---------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """The fields the key covers, as plain JSON values."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in NON_IDENTITY_FIELDS}
        out["extra"] = {k: v for k, v in self.extra}
        return out

    @property
    def key(self) -> str:
        """sha256 hex of the canonical identity; equal specs give equal keys in every process."""
        return sha256_json({"schema": SPEC_SCHEMA, **self.identity()})

    @property
    def short_key(self) -> str:
        return self.key[:12]

    def describe(self) -> str:
        """One line for humans: what ran, with its hyper-parameters."""
        hp = (f"lr={self.lr:g} batch={self.batch_size} opt={self.optimizer} "
              f"wd={self.weight_decay:g} sched={self.scheduler} epochs={self.max_epochs} "
              f"patience={self.patience} loss={self.loss} augment={self.augment}")
        extra = "".join(f" {k}={v}" for k, v in self.extra)
        weights = "" if self.weights == "default" else f" weights={self.weights}"
        return (f"{self.dataset}[{self.variant}] {self.model}{weights} {self.regime} "
                f"seed={self.seed} {hp}{extra}")

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All fields (identity and data location); ``extra`` as a dict."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["extra"] = {k: v for k, v in self.extra}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        """Inverse of `to_dict`. Unknown fields are an error naming them (catches typos)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown RunSpec fields {unknown}; known fields: {sorted(known)}")
        return cls(**dict(data))


def _as_int(name: str, value: Any, low: int | None) -> int:
    try:
        ok = not isinstance(value, bool) and float(value).is_integer()
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise TypeError(f"RunSpec.{name} must be an integer, got {value!r}")
    value = int(value) if hasattr(value, "__index__") else int(float(value))
    if low is not None and value < low:
        raise ValueError(f"RunSpec.{name} must be >= {low}, got {value}")
    return value


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"RunSpec.{name} must be a number, got {value!r}")
    try:
        return normalise_float(float(value))
    except (TypeError, ValueError):
        raise TypeError(f"RunSpec.{name} must be a finite number, got {value!r}") from None


def _as_extra(extra: Any) -> tuple[tuple[str, str], ...]:
    items = extra.items() if isinstance(extra, Mapping) else extra
    out: dict[str, str] = {}
    for item in items:
        try:
            k, v = item
        except (TypeError, ValueError):
            raise TypeError(f"RunSpec.extra items must be (name, value) pairs: {item!r}") from None
        k = str(k)
        if k in out:
            raise ValueError(f"RunSpec.extra names {k!r} twice")
        out[k] = v if isinstance(v, str) else canonical_json(v)
    return tuple(sorted(out.items()))
