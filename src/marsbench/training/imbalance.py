"""Class-imbalance strategies of classification runs (run option ``imbalance``; docs/imbalance.md).

Every strategy starts from the training split's class frequencies (never val or test):

- ``inverse_frequency``: loss weight ``N / (C * n_c)`` per class (scikit-learn's ``balanced``;
  ``C`` counts the classes present in train);
- ``effective_number``: weight ``(1 - beta) / (1 - beta ** n_c)`` (Cui et al. 2019, the inverse
  of the effective number of samples), scaled to sum to ``C``; ``beta`` = `BETA`;
- ``balanced_sampler``: `torch.utils.data.WeightedRandomSampler` with weight ``1 / n_y`` per
  image (every class equally likely per draw), ``N`` draws with replacement per epoch, its
  generator seeded from the run seed;
- ``oversample``: every class topped up to the largest class's count (all its images plus
  random repeats); ``undersample``: every class cut to the smallest present class's count
  (drawn without replacement); both drawn once from the run seed;
- ``logit_adjustment``: the training loss sees ``logits + tau * log(prior)`` (Menon et al.
  2021), ``tau`` = `TAU`; predictions use the raw logits;
- ``focal``: ``-(1 - p_t) ** gamma * log(p_t)``, ``gamma`` = `GAMMA`.

Single-label heads with one logit (binary, ``loss`` auto/bce) and multi-label heads treat each
label as a binary problem of negatives and positives: the weights become per-element weights of
the two outcomes, the logit adjustment adds ``tau * log(n_pos / n_neg)``, focal is
`torchvision.ops.sigmoid_focal_loss` (no alpha). The samplers need one class per image and are
refused on multi-label datasets. Weighted losses are weighted means (``sum w l / sum w``), as
`torch.nn.CrossEntropyLoss` with ``weight``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import WeightedRandomSampler

from ..errors import OptionError
from ..runs.options import check_imbalance_regime
from ..vocab import IMBALANCE_STRATEGIES

BETA = 0.999  # effective number of samples (Cui et al. 2019 tried 0.9 to 0.9999)
GAMMA = 2.0  # focal loss (Lin et al. 2017)
TAU = 1.0  # logit adjustment (Menon et al. 2021)

WEIGHTING = ("inverse_frequency", "effective_number")
SAMPLING = ("balanced_sampler", "oversample", "undersample")
LOSS_CHANGING = (*WEIGHTING, "logit_adjustment", "focal")
MULTILABEL_STRATEGIES = ("none", *LOSS_CHANGING)


# -- the numbers --------------------------------------------------------------------------------

def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Training images per class (class indices), or positives per label (multi-hot rows)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return labels.sum(0).astype(np.int64)
    return np.bincount(labels.astype(np.int64), minlength=num_classes)


def inverse_frequency_weights(counts: np.ndarray) -> np.ndarray:
    """``N / (C * n_c)`` over the present classes; 0 for a class absent from train."""
    counts = np.asarray(counts, dtype=float)
    present = counts > 0
    out = np.zeros_like(counts)
    out[present] = counts.sum() / (present.sum() * counts[present])
    return out


def effective_number_weights(counts: np.ndarray, beta: float = BETA) -> np.ndarray:
    """``(1 - beta) / (1 - beta ** n_c)``, scaled to sum to the number of present classes."""
    counts = np.asarray(counts, dtype=float)
    present = counts > 0
    out = np.zeros_like(counts)
    out[present] = (1 - beta) / (1 - beta ** counts[present])
    return out * present.sum() / out.sum()


def oversample_indices(labels: np.ndarray, seed: int) -> np.ndarray:
    """Every present class topped up to the largest count: its images once, plus repeats drawn
    with replacement (reproducible from ``seed``); sorted."""
    labels = np.asarray(labels).astype(np.int64)
    rng = np.random.default_rng([seed, 1])
    top = np.bincount(labels).max()
    parts = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        parts += [idx, rng.choice(idx, size=top - len(idx), replace=True)]
    return np.sort(np.concatenate(parts))


def undersample_indices(labels: np.ndarray, seed: int) -> np.ndarray:
    """Every present class cut to the smallest present count, drawn without replacement
    (reproducible from ``seed``); sorted."""
    labels = np.asarray(labels).astype(np.int64)
    rng = np.random.default_rng([seed, 2])
    counts = np.bincount(labels)
    low = counts[counts > 0].min()
    parts = [rng.choice(np.flatnonzero(labels == c), size=low, replace=False)
             for c in np.unique(labels)]
    return np.sort(np.concatenate(parts))


def balanced_sampler(labels: np.ndarray, seed: int) -> WeightedRandomSampler:
    """``len(labels)`` draws per epoch with replacement, weight ``1 / n_y`` per image; the
    sampler's generator is seeded from ``seed`` (the same draws for the same run)."""
    labels = np.asarray(labels).astype(np.int64)
    counts = np.bincount(labels)
    weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True,
                                 generator=torch.Generator().manual_seed(seed))


# -- the losses ---------------------------------------------------------------------------------

def softmax_focal_loss(logits: torch.Tensor, target: torch.Tensor,
                       gamma: float = GAMMA) -> torch.Tensor:
    """Mean ``-(1 - p_t) ** gamma * log p_t`` over the batch. Written out: torchvision has only
    the sigmoid (one-vs-rest) focal loss, which is not the multi-class softmax one."""
    log_p = F.log_softmax(logits, dim=1).gather(1, target.long().view(-1, 1)).squeeze(1)
    return (-(1 - log_p.exp()) ** gamma * log_p).mean()


def _weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


@dataclass
class ImbalancePlan:
    """One run's strategy with its numbers from the training labels (`plan_for`)."""

    strategy: str
    counts: np.ndarray  # per class (softmax) or positives per label (sigmoid)
    total: int  # training images
    sigmoid: bool  # one logit per label (binary one-logit, multi-label) or softmax
    seed: int
    labels: np.ndarray | None = None  # class indices, for the samplers

    # per-outcome weights: softmax (C,), sigmoid (2, L): row 0 negatives, row 1 positives
    def weights(self) -> np.ndarray | None:
        if self.strategy not in WEIGHTING:
            return None
        fn = (inverse_frequency_weights if self.strategy == "inverse_frequency"
              else effective_number_weights)
        if not self.sigmoid:
            return fn(self.counts)
        return np.stack([fn(np.array([self.total - p, p])) for p in self.counts], axis=1)

    def offsets(self) -> np.ndarray | None:
        """Logit adjustment: ``tau * log(n_c / N)`` (softmax) or ``tau * log(n_pos / n_neg)``
        (sigmoid); a class (outcome) absent from train counts as one image, so the log stays
        finite."""
        if self.strategy != "logit_adjustment":
            return None
        if self.sigmoid:
            pos = np.maximum(self.counts, 1)
            neg = np.maximum(self.total - self.counts, 1)
            return TAU * np.log(pos / neg)
        return TAU * np.log(np.maximum(self.counts, 1) / self.total)

    def loss(self, base: Callable) -> Callable:
        """The training (and early-stopping) criterion: ``base`` for ``none`` and the
        samplers, else the strategy's loss on the same logits and targets."""
        if self.strategy not in LOSS_CHANGING:
            return base
        fn = self._loss()
        return lambda logits, y: fn(logits.float(), y)  # fp32, also from an autocast head

    def _loss(self) -> Callable:
        weights, offsets = self.weights(), self.offsets()
        if self.sigmoid:
            return self._sigmoid_loss(weights, offsets)
        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float32)
            return lambda logits, y: F.cross_entropy(logits, y, weight=w.to(logits.device))
        if offsets is not None:
            o = torch.as_tensor(offsets, dtype=torch.float32)
            return lambda logits, y: F.cross_entropy(logits + o.to(logits.device), y)
        return softmax_focal_loss

    def _sigmoid_loss(self, weights, offsets) -> Callable:
        from torchvision.ops import sigmoid_focal_loss

        def shaped(logits: torch.Tensor, y: torch.Tensor):
            y = y.float()
            return (logits.view(-1), y.view(-1)) if y.dim() == 1 else (logits, y)

        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float32)

            def weighted(logits, y):
                logits, y = shaped(logits, y)
                wd = w.to(logits.device)
                elem = y * wd[1] + (1 - y) * wd[0]
                losses = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
                return _weighted_mean(losses, elem)
            return weighted
        if offsets is not None:
            o = torch.as_tensor(offsets, dtype=torch.float32)

            def adjusted(logits, y):
                logits, y = shaped(logits, y)
                return F.binary_cross_entropy_with_logits(logits + o.to(logits.device), y)
            return adjusted

        def focal(logits, y):
            logits, y = shaped(logits, y)
            return sigmoid_focal_loss(logits, y, alpha=-1, gamma=GAMMA, reduction="mean")
        return focal

    # -- sampling -----------------------------------------------------------------------------
    def indices(self) -> np.ndarray | None:
        """The resampled training set (``oversample`` / ``undersample``), else None."""
        if self.strategy == "oversample":
            return oversample_indices(self.labels, self.seed)
        if self.strategy == "undersample":
            return undersample_indices(self.labels, self.seed)
        return None

    def sampler(self) -> WeightedRandomSampler | None:
        return balanced_sampler(self.labels, self.seed) if self.strategy == "balanced_sampler" \
            else None

    def class_weight(self) -> dict[int, float] | None:
        """The weights as scikit-learn's ``class_weight`` (present classes only), for
        ``linear_probe``; None where the strategy has none."""
        w = self.weights()
        if w is None:
            return None
        w = w[:, 0] if self.sigmoid else w
        return {c: float(v) for c, v in enumerate(w) if v > 0}

    def record(self) -> dict:
        """The effective parameters, for the run record's ``extra['imbalance']``."""
        out: dict = {"strategy": self.strategy, "train_counts": self.counts.tolist(),
                     "train_images": self.total,
                     "per": "label (negatives, positives)" if self.sigmoid else "class"}
        weights, offsets = self.weights(), self.offsets()
        if weights is not None:
            out["weights"] = np.round(weights, 6).tolist()
        if self.strategy == "effective_number":
            out["beta"] = BETA
        if offsets is not None:
            out |= {"tau": TAU, "logit_offsets": np.round(offsets, 6).tolist()}
        if self.strategy == "focal":
            out["gamma"] = GAMMA
            out["focal"] = ("torchvision.ops.sigmoid_focal_loss, alpha=-1" if self.sigmoid
                            else "softmax focal loss")
        indices = self.indices()
        if indices is not None:
            out["resampled_images"] = int(len(indices))
            out["resampled_counts"] = np.bincount(self.labels[indices],
                                                  minlength=len(self.counts)).tolist()
        if self.strategy == "balanced_sampler":
            out["sampler"] = {"draws_per_epoch": self.total, "replacement": True,
                              "seed": self.seed}
        return out


def check_dataset(strategy: str, *, multilabel: bool, regime: str | None,
                  where: str = "run options") -> None:
    """Refuse, in one line, a strategy this run's regime or label kind cannot use."""
    check_imbalance_regime(strategy, regime, where)
    if multilabel and strategy not in MULTILABEL_STRATEGIES:
        raise OptionError(f"option imbalance={strategy} is not possible on a multi-label "
                          "dataset", where=where, value=f"imbalance={strategy}",
                          option="imbalance",
                          fix="an image has several labels, so no class can be sampled; use "
                              f"{', '.join(MULTILABEL_STRATEGIES[1:])} (per label)")
    if multilabel and regime == "linear_probe" and strategy != "none":
        raise OptionError(f"option imbalance={strategy} is not possible with regime "
                          "linear_probe on a multi-label dataset", where=where,
                          value=f"imbalance={strategy}", option="imbalance",
                          fix="use regime mlp_probe or feature_extraction (per-label weights)")


def plan_for(strategy: str, labels: np.ndarray, *, num_classes: int, multilabel: bool,
             num_outputs: int, seed: int, regime: str | None = None,
             where: str = "run options") -> ImbalancePlan:
    """The plan of a run from its training labels (class indices or multi-hot rows)."""
    if strategy not in IMBALANCE_STRATEGIES:
        raise OptionError("invalid value for option imbalance", where=where, value=strategy,
                          option="imbalance", fix=f"use one of {', '.join(IMBALANCE_STRATEGIES)}")
    check_dataset(strategy, multilabel=multilabel, regime=regime, where=where)
    labels = np.asarray(labels)
    counts = class_counts(labels, num_classes)
    sigmoid = multilabel or num_outputs == 1
    if sigmoid and not multilabel:  # one-logit binary: positives are class 1
        counts = counts[1:2]
    return ImbalancePlan(strategy, counts, int(len(labels)), sigmoid, seed,
                         labels=None if multilabel else labels.astype(np.int64))
