"""The Python API in one place: build a model, list what exists, evaluate a grid of runs.

``import marsbench`` exposes these (and `open_dataset`, `RunSpec`, `run_experiment`,
`ResultsStore`, `to_tensors`, `collate_detection`) lazily; see docs/api.md.

- `create_model(name, num_classes, regime)`: like ``timm.create_model``, any registered model
  of any task (the registry's spec says which builder: `build_classifier`, `build_segmenter`,
  `build_detector`);
- `list_models`, `list_datasets`: registered model names, catalog dataset names;
- `evaluate(datasets, models, regimes)`: like ``lm_eval.simple_evaluate``, one `run_experiment`
  per combination, the results as the tidy table of `ResultsStore.to_table`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import itertools
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OptionError, did_you_mean
from .vocab import TASKS, TRAINING_REGIMES

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from torch import nn

    from .runs.store import ResultsStore

# RunSpec fields `evaluate` sets itself, or that name where data is, not how a run trains
_EVALUATE_OWN = ("dataset", "model", "regime", "variant", "seed", "data_root", "legacy_extra",
                 "split")


@functools.cache
def _unknown_model_error() -> type:
    """`OptionError` that is also the registry's `UnknownModelError` (a `KeyError`), so code
    catching either keeps working."""
    from .models.registry import UnknownModelError

    class UnknownModelOptionError(OptionError, UnknownModelError):
        pass

    return UnknownModelOptionError


def create_model(name: str, num_classes: int, regime: str = "fine_tuning", task: str | None = None,
                 weights: str | Path | None = None, *, multilabel: bool = False) -> nn.Module:
    """A registered model for ``num_classes`` classes in a training ``regime``.

    ``regime``: ``scratch`` (random init, nothing downloaded), ``feature_extraction`` or
    ``fine_tuning`` (published weights; where they are missing offline the error says which
    file to fetch and where to put it). ``task``: optional check that ``name`` is a model of
    that task. ``weights``: a user checkpoint (path) used instead of the published weights.
    ``multilabel``: a classifier with one output per label.

    Returns a `ClassifierModel` (classification; ``num_classes == 2`` gives one logit unless
    ``multilabel``) or a `DenseModel` (segmentation: ``num_classes`` includes the background;
    detection: ``num_classes`` object classes, labels ``1..K``).
    """
    from .models import registry
    from .models.registry import UnknownModelError

    if task is not None and str(task) not in TASKS:
        raise OptionError("unknown task", where="create_model task", value=task,
                          fix=did_you_mean(str(task), TASKS))
    if str(regime) not in TRAINING_REGIMES:
        raise OptionError("unknown regime", where="create_model regime", value=regime,
                          fix=did_you_mean(str(regime), TRAINING_REGIMES))
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise OptionError("num_classes must be a positive integer",
                          where="create_model num_classes", value=num_classes)
    try:
        spec = registry.get_spec(str(name))
    except UnknownModelError as exc:
        raise _unknown_model_error()("unknown model", where="create_model", value=name,
                                     fix=exc.fix) from None
    kind = str(spec.task)
    if task is not None and str(task) != kind:
        raise OptionError(f"model {spec.name} is a {kind} model", where="create_model task",
                          value=task, fix=f"use task={kind!r} (or leave task out), or a "
                          f"{task} model: {', '.join(list_models(task=task)[:6])}")
    if multilabel and kind != "classification":
        raise OptionError("multilabel applies to classifiers", where="create_model multilabel",
                          value=spec.name, fix="leave multilabel out for a " + kind + " model")
    if kind == "classification":
        from .models.classifier import build_classifier
        from .models.earth_observation import resolve_model_spec

        if num_classes < 2 and not multilabel:
            raise OptionError("a classifier needs at least 2 classes",
                              where="create_model num_classes", value=num_classes)
        return build_classifier(resolve_model_spec(spec, None, str(regime)), num_classes,
                                str(regime), weights=weights, multilabel=multilabel)
    if kind == "segmentation":
        from .models.segmentation import build_segmenter

        return build_segmenter(spec, num_classes, str(regime), weights=weights)
    from .models.detection import build_detector

    return build_detector(spec, num_classes, str(regime), weights=weights)


def list_models(pattern: str | None = None, *, task: str | None = None) -> list[str]:
    """Names of the registered models, sorted; ``pattern`` is a shell wildcard (``"*lite0*"``),
    ``task`` one of classification, segmentation, detection. Prefix families such as
    ``timm:<name>`` are accepted by `create_model` but not listed."""
    from .models.registry import list_specs

    if task is not None and str(task) not in TASKS:
        raise OptionError("unknown task", where="list_models task", value=task,
                          fix=did_you_mean(str(task), TASKS))
    names = sorted(s.name for s in list_specs(task))
    return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def list_datasets(pattern: str | None = None, *, task: str | None = None) -> list[str]:
    """Names of the Mars-Bench datasets in the catalog, sorted (``pattern`` and ``task`` as in
    `list_models`); each is what `open_dataset` and `evaluate` take."""
    from .catalog import list_cards

    if task is not None and str(task) not in TASKS:
        raise OptionError("unknown task", where="list_datasets task", value=task,
                          fix=did_you_mean(str(task), TASKS))
    names = sorted(c.name for c in list_cards(task))
    return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def _as_list(value: Any, what: str) -> list:
    values = [value] if isinstance(value, (str, Path, int)) else list(value)
    if not values:
        raise OptionError(f"evaluate needs at least one {what}", where=f"evaluate {what}s",
                          value=values)
    return values


def evaluate(datasets: str | Path | Iterable[str | Path], models: str | Iterable[str],
             regimes: str | Iterable[str] = ("fine_tuning",), root: str | Path | None = None,
             store: ResultsStore | str | Path | None = None, *,
             seeds: int | Iterable[int] = (0,), variants: str | Iterable[str] = ("full",),
             split: str | Iterable[str] = "test", split_scheme: str | Iterable[str] = "official",
             device: str | None = None,
             out_dir: str | Path | None = None, progress: Callable | None = None,
             **run_options: Any) -> pd.DataFrame:
    """Run every dataset x model x regime x variant x seed and return the tidy results table.

    ``datasets``: catalog names (read under ``root``) or dataset folders; ``models``: registered
    model names; ``regimes``: scratch, feature_extraction, fine_tuning. ``run_options``: any
    other `RunSpec` field, e.g. ``max_epochs=5, batch_size=16, lr=1e-4,
    options={"input_size": 64}``. Every spec is built (and so checked) before anything runs.
    ``split_scheme``: how train/val/test are drawn, one or several of official,
    observation_disjoint, region:<name>, latitude_band:<lo>:<hi> (`RunSpec.split`, docs/splits.md);
    ``split`` is the split whose metrics are returned.

    ``store``: a `ResultsStore` (or its path) that receives each record as it finishes (a
    record already stored under the same spec key is replaced; the store keeps its history).
    Returns the `ResultsStore.to_table` rows of the runs made here: columns model, dataset,
    task, regime, variant, seed, metric, value, split, spec_key; one row per numeric metric of
    ``split`` per run. A run that fails raises (and, with a store, is recorded as failed).
    """
    from .runs.spec import RunSpec
    from .runs.store import ResultsStore
    from .training.run import run_experiment

    own = {f.name for f in dataclasses.fields(RunSpec)}
    allowed = sorted(own - set(_EVALUATE_OWN))
    for option in run_options:
        if option not in allowed:
            where = "evaluate" if option not in own else f"evaluate {option}"
            fix = (did_you_mean(option, allowed) if option not in own else
                   f"pass it as evaluate's own argument ({option}s=... or root=...)"
                   if option in ("dataset", "model", "regime", "variant", "seed", "data_root")
                   else "it is not a run option")
            raise OptionError("unknown run option", where=where, value=option, fix=fix)
    specs = [RunSpec(dataset=str(d), model=str(m), regime=str(r), variant=str(v), seed=s,
                     split=str(k), data_root=None if root is None else str(root), **run_options)
             for d, m, r, v, s, k in itertools.product(
                 _as_list(datasets, "dataset"), _as_list(models, "model"),
                 _as_list(regimes, "regime"), _as_list(variants, "variant"),
                 _as_list(seeds, "seed"), _as_list(split_scheme, "split_scheme"))]
    if store is not None and not isinstance(store, ResultsStore):
        store = ResultsStore(store)
    records = [run_experiment(spec, device=device, out_dir=out_dir, store=store,
                              progress=progress) for spec in specs]
    keys = sorted({r.spec_key for r in records})
    if store is not None:
        return store.to_table(split, spec_key=keys)
    with tempfile.TemporaryDirectory(prefix="marsbench-evaluate-") as tmp:
        scratch = ResultsStore(Path(tmp) / "runs.sqlite")
        scratch.put_many(records, on_duplicate="replace")
        return scratch.to_table(split, spec_key=keys)
