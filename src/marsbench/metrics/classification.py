"""Classification metrics as Mars-Bench defines them, computed by scikit-learn.

Headline ``f1_weighted`` (facts sheet, section 5):

- ``multiclass``: F1 per class, averaged with weights = support (true count) of each class.
- ``binary`` and ``image_pair``: the F1 of the positive class (index 1), as the reference reports.
- ``multilabel``: F1 per label, averaged with weights = support of each label, predictions
  thresholded at 0.5.

Also returned: ``f1_macro`` (unweighted mean over the classes that occur in the targets or the
predictions — a class absent from both has no defined F1 and is left out, as torchmetrics does),
``accuracy`` (multi-label: *subset* accuracy, every label of a sample right) and ``per_class_f1``
``{class name: F1}`` for every class (0.0 where undefined, scikit-learn's ``zero_division=0``).

One name, one meaning: where the reference (torchmetrics) means something else by a name, that
definition is returned under its own name -- ``f1_positive`` (binary and image-pair: the
positive class's F1, what the reference logs as binary ``f1_macro``) and, for multi-label,
``accuracy_labelwise`` (the fraction of (sample, label) decisions right, the reference's
multi-label ``accuracy``) beside ``accuracy_subset`` (= ``accuracy``).

Inputs. Single-label kinds: ``y_true`` and ``y_pred`` are integer class indices, shape (N,).
Multi-label: ``y_true`` is multi-hot (N, L); ``y_pred`` is either multi-hot or probabilities in
[0, 1] of the same shape, and a label counts as predicted where ``y_pred > 0.5`` (so both forms
work and agree with `predictions_from_logits`). Logits are refused: convert them first.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy.special import expit, softmax
from sklearn.metrics import accuracy_score, f1_score

ClassificationKind = Literal["binary", "multiclass", "multilabel", "image_pair"]
CLASSIFICATION_KINDS: tuple[str, ...] = ("binary", "multiclass", "multilabel", "image_pair")
THRESHOLD = 0.5  # sigmoid outputs above this are positive (binary and multi-label)


def predictions_from_logits(
    logits: Any, kind: ClassificationKind | str
) -> tuple[np.ndarray, np.ndarray]:
    """Turn model outputs into ``(y_pred, probabilities)``.

    - binary / image_pair, one logit per sample (N,) or (N, 1): p = sigmoid, predicted 1 where
      p > 0.5; probabilities are (N, 2) ``[1 - p, p]``. Two logits (N, 2) are read as multiclass.
    - multiclass (N, C): softmax, predicted = argmax; probabilities (N, C).
    - multilabel (N, L): sigmoid per label, predicted multi-hot (N, L) int64 where p > 0.5.
    """
    kind = _check_kind(kind)
    x = _to_numpy(logits).astype(np.float64)
    if kind in ("binary", "image_pair") and (x.ndim == 1 or (x.ndim == 2 and x.shape[1] == 1)):
        p = expit(x.reshape(-1))
        return (p > THRESHOLD).astype(np.int64), np.stack([1.0 - p, p], axis=1)
    if x.ndim != 2:
        raise ValueError(f"{kind} logits must have shape (N, classes); got shape {x.shape}")
    if kind == "multilabel":
        p = expit(x)
        return (p > THRESHOLD).astype(np.int64), p
    return x.argmax(axis=1).astype(np.int64), softmax(x, axis=1)


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    *,
    kind: ClassificationKind | str,
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``f1_weighted`` (headline), ``f1_macro``, ``accuracy``, ``per_class_f1``: see the module."""
    kind = _check_kind(kind)
    names = _class_names(class_names, num_classes)
    if kind in ("binary", "image_pair") and num_classes != 2:
        raise ValueError(f"kind {kind!r} needs num_classes=2, got {num_classes}")
    if kind == "multilabel":
        t = _multi_hot(y_true, num_classes)
        p = _thresholded(y_pred, t.shape)
        present = [j for j in range(num_classes) if t[:, j].any() or p[:, j].any()]
    else:
        t = _class_indices(y_true, num_classes, "y_true")
        p = _class_indices(y_pred, num_classes, "y_pred")
        if t.shape != p.shape:
            raise ValueError(f"y_true has {t.shape[0]} samples but y_pred has {p.shape[0]}")
        present = sorted(set(np.unique(t).tolist()) | set(np.unique(p).tolist()))
    labels = list(range(num_classes))
    if kind in ("binary", "image_pair"):
        headline = f1_score(t, p, average="binary", pos_label=1, zero_division=0)
    else:
        headline = f1_score(t, p, labels=labels, average="weighted", zero_division=0)
    macro = f1_score(t, p, labels=present, average="macro", zero_division=0) if present else 0.0
    per_class = f1_score(t, p, labels=labels, average=None, zero_division=0)
    out = {
        "f1_weighted": float(headline),
        "f1_macro": float(macro),
        "accuracy": float(accuracy_score(t, p)),
    }
    if kind in ("binary", "image_pair"):
        out["f1_positive"] = float(headline)
    if kind == "multilabel":
        out["accuracy_subset"] = out["accuracy"]
        out["accuracy_labelwise"] = float((t == p).mean())
    out["per_class_f1"] = {name: float(v) for name, v in zip(names, per_class)}
    return out


# --- input checks ----------------------------------------------------------------------------


def _check_kind(kind: str) -> str:
    kind = str(kind)
    if kind not in CLASSIFICATION_KINDS:
        raise ValueError(f"unknown classification kind {kind!r}; use one of {CLASSIFICATION_KINDS}")
    return kind


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for num_classes={num_classes}: {names}")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"class names must be unique; repeated: {dupes}")
    return names


def _class_indices(y: Any, num_classes: int, what: str) -> np.ndarray:
    a = _to_numpy(y)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a.reshape(-1)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"{what} must be a non-empty 1-D array of class indices; got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(a == np.round(a)):
            raise ValueError(
                f"{what} must hold integer class indices, got dtype {a.dtype} "
                f"(first value {a.flat[0]!r}); for scores use predictions_from_logits first"
            )
    a = a.astype(np.int64)
    bad = np.flatnonzero((a < 0) | (a >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{what}[{i}] = {a[i]} is not a class index in [0, {num_classes})")
    return a


def _multi_hot(y: Any, num_classes: int) -> np.ndarray:
    a = _to_numpy(y)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != num_classes:
        raise ValueError(
            f"multi-label y_true must be multi-hot with shape (N, {num_classes}); got {a.shape}"
        )
    bad = np.argwhere((a != 0) & (a != 1))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise ValueError(f"multi-label y_true[{i}, {j}] = {a[i, j]!r}; must be 0 or 1")
    return a.astype(np.int64)


def _thresholded(y: Any, shape: tuple[int, ...]) -> np.ndarray:
    a = _to_numpy(y)
    if a.shape != shape:
        raise ValueError(f"multi-label y_pred has shape {a.shape}; expected {shape} like y_true")
    a = a.astype(np.float64)
    bad = np.argwhere(~((a >= 0.0) & (a <= 1.0)))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise ValueError(
            f"multi-label y_pred[{i}, {j}] = {a[i, j]!r} is not a probability in [0, 1]; "
            "pass multi-hot predictions or sigmoid probabilities (see predictions_from_logits)"
        )
    return (a > THRESHOLD).astype(np.int64)


def imbalance_metrics(y_true: Any, y_pred: Any, train_counts: Sequence[int], *,
                      kind: ClassificationKind | str) -> dict[str, float]:
    """How a run treats rare classes (the paper's open question on class imbalance):
    ``balanced_accuracy`` (single-label: the mean per-class recall, scikit-learn's
    ``balanced_accuracy_score``; multi-label: the mean over labels of each label's balanced
    accuracy) and ``recall_head`` / ``recall_medium`` / ``recall_tail``: the mean recall of the
    classes (labels) in the top, middle and bottom third of the training frequencies
    (``train_counts[c]``; ties keep class order; a third with no test example is left out)."""
    from sklearn.metrics import balanced_accuracy_score, recall_score

    kind = _check_kind(kind)
    counts = np.asarray(train_counts)
    k = len(counts)
    if kind == "multilabel":
        t = _multi_hot(y_true, k)
        p = _thresholded(y_pred, t.shape)
        per_label = [balanced_accuracy_score(t[:, j], p[:, j]) for j in range(k)
                     if 0 < t[:, j].sum() < len(t)]
        balanced = float(np.mean(per_label)) if per_label else float("nan")
        recall = np.array([recall_score(t[:, j], p[:, j], zero_division=0) for j in range(k)])
        present = t.sum(0) > 0
    else:
        t = _class_indices(y_true, k, "y_true")
        p = _class_indices(y_pred, k, "y_pred")
        with warnings.catch_warnings():  # its definition: the classes of y_true; a prediction
            # of a class with no test example is no news, not a warning on every run
            warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
            balanced = float(balanced_accuracy_score(t, p))
        recall = recall_score(t, p, labels=list(range(k)), average=None, zero_division=0)
        present = np.bincount(t, minlength=k) > 0
    order = np.argsort(-counts, kind="stable")  # most frequent first
    out = {"balanced_accuracy": balanced}
    for name, part in zip(("head", "medium", "tail"), np.array_split(order, 3)):
        part = [c for c in part if present[c]]
        if part:
            out[f"recall_{name}"] = float(np.mean(recall[part]))
    return out
