"""Calibration of classifiers: expected calibration error, temperature scaling, reliability
diagrams and risk-coverage curves (selective classification). See docs/rankings_calibration.md.

Kinds (as `marsbench.metrics.classification`):

- ``binary`` / ``image_pair``: one probability of class 1 (or one logit) per sample, shape (N,)
  or (N, 1); two columns (N, 2) are read as multiclass.
- ``multiclass``: probabilities (or logits) (N, C), labels are class indices (N,).
- ``multilabel``: probabilities (or logits) (N, L), labels multi-hot (N, L). Each label is a
  one-vs-rest binary decision and all N x L decisions are pooled.

Every measure works on *decisions*: the predicted class and its confidence (the top-label
probability, Guo et al. 2017). For a binary probability p the decision is class 1 when p > 0.5
with confidence max(p, 1 - p) -- i.e. the top label of the two-class distribution [1 - p, p].
Functions named ``probs`` take probabilities; those named ``logits`` take logits
(`to_probabilities` converts). When ``kind`` is None it is inferred: 2-D labels of the same shape
as the scores -> multilabel; 1-D scores -> binary; else multiclass.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import expit, log_expit, log_softmax, softmax

from .classification import CLASSIFICATION_KINDS

DEFAULT_BINS = 15
TEMPERATURE_BOUNDS = (0.01, 100.0)
_PROB_ATOL = 1e-4

__all__ = [
    "RiskCoverage", "apply_temperature", "calibration_summary", "expected_calibration_error",
    "fit_temperature", "plot_reliability_diagram", "reliability_diagram", "risk_coverage_curve",
    "to_probabilities",
]


# --- inputs ----------------------------------------------------------------------------------------


def _array(x: Any, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        raise ValueError(f"{what} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} holds non-finite values")
    return a


def _kind(scores: np.ndarray, labels: np.ndarray, kind: str | None) -> str:
    if kind is None:
        if labels.ndim == 2 and labels.shape == scores.shape and scores.shape[1] > 1:
            return "multilabel"
        if scores.ndim == 1 or (scores.ndim == 2 and scores.shape[1] == 1):
            return "binary"
        return "multiclass"
    kind = str(kind)
    if kind not in CLASSIFICATION_KINDS:
        raise ValueError(f"unknown classification kind {kind!r}; use one of {CLASSIFICATION_KINDS}")
    return "binary" if kind == "image_pair" else kind


def _labels(labels: Any, scores: np.ndarray, kind: str) -> np.ndarray:
    y = _array(labels, "labels")
    if kind == "multilabel":
        if y.shape != scores.shape:
            raise ValueError(f"multi-label labels must be multi-hot with shape {scores.shape}; got {y.shape}")
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("multi-label labels must be 0 or 1")
        return y.astype(np.int64)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    n_classes = 2 if scores.ndim == 1 or scores.shape[1] == 1 else scores.shape[1]
    if y.ndim != 1 or y.shape[0] != scores.shape[0]:
        raise ValueError(f"labels must be {scores.shape[0]} class indices (N,); got shape {y.shape}")
    if not np.all((y == np.round(y)) & (y >= 0) & (y < n_classes)):
        raise ValueError(f"labels must be class indices in [0, {n_classes})")
    return y.astype(np.int64)


def to_probabilities(logits: Any, kind: str | None = None) -> np.ndarray:
    """Logits -> probabilities: sigmoid for one binary logit and for multi-label, softmax over
    the classes otherwise. The shape is kept ((N,) stays (N,)); ``kind=None`` means binary for
    1-D input, multiclass for 2-D (pass ``kind="multilabel"`` for multi-label logits)."""
    z = _array(logits, "logits")
    if kind is None:
        kind = "binary" if z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1) else "multiclass"
    kind = _kind(z, z, kind)
    if kind == "multilabel" or (kind == "binary" and (z.ndim == 1 or z.shape[1] == 1)):
        return expit(z)
    if z.ndim != 2:
        raise ValueError(f"{kind} logits must have shape (N, classes); got {z.shape}")
    return softmax(z, axis=1)


def _decisions(probs: Any, labels: Any, kind: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of every decision, both 1-D."""
    p = _array(probs, "probs")
    kind = _kind(p, np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels), kind)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probs must lie in [0, 1]; for logits use to_probabilities(logits, kind) "
                         "first")
    y = _labels(labels, p, kind)
    if kind == "multilabel" or (kind == "binary" and (p.ndim == 1 or p.shape[1] == 1)):
        p, y = p.reshape(-1), y.reshape(-1)
        predicted = (p > 0.5).astype(np.int64)
        return np.maximum(p, 1.0 - p), (predicted == y).astype(np.float64)
    if p.ndim != 2:
        raise ValueError(f"{kind} probs must have shape (N, classes); got {p.shape}")
    sums = p.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > _PROB_ATOL):
        i = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(f"probs row {i} sums to {sums[i]:.6g}, not 1; for logits use "
                         "to_probabilities(logits, kind) first (multi-label: kind='multilabel')")
    predicted = p.argmax(axis=1)
    return p[np.arange(len(p)), predicted], (predicted == y).astype(np.float64)


# --- expected calibration error and the reliability diagram ----------------------------------------


def reliability_diagram(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS, *,
                        kind: str | None = None) -> pd.DataFrame:
    """Per equal-width confidence bin: bin, bin_low, bin_high, confidence (mean confidence),
    accuracy (share correct), count. Bin m holds confidences in (m / n_bins, (m + 1) / n_bins]
    (the first bin also holds 0). Empty bins have count 0 and NaN confidence and accuracy."""
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    n_bins = int(n_bins)
    conf, correct = _decisions(probs, labels, kind)
    edges = np.arange(n_bins + 1) / n_bins
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / count
    return pd.DataFrame({"bin": np.arange(n_bins), "bin_low": edges[:-1], "bin_high": edges[1:],
                         "confidence": confidence, "accuracy": accuracy, "count": count})


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = DEFAULT_BINS, *,
                               kind: str | None = None) -> float:
    """ECE (Guo et al. 2017): ``sum_m |B_m| / n * |accuracy(B_m) - confidence(B_m)|`` over the
    equal-width bins of top-label confidence of `reliability_diagram`; in [0, 1], lower is better."""
    bins = reliability_diagram(probs, labels, n_bins, kind=kind)
    used = bins[bins["count"] > 0]
    gap = (used["accuracy"] - used["confidence"]).abs()
    return float((used["count"] * gap).sum() / used["count"].sum())


def plot_reliability_diagram(probs: Any = None, labels: Any = None, n_bins: int = DEFAULT_BINS, *,
                             kind: str | None = None, diagram: pd.DataFrame | None = None,
                             ax: Any = None, title: str | None = None):
    """Draw a reliability diagram (accuracy bars per confidence bin against the diagonal, with the
    ECE in the legend) and return the matplotlib Figure. Pass ``probs`` and ``labels``, or a
    ``diagram`` from `reliability_diagram`; ``ax`` draws into existing axes."""
    from matplotlib.figure import Figure

    if diagram is None:
        if probs is None or labels is None:
            raise ValueError("pass probs and labels, or diagram=reliability_diagram(...)")
        diagram = reliability_diagram(probs, labels, n_bins, kind=kind)
    if ax is None:
        fig = Figure(figsize=(4.5, 4.5))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    used = diagram[diagram["count"] > 0]
    ece = float((used["count"] * (used["accuracy"] - used["confidence"]).abs()).sum() / used["count"].sum())
    width = diagram["bin_high"] - diagram["bin_low"]
    ax.bar(used["bin_low"], used["accuracy"], width=width[used.index], align="edge",
           edgecolor="black", color="tab:blue", label=f"accuracy (ECE {ece:.3f})")
    ax.bar(used["bin_low"], used["confidence"] - used["accuracy"], bottom=used["accuracy"],
           width=width[used.index], align="edge", color="tab:red", alpha=0.3, label="gap")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
           title=title or "Reliability diagram")
    ax.legend(loc="upper left")
    return fig


# --- temperature scaling ---------------------------------------------------------------------------


def _nll(logits: np.ndarray, labels: np.ndarray, kind: str, temperature: float) -> float:
    z = logits / temperature
    if kind == "multilabel" or (kind == "binary" and (z.ndim == 1 or z.shape[1] == 1)):
        z, y = z.reshape(-1), labels.reshape(-1)
        return float(-np.mean(y * log_expit(z) + (1 - y) * log_expit(-z)))
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(len(z)), labels]))


def apply_temperature(logits: Any, temperature: float) -> np.ndarray:
    """``logits / temperature`` as a float64 array (probabilities: `to_probabilities` of it)."""
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    return _array(logits, "logits") / float(temperature)


def fit_temperature(val_logits: Any, val_labels: Any, *, kind: str | None = None,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The single temperature T > 0 minimising the mean negative log-likelihood of
    ``val_labels`` under ``val_logits / T`` (Guo et al. 2017): cross-entropy of the softmax for
    multiclass, binary cross-entropy of the sigmoid for one binary logit and for every label of a
    multi-label problem. Found by scipy's bounded scalar minimisation over log T within ``bounds``;
    a fit at a bound (e.g. a validation set the model separates perfectly wants T -> 0) warns."""
    z = _array(val_logits, "val_logits")
    kind = _kind(z, np.asarray(val_labels.detach().cpu() if hasattr(val_labels, "detach") else val_labels), kind)
    y = _labels(val_labels, z, kind)
    lo, hi = (math.log(b) for b in bounds)
    objective = lambda t: _nll(z, y, kind, math.exp(t))  # noqa: E731
    result = optimize.minimize_scalar(objective, bounds=(lo, hi), method="bounded",
                                      options={"xatol": 1e-8})
    best = float(result.x)
    for bound in (lo, hi):  # a NLL that keeps falling (or flattens in floating point) to a bound
        if objective(bound) <= objective(best):
            best = bound
    temperature = math.exp(best)
    if min(abs(best - lo), abs(best - hi)) < 1e-4:
        warnings.warn(f"fitted temperature {temperature:.4g} lies at the bound {bounds}; the "
                      "validation NLL keeps falling beyond it", RuntimeWarning, stacklevel=2)
    return float(temperature)


# --- selective classification ----------------------------------------------------------------------


@dataclass(frozen=True)
class RiskCoverage:
    """Risk-coverage curve: after keeping the ``k`` most confident decisions, k = 1..n,
    ``coverage = k / n``, ``accuracy`` (selective accuracy), ``risk = 1 - accuracy`` and
    ``threshold`` (confidence of the k-th kept decision). ``aurc`` = mean risk over k."""

    coverage: np.ndarray
    accuracy: np.ndarray
    risk: np.ndarray
    threshold: np.ndarray
    aurc: float

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"coverage": self.coverage, "accuracy": self.accuracy,
                             "risk": self.risk, "threshold": self.threshold})


def risk_coverage_curve(probs: Any, labels: Any, *, kind: str | None = None) -> RiskCoverage:
    """Selective accuracy when abstaining on the least confident decisions, and AURC.

    Decisions are sorted by confidence, most confident first. Tied confidences cannot be split
    by any threshold, so within a tie group the count of correct decisions grows linearly (the
    expected value over the orders of the group): the curve does not depend on input order.
    AURC (area under the risk-coverage curve, Geifman et al. 2019) is the mean of the selective
    risk over the n coverages k / n; lower is better.
    """
    conf, correct = _decisions(probs, labels, kind)
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    n = conf.size
    # tie groups: [start, end) of equal confidence
    starts = np.flatnonzero(np.r_[True, conf[1:] != conf[:-1]])
    ends = np.r_[starts[1:], n]
    before = np.r_[0.0, np.cumsum(correct)][starts]  # correct decisions before each group
    group_rate = (np.cumsum(correct)[ends - 1] - before) / (ends - starts)
    group = np.repeat(np.arange(starts.size), ends - starts)
    k = np.arange(1, n + 1)
    kept_correct = before[group] + (k - starts[group]) * group_rate[group]
    accuracy = kept_correct / k
    risk = 1.0 - accuracy
    return RiskCoverage(coverage=k / n, accuracy=accuracy, risk=risk, threshold=conf,
                        aurc=float(np.mean(risk)))


# --- the summary a run record stores ----------------------------------------------------------------


def calibration_summary(val_logits: Any, val_labels: Any, test_logits: Any, test_labels: Any,
                        kind: str, *, n_bins: int = DEFAULT_BINS) -> dict[str, float]:
    """``{"ece", "ece_temperature_scaled", "temperature", "aurc"}`` for one run: the test ECE of
    the raw logits, the temperature fitted on the validation split, the test ECE after dividing
    the test logits by it, and the test AURC of the raw logits (plain floats)."""
    temperature = fit_temperature(val_logits, val_labels, kind=kind)
    probs = to_probabilities(test_logits, kind)
    scaled = to_probabilities(apply_temperature(test_logits, temperature), kind)
    return {
        "ece": expected_calibration_error(probs, test_labels, n_bins, kind=kind),
        "ece_temperature_scaled": expected_calibration_error(scaled, test_labels, n_bins, kind=kind),
        "temperature": temperature,
        "aurc": risk_coverage_curve(probs, test_labels, kind=kind).aurc,
    }
