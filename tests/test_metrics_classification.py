"""Classification metrics against scikit-learn, computed independently here on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from marsbench.metrics import classification_metrics, predictions_from_logits

# An UndefinedMetricWarning would mean a zero_division case slipped through unhandled.
pytestmark = pytest.mark.filterwarnings("error")


def sk_weighted(t, p, n):
    return f1_score(t, p, labels=list(range(n)), average="weighted", zero_division=0)


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_random_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 7
    t = rng.integers(0, n, 60)
    p = np.where(rng.random(60) < 0.6, t, rng.integers(0, n, 60))  # better than chance
    m = classification_metrics(t, p, kind="multiclass", num_classes=n)
    assert m["f1_weighted"] == pytest.approx(sk_weighted(t, p, n))
    assert m["accuracy"] == pytest.approx(accuracy_score(t, p))
    present = sorted(set(t) | set(p))
    assert m["f1_macro"] == pytest.approx(f1_score(t, p, labels=present, average="macro", zero_division=0))
    per = f1_score(t, p, labels=list(range(n)), average=None, zero_division=0)
    assert list(m["per_class_f1"].values()) == pytest.approx(list(per))


def test_multiclass_hand_computed_example():
    # class 0: P=1 R=1/2 F=2/3 (support 2); class 1: P=1/3 R=1 F=1/2; class 2: F=0.
    m = classification_metrics([0, 0, 1, 2], [0, 1, 1, 1], kind="multiclass", num_classes=3,
                               class_names=["ael", "rou", "cli"])
    assert m["f1_weighted"] == pytest.approx((2 * 2 / 3 + 0.5 + 0) / 4)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["per_class_f1"] == pytest.approx({"ael": 2 / 3, "rou": 0.5, "cli": 0.0})


def test_classes_missing_from_targets_and_predictions():
    n = 6  # class 3 only predicted, class 5 nowhere
    t = np.array([0, 0, 1, 1, 2, 2, 2, 4])
    p = np.array([0, 3, 1, 1, 2, 0, 2, 4])
    m = classification_metrics(t, p, kind="multiclass", num_classes=n)
    assert m["f1_weighted"] == pytest.approx(sk_weighted(t, p, n))
    # Macro leaves out class 5 (absent from both: F1 undefined) but keeps class 3 (a false positive).
    assert m["f1_macro"] == pytest.approx(f1_score(t, p, labels=[0, 1, 2, 3, 4], average="macro"))
    assert m["f1_macro"] != pytest.approx(f1_score(t, p, labels=list(range(n)), average="macro",
                                                   zero_division=0))
    assert list(m["per_class_f1"]) == [str(i) for i in range(n)]
    assert m["per_class_f1"]["5"] == 0.0 and m["per_class_f1"]["3"] == 0.0


def test_multiclass_with_only_two_labels_present_is_still_weighted():
    # sklearn sees these as "binary" targets; the multiclass headline must stay support-weighted.
    t, p = np.array([0, 0, 0, 2, 2]), np.array([0, 2, 0, 2, 0])
    m = classification_metrics(t, p, kind="multiclass", num_classes=3)
    assert m["f1_weighted"] == pytest.approx(sk_weighted(t, p, 3))
    assert m["f1_weighted"] != pytest.approx(f1_score(t, p, pos_label=2, average="binary"))


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_all_predictions_one_class(kind):
    n = 3 if kind == "multiclass" else 2
    t = np.array([0, 1, 1, 0, 1, n - 1])
    for c in range(n):
        p = np.full_like(t, c)
        m = classification_metrics(t, p, kind=kind, num_classes=n)
        want = sk_weighted(t, p, n) if kind == "multiclass" else f1_score(t, p, zero_division=0)
        assert m["f1_weighted"] == pytest.approx(want)
        assert m["accuracy"] == pytest.approx(accuracy_score(t, p))


@pytest.mark.parametrize("kind", ["binary", "image_pair"])
def test_binary_headline_is_positive_class_f1(kind):
    rng = np.random.default_rng(3)
    t = (rng.random(80) < 0.3).astype(int)
    p = np.where(rng.random(80) < 0.7, t, 1 - t)
    m = classification_metrics(t, p, kind=kind, num_classes=2, class_names=["no change", "change"])
    positive = f1_score(t, p, average="binary", pos_label=1)
    assert m["f1_weighted"] == pytest.approx(positive)
    assert m["f1_weighted"] != pytest.approx(f1_score(t, p, average="weighted"))
    assert m["f1_macro"] == pytest.approx(f1_score(t, p, average="macro"))
    assert m["per_class_f1"]["change"] == pytest.approx(positive)


def test_binary_without_positives_anywhere_scores_zero():
    m = classification_metrics([0, 0, 0], [0, 0, 0], kind="binary", num_classes=2)
    assert m["f1_weighted"] == 0.0 and m["accuracy"] == 1.0 and m["f1_macro"] == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_multilabel_probabilities_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, labels = 40, 9
    t = (rng.random((n, labels)) < 0.25).astype(int)
    t[:, 8] = 0  # a label nobody has ...
    prob = np.clip(t * 0.6 + rng.random((n, labels)) * 0.5, 0, 1)
    prob[:, 8] = 0.1  # ... and nobody predicts
    hard = (prob > 0.5).astype(int)
    m = classification_metrics(t, prob, kind="multilabel", num_classes=labels)
    assert m["f1_weighted"] == pytest.approx(f1_score(t, hard, average="weighted", zero_division=0))
    assert m["accuracy"] == pytest.approx(accuracy_score(t, hard))  # subset accuracy
    present = [j for j in range(labels) if t[:, j].any() or hard[:, j].any()]
    assert 8 not in present
    assert m["f1_macro"] == pytest.approx(f1_score(t, hard, labels=present, average="macro", zero_division=0))
    per = f1_score(t, hard, average=None, zero_division=0)
    assert list(m["per_class_f1"].values()) == pytest.approx(list(per))
    # multi-hot predictions give the same numbers as the probabilities they came from
    assert classification_metrics(t, hard, kind="multilabel", num_classes=labels) == m


def test_multilabel_threshold_is_strict_and_accuracy_is_subset():
    t = np.array([[1, 0], [1, 1]])
    m = classification_metrics(t, np.array([[0.5, 0.0], [0.9, 0.8]]), kind="multilabel", num_classes=2)
    # 0.5 is not above the threshold: sample 0 misses label 0, so 1 of 2 samples is fully right
    # (label-wise accuracy would be 3/4).
    assert m["accuracy"] == 0.5
    assert m["per_class_f1"]["0"] == pytest.approx(f1_score([1, 1], [0, 1]))


def test_predictions_from_logits_binary_one_logit():
    pred, prob = predictions_from_logits(np.array([-2.0, 0.0, 3.0]), "binary")
    assert pred.tolist() == [0, 0, 1]  # sigmoid(0) = 0.5 is not > 0.5
    assert prob.shape == (3, 2) and np.allclose(prob.sum(1), 1)
    assert prob[2, 1] == pytest.approx(1 / (1 + np.exp(-3.0)))
    pred2, prob2 = predictions_from_logits(torch.tensor([[-2.0], [0.0], [3.0]], requires_grad=True), "image_pair")
    assert pred2.tolist() == pred.tolist() and np.allclose(prob2, prob)


def test_predictions_from_logits_multiclass_and_multilabel():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(20, 5)) * 3, dtype=torch.float32)
    pred, prob = predictions_from_logits(logits, "multiclass")
    assert pred.tolist() == logits.argmax(1).tolist()
    assert np.allclose(prob, torch.softmax(logits.double(), 1).numpy())
    pred, prob = predictions_from_logits(logits, "multilabel")
    assert np.array_equal(pred, (torch.sigmoid(logits.double()) > 0.5).int().numpy())
    assert np.allclose(prob, torch.sigmoid(logits.double()).numpy())
    t = (rng.random((20, 5)) < 0.5).astype(int)  # the two outputs agree inside the metric
    assert (classification_metrics(t, pred, kind="multilabel", num_classes=5)
            == classification_metrics(t, prob, kind="multilabel", num_classes=5))


def test_binary_two_logits_read_as_softmax():
    pred, prob = predictions_from_logits(np.array([[2.0, 1.0], [0.0, 1.0]]), "binary")
    assert pred.tolist() == [0, 1] and prob.shape == (2, 2)


@pytest.mark.parametrize("call, match", [
    (lambda: classification_metrics([0, 3], [0, 1], kind="multiclass", num_classes=3), r"y_true\[1\] = 3"),
    (lambda: classification_metrics([0, 1], [0, -1], kind="multiclass", num_classes=3), r"y_pred\[1\] = -1"),
    (lambda: classification_metrics([0, 1], [0.2, 0.9], kind="multiclass", num_classes=3), "integer"),
    (lambda: classification_metrics([0, 1], [0, 1, 1], kind="multiclass", num_classes=3), "samples"),
    (lambda: classification_metrics([0, 1], [0, 1], kind="binary", num_classes=3), "num_classes=2"),
    (lambda: classification_metrics([0, 1], [0, 1], kind="multiclass", num_classes=2,
                                    class_names=["a"]), "1 class names"),
    (lambda: classification_metrics([[1, 0]], [[2.3, -1.0]], kind="multilabel", num_classes=2), "logits"),
    (lambda: classification_metrics([[1, 2]], [[1, 0]], kind="multilabel", num_classes=2), "0 or 1"),
    (lambda: classification_metrics([0], [0], kind="regression", num_classes=2), "unknown"),
    (lambda: classification_metrics([], [], kind="multiclass", num_classes=2), "non-empty"),
])
def test_bad_inputs_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_each_reference_definition_has_its_own_name():
    """The reference's binary "f1_macro" (positive-class F1) and multi-label "accuracy"
    (label-wise) are returned as f1_positive and accuracy_labelwise; scikit-learn as oracle."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss

    from marsbench.metrics.classification import classification_metrics

    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    binary = classification_metrics(t, p, kind="binary", num_classes=2)
    assert binary["f1_positive"] == f1_score(t, p)
    assert binary["f1_macro"] == f1_score(t, p, average="macro")  # ours: both classes
    tm, pm = rng.integers(0, 2, (40, 5)), rng.integers(0, 2, (40, 5))
    multi = classification_metrics(tm, pm, kind="multilabel", num_classes=5)
    assert multi["accuracy_labelwise"] == pytest.approx(1 - hamming_loss(tm, pm), abs=1e-12)
    assert multi["accuracy_subset"] == multi["accuracy"] == accuracy_score(tm, pm)
    assert "f1_positive" not in multi and "accuracy_labelwise" not in binary


def test_imbalance_metrics_against_scikit_learn():
    """Balanced accuracy is scikit-learn's; head/medium/tail recall average the per-class
    recall of the training-frequency terciles."""
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score, recall_score

    from marsbench.metrics.classification import imbalance_metrics

    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 6, 200), rng.integers(0, 6, 200)
    counts = [500, 10, 300, 5, 80, 1]  # head: 0, 2; medium: 4, 1; tail: 3, 5
    out = imbalance_metrics(t, p, counts, kind="multiclass")
    recall = recall_score(t, p, average=None)
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(t, p))
    assert out["recall_head"] == pytest.approx((recall[0] + recall[2]) / 2)
    assert out["recall_medium"] == pytest.approx((recall[4] + recall[1]) / 2)
    assert out["recall_tail"] == pytest.approx((recall[3] + recall[5]) / 2)
    tm, pm = rng.integers(0, 2, (60, 3)), rng.integers(0, 2, (60, 3))
    multi = imbalance_metrics(tm, pm, [50, 5, 20], kind="multilabel")
    assert multi["recall_head"] == pytest.approx(recall_score(tm[:, 0], pm[:, 0]))
    assert multi["recall_tail"] == pytest.approx(recall_score(tm[:, 1], pm[:, 1]))


def test_balanced_accuracy_of_a_prediction_of_a_class_absent_from_the_test_set_is_silent():
    """A run predicting a class no test image has is ordinary (small test splits): the score is
    scikit-learn's (the mean recall over the test set's classes), with no warning on stderr."""
    import warnings

    import numpy as np
    from sklearn.metrics import recall_score

    from marsbench.metrics.classification import imbalance_metrics

    t, p = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])  # class 2 is in no test example
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = imbalance_metrics(t, p, [5, 5, 5], kind="multiclass")
    assert out["balanced_accuracy"] == pytest.approx(
        np.mean(recall_score(t, p, labels=[0, 1], average=None)))
