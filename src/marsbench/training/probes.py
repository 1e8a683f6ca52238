"""Probes: fast evaluations of a frozen encoder on its cached features (classification).

Each probe is its own regime, so its results are keyed, grouped and reported apart from the
paper's ``feature_extraction`` (a trained linear head) and never pooled with it:

- ``knn``: cosine k-nearest neighbours (scikit-learn, brute force); ``k`` from `KNN_KS` chosen
  on the validation split by its headline score (support-weighted F1), ties to the smaller k.
- ``linear_probe``: scikit-learn logistic regression (L-BFGS) on standardised features, ``C``
  from `LINEAR_CS` chosen on the validation split by log-loss; multi-label one-vs-rest.
- ``mlp_probe``: a two-layer MLP head trained by the engine on the cached features (the
  ``feature_extraction`` cached path with another head; optimiser, schedule and early stopping
  from the spec).
- ``few_shot_episodes``: N-way K-shot episodes, support drawn from the official train split,
  queries from the scored split; nearest class prototype (mean of L2-normalised support
  features) by cosine. The metrics are means over the episodes, with a 95 % interval
  (percentiles of the episode scores' bootstrap mean). Single-label tasks only.

The features are exactly those of ``feature_extraction`` with ``fe_path=cached`` (same cache
key: a probe after a feature-extraction sweep computes nothing). The scikit-learn probes are
not epoch-based; `train_probe` runs them (setup, fit, evaluate, export) in place of the
engine's epoch loop, with the engine's context and its predictions handling.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import OptionError
from ..metrics.classification import classification_metrics
from ..runs.options import FEW_SHOT_DEFAULTS
from .classification import ClassificationTask
from .engine import TrainResult, scored_result
from .pixels import summarise

KNN_KS = (1, 3, 5, 10, 20, 50)
LINEAR_CS = tuple(10.0 ** e for e in range(-4, 5))
LINEAR_MAX_ITER = 500  # L-BFGS steps per fit; weakly regularised fits on separable data stop here
PROBABILITY_FLOOR = 1e-7  # log-probabilities of a probe's 0/1 votes stay finite
MLP_HIDDEN = 512


def mlp_head(in_features: int, out_features: int) -> nn.Module:
    """The ``mlp_probe`` head: Linear -> ReLU -> Linear (``out_features`` kept as attribute)."""
    hidden = min(MLP_HIDDEN, max(in_features, out_features))
    head = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out_features))
    head.out_features = out_features
    return head


class ProbeTask(ClassificationTask):
    """The scikit-learn probes (``knn``, ``linear_probe``): the frozen features of every split
    (`ClassificationTask`'s cached path), a fit, and scores per split from the fitted probe."""

    def setup(self) -> None:
        self._setup_cached()
        self.info["pixel_cache"] = summarise(im.pixel_cache for im in self.image_sets.values())
        self.x = {name: f.float().numpy() for name, f in self.feats.items()}
        self.y = {name: t.numpy() for name, t in self.targets.items()}
        self.multilabel = self.splits["train"].card.multilabel

    def fit(self) -> None:
        if self.spec.regime == "knn":
            self._fit_knn()
        else:
            self._fit_linear()

    # -- knn ---------------------------------------------------------------------------------
    def _knn(self, k: int):
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(
            self.x["train"], self.y["train"])

    def _fit_knn(self) -> None:
        ks = [k for k in KNN_KS if k <= len(self.x["train"])] or [1]
        scores = {}
        for k in ks:
            model = self._knn(k)
            scores[k] = self._headline("val", self._log_probs(model, "val"))
        best = max(ks, key=lambda k: (scores[k], -k))
        self.probe = self._knn(best)
        self.info.update(probe={"name": "knn", "metric": "cosine", "k": best,
                                "k_grid": list(ks), "selected_by": "val f1_weighted",
                                "val_scores": {str(k): scores[k] for k in ks}})

    # -- logistic regression -----------------------------------------------------------------
    def _linear(self, c: float):
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        lr = LogisticRegression(C=c, solver="lbfgs", max_iter=LINEAR_MAX_ITER,
                                class_weight=self.balance.class_weight())  # option imbalance
        classifier = OneVsRestClassifier(lr) if self.multilabel else lr
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence notes at extreme C; the score decides
            return make_pipeline(StandardScaler(), classifier).fit(self.x["train"],
                                                                   self.y["train"])

    def _fit_linear(self) -> None:
        losses = {}
        for c in LINEAR_CS:
            losses[c] = self._loss("val", self._log_probs(self._linear(c), "val"))
        best = min(LINEAR_CS, key=lambda c: (losses[c], c))
        self.probe = self._linear(best)
        self.info.update(probe={"name": "linear_probe", "solver": "lbfgs", "C": best,
                                "max_iter": LINEAR_MAX_ITER,
                                "C_grid": list(LINEAR_CS), "standardised": True,
                                "selected_by": "val log-loss",
                                "val_losses": {f"{c:g}": losses[c] for c in LINEAR_CS}})

    # -- scores ------------------------------------------------------------------------------
    def _log_probs(self, model, name: str) -> np.ndarray:
        """Per-class log-probabilities (single-label) or per-label logits (multi-label)."""
        proba = model.predict_proba(self.x[name])
        if self.multilabel:
            if isinstance(proba, list):  # kNN: one (N, 2) array per label
                proba = np.stack([p[:, -1] if p.shape[1] > 1 else np.zeros(len(p))
                                  for p in proba], axis=1)
            p = np.clip(proba, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
            return np.log(p) - np.log1p(-p)
        full = np.zeros((len(proba), self.splits["train"].num_classes))
        full[:, model.classes_.astype(int)] = proba  # classes absent from train: 0
        return np.log(np.clip(full, PROBABILITY_FLOOR, None))

    def _loss(self, name: str, scores: np.ndarray) -> float:
        y = self.y[name]
        if self.multilabel:
            return float(nn.functional.binary_cross_entropy_with_logits(
                torch.as_tensor(scores), torch.as_tensor(y, dtype=torch.float64)))
        return float(-np.mean(scores[np.arange(len(y)), y.astype(int)]))

    def _headline(self, name: str, scores: np.ndarray) -> float:
        from ..metrics.classification import predictions_from_logits

        data = self.splits[name]
        y_pred, _ = predictions_from_logits(scores, "multilabel" if self.multilabel
                                            else "multiclass")
        return float(classification_metrics(self.y[name], y_pred, kind=str(self.kind),
                                            num_classes=data.num_classes)["f1_weighted"])

    def logits(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self._log_probs(self.probe, name)
        return torch.as_tensor(scores), self.targets[name]

    def probe_val_loss(self) -> float:
        return self._loss("val", self._log_probs(self.probe, "val"))


class FewShotTask(ProbeTask):
    """``few_shot_episodes``: N-way K-shot episodes (module doc)."""

    def setup(self) -> None:
        if self.splits["train"].card.multilabel:
            raise OptionError("few_shot_episodes needs single-label classes",
                              where=self.splits["train"].card.name, value="multi-label",
                              fix="use knn, linear_probe or mlp_probe on multi-label datasets")
        super().setup()
        o = self.spec.options
        self.settings = {k: getattr(o, k) or FEW_SHOT_DEFAULTS[k] for k in FEW_SHOT_DEFAULTS}

    def fit(self) -> None:
        self.results = {name: self._episodes(name) for name in ("val", "test")}
        self.info["probe"] = {"name": "few_shot_episodes", "classifier": "cosine prototype",
                              **self.settings,
                              "ways_used": self.results["test"]["ways"]}

    def _episodes(self, name: str) -> dict:
        s = self.settings
        train_y, query_y = self.y["train"].astype(int), self.y[name].astype(int)
        support_classes = [c for c in np.unique(train_y) if (train_y == c).sum() >= s["shots"]]
        classes = [c for c in support_classes if (query_y == c).any()]
        ways = min(s["ways"], len(classes))
        if ways < 2:  # this data cannot hold the episodes: a failed run, not bad input
            raise ValueError(f"too few classes for few-shot episodes "
                             f"({self.splits[name].card.name} {name}): {len(classes)} class(es) "
                             f"with >= {s['shots']} train images and a query image; lower "
                             "shots, or use knn / linear_probe")
        unit = _normalise(self.x["train"]), _normalise(self.x[name])
        rng = np.random.default_rng([self.spec.seed, 0 if name == "val" else 1])
        acc, f1, nll = [], [], []
        for _ in range(s["episodes"]):
            chosen = rng.choice(classes, size=ways, replace=False)
            protos, q_idx, q_lab = [], [], []
            for j, c in enumerate(chosen):
                support = rng.choice(np.flatnonzero(train_y == c), size=s["shots"],
                                     replace=False)
                protos.append(unit[0][support].mean(0))
                pool = np.flatnonzero(query_y == c)
                take = rng.choice(pool, size=min(s["queries"], len(pool)), replace=False)
                q_idx.append(take)
                q_lab.append(np.full(len(take), j))
            protos = _normalise(np.stack(protos))
            q_idx, q_lab = np.concatenate(q_idx), np.concatenate(q_lab)
            logits = 10.0 * unit[1][q_idx] @ protos.T  # cosine, temperature 0.1
            log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
            pred = logits.argmax(1)
            acc.append(float((pred == q_lab).mean()))
            f1.append(weighted_f1(q_lab, pred, ways))
            nll.append(float(-log_p[np.arange(len(q_lab)), q_lab].mean()))
        return {"ways": ways, "accuracy": acc, "f1_weighted": f1, "nll": nll}

    def evaluate(self, split: str) -> dict:
        r = self.results[split]
        out = {"episodes": len(r["accuracy"]), "ways": r["ways"],
               "shots": self.settings["shots"]}
        rng = np.random.default_rng(self.spec.seed)
        for metric in ("f1_weighted", "accuracy"):
            values = np.asarray(r[metric])
            means = rng.choice(values, size=(1000, len(values))).mean(1)
            out[metric] = float(values.mean())
            out[f"{metric}_ci_low"], out[f"{metric}_ci_high"] = (
                float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))
        return out

    def probe_val_loss(self) -> float:
        return float(np.mean(self.results["val"]["nll"]))

    def export(self) -> Path | None:
        return None  # episodes, not per-image predictions


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> float:
    """Support-weighted F1 of single-label predictions (scikit-learn's ``f1_score(...,
    average="weighted")``, zero where a class has no prediction). Written out because an
    episode is tiny and there are hundreds per run: the library call's checks dominate."""
    confusion = np.bincount(y_true * classes + y_pred, minlength=classes * classes).reshape(
        classes, classes)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(1)
    denominator = support + confusion.sum(0)
    f1 = np.divide(2 * tp, denominator, out=np.zeros(classes), where=denominator > 0)
    return float((f1 * support).sum() / max(1, support.sum()))


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def train_probe(task: ProbeTask, progress=None) -> TrainResult:
    """Run a scikit-learn or few-shot probe: features, fit, scores, export (no epochs)."""
    from .cost import CostMeter

    meter = CostMeter(task.ctx.device).__enter__()
    t0 = time.perf_counter()
    task.setup()
    t1 = time.perf_counter()
    task.fit()
    result = scored_result(task, meter, setup_s=t1 - t0, training_s=time.perf_counter() - t1,
                           val_loss=task.probe_val_loss, best_epoch=0, epochs_run=0,
                           trainable=None, history=[])
    if progress is not None:
        progress(1, math.nan, result.val_loss)
    return result


