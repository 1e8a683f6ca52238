"""Targets and scores of a zero-shot run, through the same metric code as trained models.

Targets: single-label datasets use the sample's class index; multi-label datasets its multi-hot
vector; segmentation ("presence") a multi-hot vector over the asked classes, a class counting as
present when at least ``min_pixels`` mask pixels carry it (default 1; ignore values skipped).

Unparseable answers are kept and scored as wrong, never dropped:

- binary / image pair: the opposite of the true class;
- multiclass: a "no answer" pseudo-class outside the label set — a miss for the true class and a
  false positive for no real class (it is left out of ``per_class_f1`` and ``f1_macro``);
- multi-label and presence: every label flipped (each true label missed, each absent label
  claimed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..sources.samples import ClassificationSample, SegmentationSample
from .prompts import Prompt

NO_ANSWER = "(no answer)"


def sample_images(sample: Any) -> tuple[np.ndarray, ...]:
    """The image(s) a sample shows the model: a pair for change detection, else one."""
    if isinstance(sample, ClassificationSample):
        return tuple(sample.images)
    if isinstance(sample, SegmentationSample):
        return (sample.image,)
    raise TypeError(f"zero-shot VLM evaluation takes classification or segmentation samples, "
                    f"not {type(sample).__name__}")


def target_of(sample: Any, prompt: Prompt, *, min_pixels: int = 1) -> int | np.ndarray:
    """The sample's truth in the prompt's terms (module doc)."""
    if prompt.task == "presence":
        if not isinstance(sample, SegmentationSample):
            raise TypeError("a presence prompt needs segmentation samples, "
                            f"got {type(sample).__name__}")
        ids = np.array([lab.class_id for lab in prompt.labels])
        values = np.asarray(sample.mask).ravel().astype(np.int64)
        counts = np.bincount(values[values >= 0],  # negative ignore values count for nothing
                             minlength=max(prompt.num_classes, int(ids.max()) + 1))
        return (counts[ids] >= min_pixels).astype(np.int64)
    if not isinstance(sample, ClassificationSample):
        raise TypeError(f"a {prompt.task} prompt needs classification samples, "
                        f"got {type(sample).__name__}")
    if prompt.task == "multi_label":
        target = np.asarray(sample.target).astype(np.int64).reshape(-1)
        if target.size != prompt.num_classes:
            raise ValueError(f"sample {sample.sample_id}: multi-hot target has {target.size} "
                             f"labels, the dataset {prompt.num_classes}")
        return target
    return int(sample.target)


def prediction_vector(ids: Sequence[int], prompt: Prompt) -> np.ndarray:
    """Multi-hot prediction in the space of `target_of` (dataset labels, or asked classes)."""
    if prompt.task == "presence":
        position = {lab.class_id: j for j, lab in enumerate(prompt.labels)}
        out = np.zeros(len(prompt.labels), dtype=np.int64)
        out[[position[i] for i in ids]] = 1
        return out
    out = np.zeros(prompt.num_classes, dtype=np.int64)
    out[list(ids)] = 1
    return out


def score(targets: list[Any], predictions: list[Any], prompt: Prompt, *, kind: str,
          class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of a run; ``predictions`` hold a class id / id tuple, or None when unparseable."""
    if not targets:
        raise ValueError(f"{prompt.dataset}: no samples to score")
    from ..metrics.classification import classification_metrics  # sklearn: imported when scoring
    if prompt.task == "single_label":
        return _score_single(targets, predictions, kind=kind, class_names=list(class_names))
    truth = np.stack([np.asarray(t, dtype=np.int64) for t in targets])
    pred = np.stack([1 - t if p is None else prediction_vector(p, prompt)
                     for t, p in zip(truth, predictions)])
    names = ([lab.label for lab in prompt.labels] if prompt.task == "presence"
             else list(class_names))
    return classification_metrics(truth, pred, kind="multilabel", num_classes=len(names),
                                  class_names=names)


def _score_single(targets: list[int], predictions: list[int | None], *, kind: str,
                  class_names: list[str]) -> dict[str, Any]:
    from ..metrics.classification import classification_metrics

    k = len(class_names)
    y_true = np.asarray(targets, dtype=np.int64)
    if kind in ("binary", "image_pair"):
        y_pred = np.array([1 - t if p is None else p for t, p in zip(targets, predictions)])
        return classification_metrics(y_true, y_pred, kind=kind, num_classes=k,
                                      class_names=class_names)
    y_pred = np.array([k if p is None else p for p in predictions], dtype=np.int64)
    if not (y_pred == k).any():
        return classification_metrics(y_true, y_pred, kind=kind, num_classes=k,
                                      class_names=class_names)
    out = classification_metrics(y_true, y_pred, kind=kind, num_classes=k + 1,
                                 class_names=[*class_names, NO_ANSWER])
    # The pseudo-class has no true samples, so f1_weighted is unchanged by it; drop it from the
    # per-class scores and from the macro mean (taken, as the metric defines it, over the real
    # classes present in targets or predictions).
    out["per_class_f1"].pop(NO_ANSWER)
    present = sorted(set(y_true.tolist()) | set(y_pred[y_pred < k].tolist()))
    out["f1_macro"] = float(np.mean([out["per_class_f1"][class_names[c]] for c in present]))
    return out
