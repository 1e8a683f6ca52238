"""`RunSpec`: the frozen, hashable description of one experiment; `spec.key` is its identity.

The key is the sha256 of a canonical JSON of the identity fields: every field except
``data_root`` and ``source`` (where the data was read from, not what was run: the data itself is
identified by the record's content fingerprint). Values are normalised first — variant through
`Variant.parse`, names lower-cased where case carries no meaning, loss aliases to their canonical
name, floats rounded to 12 significant digits — so equal experiments get equal keys in every
process and Python version.

Task options are typed (`marsbench.runs.options`): a spec is validated once, when it is built,
against its dataset's task, its regime, loss and model. A dataset is named by its card name; a
folder of one's own is ``dataset=<folder name>, data_root=<its parent>`` (a path given as the
dataset is split that way), so three spellings of one folder are one run.

``SPEC_SCHEMA`` is hashed too. Schema 2 (typed ``options``, ``task``, ``subset_seed``) replaced
schema 1 (free-text ``extra`` pairs); records written under schema 1 stay readable: their stored
key is kept as it was (never silently re-keyed), their ``extra`` is read into typed options, and
what could not be kept is listed in ``legacy_extra``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..catalog.variant import Variant
from ..errors import OptionError, did_you_mean
from ..vocab import (
    DATA_SOURCES,
    LOSS_ALIASES,
    LOSSES,
    OPTIMIZERS,
    PRECISIONS,
    PROFILES,
    REGIMES,
    SCHEDULERS,
    TASKS,
)
from .fingerprint import exact_int, normalise_float, sha256_json
from .options import TaskOptions, build_options, options_from_legacy
from .profiles import paper_option_defaults

SPEC_SCHEMA = "marsbench.RunSpec/2"
LEGACY_SCHEMAS = ("marsbench.RunSpec/1",)
# Fields that say where data came from, or what an old record carried: not part of the key.
NON_IDENTITY_FIELDS = ("data_root", "source", "legacy_extra")
MAX_SEED = 2**32 - 1  # numpy's seed range: a run seeds numpy with its seed (`training.run`)
MAX_BATCH_SIZE = 2**24  # beyond any memory; a larger number overflows the data loader's slicing
# Fields added after schema 2: left out of the key at their default, so adding them never
# re-keyed a run (the default is the behaviour from before they existed).
DEFAULT_FREE_FIELDS = {"subset_seed": None, "precision": "auto", "compile": False,
                       "profile": "marsbench", "split": "official"}


@dataclass(frozen=True)
class RunSpec:
    """One run: dataset x variant x model x regime x hyper-parameters x options x seed.

    ``loss="auto"`` means the task's default (CE; BCE for one-logit binary and multi-label).
    ``weights`` names the pretrained weights: ``"default"`` for the model registry's, otherwise a
    tag or content hash of a user checkpoint (not its path: a path is not an identity).
    ``options`` holds the task's typed options (a mapping is validated into them);
    ``subset_seed`` draws a recorded stratified subset where a variant has no official file.
    ``task`` is read from the dataset's card when not given. ``profile``: ``marsbench`` (our
    defaults) or ``paper`` (the reference's semantics, docs/fidelity.md; it also sets the
    options the reference implies where the run does not). ``precision``: ``auto`` (bf16
    autocast on CUDA, fp32 on the CPU) | fp32 | bf16 | fp16; ``compile``: torch.compile the model.
    ``split``: how train/val/test are drawn (`marsbench.sources.splits`): ``official``,
    ``observation_disjoint``, ``region:<name>`` or ``latitude_band:<lo>:<hi>`` (drawn with
    ``subset_seed``, else seed 0).
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
    subset_seed: int | None = None
    precision: str = "auto"
    profile: str = "marsbench"
    compile: bool = False
    split: str = "official"
    task: str | None = None
    options: Any = None  # TaskOptions after __post_init__
    data_root: str | None = field(default=None, compare=False)
    source: str = field(default="auto", compare=False)
    legacy_extra: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        for name in ("dataset", "model"):
            value = str(getattr(self, name)).strip()
            if not value:
                raise OptionError(f"RunSpec.{name} must not be empty", where=name)
            set_(name, value)
        source = str(self.source).strip().lower()
        if source not in DATA_SOURCES:
            raise OptionError("unknown data source", where="source", value=self.source,
                              fix=f"use one of {', '.join(DATA_SOURCES)}")
        set_("source", source)
        if self.data_root is not None:
            set_("data_root", str(self.data_root))
        dataset, root, source = split_dataset(self.dataset, self.data_root, self.source)
        set_("dataset", dataset), set_("data_root", root), set_("source", source)
        set_("regime", _choice("regime", self.regime, REGIMES))
        try:
            set_("variant", str(Variant.parse(self.variant)))
        except ValueError as exc:
            raise OptionError("bad variant", where="variant", value=self.variant,
                              fix=str(exc).split(": ", 1)[-1]) from None
        set_("optimizer", _choice("optimizer", self.optimizer, OPTIMIZERS))
        set_("precision", _choice("precision", self.precision, PRECISIONS))
        set_("profile", _choice("profile", self.profile, PROFILES))
        if not isinstance(self.compile, bool):
            raise OptionError("RunSpec.compile must be True or False", where="compile",
                              value=self.compile)
        from ..sources.splits import parse_scheme

        scheme = parse_scheme(self.split)
        set_("split", str(scheme))
        set_("scheduler", _choice("scheduler", self.scheduler, SCHEDULERS))
        set_("weights", str(self.weights).strip())
        for name, low, high in (("seed", 0, MAX_SEED), ("batch_size", 1, MAX_BATCH_SIZE),
                                ("max_epochs", 1, None), ("patience", 0, None)):
            set_(name, _as_int(name, getattr(self, name), low, high))
        if self.subset_seed is not None:
            set_("subset_seed", _as_int("subset_seed", self.subset_seed, 0))
        for name in ("lr", "weight_decay"):
            value = _as_float(name, getattr(self, name))
            if value < 0 or (name == "lr" and value == 0):
                raise OptionError(f"RunSpec.{name} must be {'> 0' if name == 'lr' else '>= 0'}",
                                  where=name, value=value)
            set_(name, value)
        if not isinstance(self.augment, bool):
            raise OptionError("RunSpec.augment must be True or False", where="augment",
                              value=self.augment)
        card = dataset_card(self.dataset, self.data_root, self.source, required=self.task is None)
        task = str(card.task) if card is not None else _choice("task", self.task, TASKS)
        if self.task is not None and card is not None and str(self.task) != task:
            raise OptionError(f"{self.dataset} is a {task} dataset", where="task", value=self.task)
        set_("task", task)
        if self.compile and task == "detection":
            raise OptionError("torch.compile is not supported for detection runs (torchvision "
                              "detectors take lists of images of varying size)",
                              where="compile", value=True, fix="leave --compile out")
        loss = str(self.loss).strip().lower()
        set_("loss", _choice("loss", LOSS_ALIASES.get(loss, loss), LOSSES[task],
                             what=f"{task} loss"))
        if card is not None:
            if self.regime == "few_shot_episodes" and card.multilabel:
                raise OptionError("few_shot_episodes needs single-label classes", where="regime",
                                  value=f"{card.name} is multi-label",
                                  fix="use knn, linear_probe or mlp_probe on it")
            _check_loss_for_kind(self.loss, card)
            _check_variant(Variant.parse(self.variant), card,
                           self.subset_seed if scheme.official else 0)
            from ..sources.splits import check_card

            check_card(scheme, card)
        if not scheme.official and self.regime == "zero_shot":
            raise OptionError("zero-shot (VLM) runs read the official test split",
                              where="split", value=self.split, fix="use split official")
        options = self.options
        if self.profile == "paper" and self.regime != "zero_shot":
            options = _with_paper_defaults(options, task, self.regime)
        set_("options", build_options(task, options, regime=self.regime, loss=self.loss,
                                      where="options"))
        set_("legacy_extra", tuple(sorted((str(k), str(v)) for k, v in dict(self.legacy_extra)
                                          .items())))

    # -- identity ---------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """The fields the key covers, as plain JSON values (None-valued fields left out, so a
        new optional field never re-keys old runs)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in NON_IDENTITY_FIELDS}
        out["options"] = self.options.identity()
        if (self.task == "segmentation" and self.regime == "feature_extraction"
                and out["options"].get("fe_path") == "online"):
            # the path segmentation ran before it had fe_path: those runs keep their keys
            del out["options"]["fe_path"]
        return {k: v for k, v in out.items()
                if v is not None and not (k in DEFAULT_FREE_FIELDS and v == DEFAULT_FREE_FIELDS[k])}

    @property
    def key(self) -> str:
        """sha256 hex of the canonical identity; equal specs give equal keys in every process."""
        return sha256_json({"schema": SPEC_SCHEMA, **self.identity()})

    @property
    def short_key(self) -> str:
        return self.key[:12]

    def describe(self) -> str:
        """One line for humans: what ran, with its hyper-parameters and options."""
        hp = (f"lr={self.lr:g} batch={self.batch_size} opt={self.optimizer} "
              f"wd={self.weight_decay:g} sched={self.scheduler} epochs={self.max_epochs} "
              f"patience={self.patience} loss={self.loss} augment={self.augment}")
        opts = self.options.describe()
        extra = (f" {opts}" if opts else "") + (
            f" subset_seed={self.subset_seed}" if self.subset_seed is not None else "")
        extra += "".join(f" {k}={getattr(self, k)}" for k in ("split", "profile", "precision",
                                                              "compile")
                         if getattr(self, k) != DEFAULT_FREE_FIELDS[k])
        extra += "".join(f" {k}={v}(schema-1, unused)" for k, v in self.legacy_extra)
        weights = "" if self.weights == "default" else f" weights={self.weights}"
        return (f"{self.dataset}[{self.variant}] {self.model}{weights} {self.regime} "
                f"seed={self.seed} {hp}{extra}")

    @property
    def label(self) -> str:
        """The model as the report groups it: the name, plus every identity axis beyond the
        hyper-parameter grid that tells runs apart (user weights, non-default options, a drawn
        subset), so runs that differ in them are never pooled into one score."""
        parts = [] if self.weights == "default" else [f"weights={self.weights[:19]}"]
        identity = self.options.identity()
        if self.regime == "feature_extraction" and identity.get("fe_path") == "cached":
            identity.pop("fe_path")  # the regime's default path
        if self.regime == "zero_shot":
            identity = {}  # the VLM's label already names provider and model
        parts += [f"{k}={v}" for k, v in sorted(identity.items())]
        if self.subset_seed is not None:
            parts.append(f"subset_seed={self.subset_seed}")
        if self.split != "official":
            parts.append(f"split={self.split}")
        if self.precision != "auto":
            parts.append(f"precision={self.precision}")
        if self.profile != "marsbench":
            parts.append(f"profile={self.profile}")
        return self.model + (f" [{' '.join(parts)}]" if parts else "")

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All fields (identity and data location); ``options`` as a dict; the schema."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["options"] = self.options.identity()
        out["legacy_extra"] = dict(self.legacy_extra)
        out["schema"] = SPEC_SCHEMA
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, task: str | None = None) -> RunSpec:
        """Inverse of `to_dict`; reads schema-1 dicts (``extra`` text pairs) too, given the
        ``task`` their record stored. Unknown fields are an error naming them."""
        data = dict(data)
        schema = data.pop("schema", SPEC_SCHEMA if "extra" not in data else LEGACY_SCHEMAS[0])
        if schema in LEGACY_SCHEMAS:
            return cls._from_legacy(data, task)
        if schema != SPEC_SCHEMA:
            raise OptionError("spec written by an unknown marsbench schema", where="spec",
                              value=schema, fix="upgrade marsbench")
        options = data.get("options")
        if (str(data.get("task") or task) == "segmentation" and isinstance(options, Mapping)
                and str(data.get("regime", "")).strip().lower() == "feature_extraction"
                and "fe_path" not in options):
            # written before segmentation had fe_path: it ran the encoder every step
            data["options"] = {**options, "fe_path": "online"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OptionError("unknown RunSpec fields", where="spec", value=unknown,
                              fix=did_you_mean(unknown[0], known))
        return cls(**data)

    @classmethod
    def _from_legacy(cls, data: dict[str, Any], task: str | None) -> RunSpec:
        extra = {str(k): v if isinstance(v, str) else str(v)
                 for k, v in dict(data.pop("extra", {}) or {}).items()}
        regime = str(data.get("regime", "")).strip().lower().replace("-", "_")
        if task in (None, "unknown"):
            card = dataset_card(str(data.get("dataset", "")), data.get("data_root"),
                                str(data.get("source", "auto")), required=True)
            task = str(card.task)
        options, subset_seed, dropped = options_from_legacy(task, extra, regime)
        return cls(**data, task=task, options=options, subset_seed=subset_seed,
                   legacy_extra=tuple(dropped.items()))


# -- datasets -----------------------------------------------------------------------------------

def folder_name_and_root(text: str, *, must_exist: bool = True) -> tuple[str, str] | None:
    """(folder name, parent folder) when ``text`` is a path to a dataset folder, else None: a
    dataset is identified by its name, the path only says where it lives."""
    path = Path(text).expanduser()
    if not ("/" in text or "\\" in text or text.startswith(".")):
        return None
    if not (path.is_dir() or (not must_exist and path.is_absolute())):
        return None
    resolved = path.resolve()
    return resolved.name, str(resolved.parent)


def split_dataset(dataset: str, data_root: str | None, source: str) -> tuple[str, str | None, str]:
    """(card name, data root, source): a folder path becomes its name and parent, a hub repo
    id (``Mirali33/<name>``) its name with source ``hf``."""
    folder = folder_name_and_root(dataset, must_exist=data_root is not None)
    if folder is None and data_root is None and "/" not in dataset:
        from ..sources.open import local_folder

        here = local_folder(dataset, None)  # a folder in the working directory, as `datasets
        if here is not None:  # check` and every reader read it
            folder = here.resolve().name, str(here.resolve().parent)
    if folder is not None:
        return folder[0], folder[1], source
    path = Path(dataset).expanduser()
    if "/" in dataset and not path.exists() and dataset.count("/") == 1:
        return dataset.split("/")[-1], data_root, "hf" if source == "auto" else source
    return dataset, data_root, source


@lru_cache(maxsize=256)
def dataset_card(dataset: str, data_root: str | None, source: str = "auto", *,
                 required: bool = True):
    """The card of a catalog dataset, or of a user folder ``data_root/dataset``; None (or an
    error naming the dataset, when ``required``) where neither exists."""
    from ..catalog import UnknownDatasetError, get_card, list_cards

    try:
        return get_card(dataset)
    except UnknownDatasetError:
        pass
    if data_root is not None and (Path(data_root) / dataset).is_dir():
        from ..sources.open import resolve

        return resolve(Path(data_root) / dataset, source=source)[0]
    if not required:
        return None
    where = f"{Path(data_root) / dataset}" if data_root else "dataset"
    raise OptionError("unknown dataset", where=where, value=dataset,
                      fix=did_you_mean(dataset, [c.name for c in list_cards()]) +
                      " (a catalog name from `marsbench datasets list`, or a dataset folder)")


def _with_paper_defaults(options: Any, task: str, regime: str) -> dict[str, Any]:
    """The run's options plus those the paper profile implies (`paper_option_defaults`) where
    the run sets none: an explicit input policy keeps its own sizes."""
    given = options.identity() if isinstance(options, TaskOptions) else dict(options or {})
    defaults = paper_option_defaults(task, regime)
    if "input_policy" in given:
        defaults = {k: v for k, v in defaults.items() if k not in ("input_policy", "input_size")}
    return defaults | given


def _check_variant(variant: Variant, card, subset_seed: int | None) -> None:
    """A variant the dataset publishes, or a recorded draw (``subset_seed``); few-shot is for
    classification. User folders list no variants on their card: their files are checked when
    the split is opened."""
    if variant.is_full:
        return
    if variant.kind == "few_shot" and str(card.task) != "classification":
        raise OptionError(f"few-shot variants exist for classification only, not {card.task}",
                          where=card.name, value=str(variant), fix="use full or partition:<p>")
    published = card.variants()
    if (card.few_shot or card.partitions) and str(variant) not in published \
            and subset_seed is None:
        raise OptionError("the dataset does not publish this variant", where=card.name,
                          value=str(variant),
                          fix=f"use one of {', '.join(published)}, or set a subset seed "
                              "(--subset-seed / data.subset_seed) to draw a recorded subset")


def _check_loss_for_kind(loss: str, card) -> None:
    kind = str(card.kind)
    if kind == "multilabel" and loss not in ("auto", "bce"):
        raise OptionError("multi-label classification trains with loss bce", where=card.name,
                          value=f"loss={loss}", fix="use loss auto or bce")
    if kind == "multiclass" and card.task == "classification" and loss == "bce":
        raise OptionError("loss bce is for binary and multi-label tasks", where=card.name,
                          value=f"loss={loss}", fix="use loss auto or ce")


# -- scalars ------------------------------------------------------------------------------------

def _choice(name: str, value: Any, choices: tuple[str, ...], what: str | None = None) -> str:
    text = str(value).strip().lower().replace("-", "_")
    if text not in choices:
        raise OptionError(f"unknown {what or name}", where=name, value=value,
                          fix=f"use one of {', '.join(choices)}")
    return text


def _as_int(name: str, value: Any, low: int | None, high: int | None = None) -> int:
    number = exact_int(value)
    if number is None:
        raise OptionError(f"RunSpec.{name} must be an integer", where=name, value=value)
    value = number
    if low is not None and value < low:
        raise OptionError(f"RunSpec.{name} must be >= {low}", where=name, value=value)
    if high is not None and value > high:
        raise OptionError(f"RunSpec.{name} must be <= {high}", where=name, value=value)
    return value


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise OptionError(f"RunSpec.{name} must be a number", where=name, value=value)
    try:
        return normalise_float(float(value))
    except (TypeError, ValueError, OverflowError):
        raise OptionError(f"RunSpec.{name} must be a finite number", where=name,
                          value=value) from None
