"""Typed run options: one frozen dataclass per task, validated once, where a spec is built.

A run's task-specific settings (input-size policy, tiles, the feature-extraction path, the Dice
weighting, ...) used to travel as free text pairs that each trainer read with its own default, so
a typo (``tile_sise=256``) or a wrong value (``loss=focal``) was recorded and silently ignored.
Here each option has a type, a default, a help text and, where it has one, a vocabulary from
`marsbench.vocab`; `build_options` refuses

- an unknown name, with a "did you mean" (or the task it belongs to),
- a value of the wrong type or outside its vocabulary, listing the valid ones,
- an option the run does not use (``fe_path`` outside ``feature_extraction``, ``tile_size``
  without ``input_policy=tile``, ``dice_weighting`` without a Dice loss, ...), or one it cannot
  honour (``fe_path=cached`` with segmentation's ``input_policy=tile``).

Identity: `options_identity` holds only the options that differ from their defaults, so adding a
new option whose default is the old behaviour never re-keys existing runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ..errors import OptionError, did_you_mean
from ..vocab import (
    ANNOTATION_FORMATS,
    BAND_STRATEGIES,
    DETECTION_INPUT_POLICIES,
    DICE_WEIGHTINGS,
    FE_PATHS,
    IMBALANCE_STRATEGIES,
    PROBE_REGIMES,
    SEGMENTATION_INPUT_POLICIES,
    TASKS,
)
from .fingerprint import exact_int

STRIDE = 32  # dense models need sides that are multiples of this
# Largest image side (px) an option may ask for. Models here take 224-1024 px; 8192 leaves room
# for full-resolution tiles while a batch still fits in memory, whereas a larger side is a typo
# (1000000 px needs terabytes per image) that would otherwise fail only inside training.
MAX_SIDE = 8192
MAX_COUNT = 10**6  # few-shot ways, shots, queries and episodes: beyond any dataset or budget


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None, low: float | None = None,
         high: float | None = None):
    return field(default=default,
                 metadata={"help": help, "choices": choices, "low": low, "high": high})


@dataclass(frozen=True)
class TaskOptions:
    """Base of the per-task option sets."""

    task: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def identity(self) -> dict[str, Any]:
        """The options that differ from their defaults (what the run key covers)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.identity().items()))


@dataclass(frozen=True)
class ClassificationOptions(TaskOptions):
    task: ClassVar[str] = "classification"
    fe_path: str | None = _opt(
        None, "feature_extraction only: cached (backbone once, no augmentation; default) | "
              "online (backbone every step, with augmentation)", FE_PATHS)
    input_size: int | None = _opt(None, "override the model's input size in px", low=1,
                                  high=MAX_SIDE)
    band_strategy: str | None = _opt(
        None, "Earth-observation models only: replicate | visible | adapter", BAND_STRATEGIES)
    ways: int | None = _opt(None, "few_shot_episodes only: classes per episode (default 5, at "
                                  "most the dataset's)", low=2, high=MAX_COUNT)
    shots: int | None = _opt(None, "few_shot_episodes only: support images per class, from the "
                                   "train split (default 5)", low=1, high=MAX_COUNT)
    queries: int | None = _opt(None, "few_shot_episodes only: query images per class, from the "
                                     "scored split (default 15)", low=1, high=MAX_COUNT)
    episodes: int | None = _opt(None, "few_shot_episodes only: episodes drawn (default 600)",
                                low=1, high=MAX_COUNT)
    imbalance: str = _opt(
        "none", "class-imbalance strategy, from the train split's frequencies "
                "(docs/imbalance.md): none | inverse_frequency | effective_number (loss "
                "weights) | balanced_sampler | oversample | undersample | logit_adjustment | "
                "focal; not with knn or few_shot_episodes; linear_probe: the two weightings",
        IMBALANCE_STRATEGIES)


FEW_SHOT_OPTIONS = ("ways", "shots", "queries", "episodes")
FEW_SHOT_DEFAULTS = {"ways": 5, "shots": 5, "queries": 15, "episodes": 600}


@dataclass(frozen=True)
class SegmentationOptions(TaskOptions):
    task: ClassVar[str] = "segmentation"
    input_policy: str = _opt("native", "native (pad to a multiple of 32) | tile (random crops, "
                                       "sliding-window inference) | reference (resize)",
                             SEGMENTATION_INPUT_POLICIES)
    input_size: int | None = _opt(None, "input_policy=reference: resize side in px (multiple of "
                                        "32; default the model's)", low=STRIDE, high=MAX_SIDE)
    tile_size: int | None = _opt(None, "input_policy=tile: tile side in px (multiple of 32; "
                                       "default 512)", low=STRIDE, high=MAX_SIDE)
    tile_overlap: float | None = _opt(None, "input_policy=tile: sliding-window overlap in [0, 1) "
                                            "(default 0.25)", low=0.0)
    dice_weighting: str | None = _opt(None, "Dice losses only: generalised Dice class weights "
                                            "(default square)", DICE_WEIGHTINGS)
    fe_path: str | None = _opt(
        None, "feature_extraction only: cached (encoder features once, decoder trained on them, "
              "no augmentation; default, refused with input_policy=tile) | online (encoder "
              "every step, with augmentation; the default with input_policy=tile)", FE_PATHS)


@dataclass(frozen=True)
class DetectionOptions(TaskOptions):
    task: ClassVar[str] = "detection"
    input_policy: str = _opt("native", "native (no resize) | tile (random crops) | reference "
                                       "(resize to input_size)", DETECTION_INPUT_POLICIES)
    input_size: int | None = _opt(None, "input_policy=reference: side in px (default 224)", low=1,
                                  high=MAX_SIDE)
    tile_size: int | None = _opt(None, "input_policy=tile: crop side in px (default 256)", low=1,
                                 high=MAX_SIDE)
    min_size: int | None = _opt(None, "override the detector's evaluation min_size (px)", low=1,
                                high=MAX_SIDE)
    max_size: int | None = _opt(None, "override the detector's evaluation max_size (px)", low=1,
                                high=MAX_SIDE)
    annotation_format: str = _opt("voc", "which annotation files to read: voc (as the "
                                         "reference) | coco | yolo", ANNOTATION_FORMATS)
    drop_negatives: bool = _opt(False, "leave out training images without boxes (the "
                                       "reference does)")


@dataclass(frozen=True)
class ZeroShotOptions(TaskOptions):
    """What identifies a zero-shot VLM evaluation (any task): the API, the prompt, the images."""

    task: ClassVar[str] = "zero_shot"
    provider: str = _opt("", "API provider (openai-compatible, gemini)")
    endpoint: str = _opt("", "API base URL ('' for the provider's default)")
    model_id: str = _opt("", "the provider's model id")
    temperature: float | None = _opt(None, "sampling temperature", low=0.0)
    max_tokens: int | None = _opt(None, "answer length limit", low=1)
    prompt_version: str = _opt("", "version of the prompt file")
    prompt_sha256: str = _opt("", "sha256 of the rendered prompt")
    max_side: int | None = _opt(None, "longest image side sent (px)", low=1, high=MAX_SIDE)
    limit: int | None = _opt(None, "images scored (None: the whole split)", low=1)
    split: str = _opt("test", "the split scored", ("train", "val", "test"))


OPTION_CLASSES: dict[str, type[TaskOptions]] = {
    c.task: c for c in (ClassificationOptions, SegmentationOptions, DetectionOptions)}

# Defaults of options left at None, resolved where they are used (one place each).
SEGMENTATION_TILE_SIZE, SEGMENTATION_TILE_OVERLAP = 512, 0.25
DETECTION_TILE_SIZE, DETECTION_REFERENCE_SIZE = 256, 224


def option_names(task: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields(OPTION_CLASSES[task]))


def options_help() -> str:
    """Every option of every task, one line each (for ``--help`` and docs)."""
    lines = []
    for task, cls in OPTION_CLASSES.items():
        for f in fields(cls):
            lines.append(f"{task}: {f.name} - {f.metadata['help']}")
    return "\n".join(lines)


def build_options(task: str, values: Mapping[str, Any] | TaskOptions | None = None, *,
                  regime: str | None = None, loss: str = "auto", model: str | None = None,
                  where: str = "run options") -> TaskOptions:
    """Validate ``values`` (text from the CLI or YAML, or typed) into ``task``'s options.

    ``regime``, ``loss`` and ``model`` let the options be checked against the run that uses
    them; ``where`` names the source in errors (``--option``, ``exp.yaml:12 extra``).
    """
    if task not in OPTION_CLASSES:
        raise OptionError("unknown task", where=where, value=task, fix=did_you_mean(task, TASKS))
    if regime in PROBE_REGIMES and task != "classification":
        raise OptionError(f"regime {regime} is a classification probe", where=where,
                          value=f"{task} run", fix="use it on classification datasets; dense "
                                                   "tasks take scratch, feature_extraction or "
                                                   "fine_tuning")
    cls = ZeroShotOptions if regime == "zero_shot" else OPTION_CLASSES[task]
    if isinstance(values, TaskOptions):
        if not isinstance(values, cls):
            raise OptionError(f"{values.task} options given to a {task} run", where=where,
                              value=values.describe() or type(values).__name__,
                              fix=f"use {cls.__name__}")
        values = values.identity()
    given = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    parsed: dict[str, Any] = {}
    for name, raw in given.items():
        name = str(name).strip()
        if name not in known:
            owners = [t for t in OPTION_CLASSES if name in option_names(t)]
            fix = (f"it is a {' and '.join(owners)} option, not a {cls.task} one; remove it"
                   if owners else did_you_mean(name, known))
            raise OptionError(f"unknown {cls.task} option", where=where, value=name, fix=fix,
                              option=name)
        if raw is None:
            continue
        parsed[name] = _parse_value(known[name], raw, where)
    if "fe_path" in known and regime is not None:
        if regime == "feature_extraction":
            parsed.setdefault("fe_path", default_fe_path(task, parsed.get("input_policy")))
        elif "fe_path" in parsed:
            _unused("fe_path", f"regime {regime}", "it applies to regime feature_extraction only",
                    where)
    if isinstance(values, Mapping) or values is None:
        for name in FEW_SHOT_OPTIONS:
            if name in parsed and regime is not None and regime != "few_shot_episodes":
                _unused(name, f"regime {regime}", "it applies to regime few_shot_episodes only",
                        where)
    options = cls(**parsed)
    _check_combinations(options, loss=loss, where=where)
    if getattr(options, "imbalance", "none") != "none" and regime is not None:
        check_imbalance_regime(options.imbalance, regime, where)
    if model is not None and getattr(options, "band_strategy", None) is not None:
        _check_band_strategy(options, model, regime, where)
    return options


# The imbalance strategies a regime can honour (others: every strategy): the kNN and few-shot
# probes train nothing; linear_probe's logistic regression takes class weights only.
IMBALANCE_BY_REGIME = {"knn": ("none",), "few_shot_episodes": ("none",),
                       "linear_probe": ("none", "inverse_frequency", "effective_number")}


def check_imbalance_regime(strategy: str, regime: str | None, where: str = "run options"
                           ) -> None:
    """Refuse, in one line, an ``imbalance`` strategy the regime cannot use."""
    allowed = IMBALANCE_BY_REGIME.get(regime or "", IMBALANCE_STRATEGIES)
    if strategy in allowed:
        return
    why = ("it trains no loss and samples nothing" if allowed == ("none",)
           else "its logistic regression takes class weights only")
    raise OptionError(f"option imbalance={strategy} is not possible with regime {regime}",
                      where=where, value=f"imbalance={strategy}", option="imbalance",
                      fix=f"{why}; use imbalance {' or '.join(allowed)}, or regime mlp_probe or "
                          "feature_extraction")


def default_fe_path(task: str, input_policy: str | None = None) -> str:
    """The feature-extraction path a run gets when it names none: ``cached`` (frozen features
    computed once), except segmentation's ``input_policy=tile``, whose random crops change every
    epoch: ``online``."""
    policy = str(input_policy or "").strip().lower()
    return "online" if task == "segmentation" and policy == "tile" else "cached"


def options_from_legacy(task: str, extra: Mapping[str, str], regime: str
                        ) -> tuple[TaskOptions, int | None, dict[str, str]]:
    """Schema-1 ``extra`` text pairs -> (options, subset_seed, what could not be kept).

    Used to read old records: what a schema-1 run could not have used (e.g. ``fe_path`` on a
    segmentation run, a misspelt name) is returned rather than guessed at."""
    extra = dict(extra)
    subset_seed = extra.pop("subset_seed", None)
    dropped: dict[str, str] = {}
    cls = ZeroShotOptions if regime == "zero_shot" else OPTION_CLASSES.get(task)
    known = {f.name for f in fields(cls)} if cls is not None else set()
    kept = {}
    for k, v in extra.items():
        (kept if k in known else dropped)[k] = v
    if task == "classification" and regime != "feature_extraction" and "fe_path" in kept:
        dropped["fe_path"] = kept.pop("fe_path")
    if task == "segmentation":
        if "fe_path" in kept:  # schema 1 had no segmentation fe_path: never used
            dropped["fe_path"] = kept.pop("fe_path")
        if regime == "feature_extraction":
            kept["fe_path"] = "online"  # what every schema-1 segmentation run did
    try:
        options = build_options(task, kept, regime=regime, where="stored schema-1 spec")
    except OptionError:
        dropped |= kept
        options = build_options(task, {}, regime=regime, where="stored schema-1 spec")
    return options, (None if subset_seed is None else int(subset_seed)), dropped


# -- helpers ------------------------------------------------------------------------------------

def _parse_value(f: dataclasses.Field, raw: Any, where: str) -> Any:
    name, choices, low, high = (f.name, f.metadata["choices"], f.metadata["low"],
                                f.metadata.get("high"))
    kind = _kind(f)
    text = raw.strip() if isinstance(raw, str) else raw
    if kind is bool:
        if isinstance(text, bool):
            return text
        low_text = str(text).lower()
        if low_text in ("true", "1", "yes", "on"):
            return True
        if low_text in ("false", "0", "no", "off"):
            return False
        raise OptionError(f"option {name} must be true or false", where=where, value=raw,
                          option=name)
    if kind is int:
        value = exact_int(text)
        if value is None:
            raise OptionError(f"option {name} must be an integer", where=where, value=raw,
                              fix=f"e.g. {name}=256", option=name)
    elif kind is float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = math.nan
        if isinstance(text, bool) or not math.isfinite(value):
            raise OptionError(f"option {name} must be a finite number", where=where, value=raw,
                              option=name)
    else:
        if not choices:
            return str(text)  # free text (an endpoint, a model id): kept exactly
        value = str(text).lower().replace("-", "_")
        if value not in choices:
            raise OptionError(f"invalid value for option {name}", where=where, value=raw,
                              fix=f"use one of {', '.join(choices)}", option=name)
        return value
    if low is not None and value < low:
        raise OptionError(f"option {name} must be >= {low:g}", where=where, value=raw,
                          option=name)
    if high is not None and value > high:
        side = high == MAX_SIDE
        raise OptionError(f"option {name} must be at most {high:.10g}{' px' * side}",
                          where=where, value=raw,
                          fix=f"use a {'side' if side else 'value'} <= {high:.10g}",
                          option=name)
    return value


def _kind(f: dataclasses.Field) -> type:
    text = str(f.type)
    return bool if "bool" in text else int if "int" in text else float if "float" in text else str


def _unused(name: str, context: str, why: str, where: str) -> None:
    raise OptionError(f"option {name} is not used with {context}", where=where, value=name,
                      fix=f"{why}; remove it", option=name)


def _check_combinations(o: TaskOptions, *, loss: str, where: str) -> None:
    if isinstance(o, SegmentationOptions):
        if o.input_policy != "tile":
            for name in ("tile_size", "tile_overlap"):
                if getattr(o, name) is not None:
                    _unused(name, f"input_policy={o.input_policy}",
                            "it applies to input_policy=tile only", where)
        if o.input_policy != "reference" and o.input_size is not None:
            _unused("input_size", f"input_policy={o.input_policy}",
                    "it applies to input_policy=reference only", where)
        for name in ("tile_size", "input_size"):
            value = getattr(o, name)
            if value is not None and value % STRIDE:
                raise OptionError(f"option {name} must be a multiple of {STRIDE}", where=where,
                                  value=value, option=name,
                                  fix=f"e.g. {name}={max(STRIDE, value // STRIDE * STRIDE)}")
        if o.tile_overlap is not None and not 0 <= o.tile_overlap < 1:
            raise OptionError("option tile_overlap must be in [0, 1)", where=where,
                              value=o.tile_overlap, option="tile_overlap")
        if o.dice_weighting is not None and loss not in ("dice", "combined"):
            _unused("dice_weighting", f"loss {loss}", "it applies to loss dice or combined only",
                    where)
        if o.fe_path == "cached" and o.input_policy == "tile":
            raise OptionError("option fe_path=cached is not possible with input_policy=tile",
                              where=where, value="fe_path=cached", option="fe_path",
                              fix="random tiles change every epoch, so their encoder features "
                                  "cannot be cached; use fe_path=online (the default with "
                                  "tile), or input_policy native or reference")
    elif isinstance(o, DetectionOptions):
        if o.input_policy != "tile" and o.tile_size is not None:
            _unused("tile_size", f"input_policy={o.input_policy}",
                    "it applies to input_policy=tile only", where)
        if o.input_policy != "reference" and o.input_size is not None:
            _unused("input_size", f"input_policy={o.input_policy}",
                    "it applies to input_policy=reference only", where)
        if o.min_size is not None and o.max_size is not None and o.max_size < o.min_size:
            raise OptionError("option max_size must be >= min_size", where=where,
                              value=f"min_size={o.min_size} max_size={o.max_size}",
                              option="max_size")


def _check_band_strategy(o: TaskOptions, model: str, regime: str | None, where: str) -> None:
    from ..models.earth_observation import resolve_model_spec  # imports torch: only when used

    try:
        resolve_model_spec(model, {"band_strategy": o.band_strategy,
                                   "fe_path": getattr(o, "fe_path", None) or "cached"}, regime)
    except (ValueError, KeyError) as exc:
        raise OptionError("option band_strategy does not fit the model", where=where,
                          option="band_strategy",
                          value=f"band_strategy={o.band_strategy} model={model}",
                          fix=str(exc).strip("'\"")) from None
