"""Scores of zero-shot answers, with unparseable answers counted as wrong, checked against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from marsbench.catalog import get_card
from marsbench.sources.samples import SegmentationSample
from marsbench.vlm import load_prompt, score, target_of

DOMARS = list(get_card("mb-domars16k").class_names)


def test_multiclass_unparseable_is_a_miss_and_a_false_positive_for_no_class():
    prompt = load_prompt("mb-domars16k").render(DOMARS)
    y_true = [0, 1, 2, 2, 13, 13, 5]
    pred = [0, 1, None, 2, 13, None, 6]
    m = score(y_true, pred, prompt, kind="multiclass", class_names=DOMARS)
    y_pred = [-1 if p is None else p for p in pred]  # -1: a class outside the label set
    assert m["f1_weighted"] == pytest.approx(
        f1_score(y_true, y_pred, labels=list(range(15)), average="weighted", zero_division=0))
    present = sorted(set(y_true) | {p for p in pred if p is not None})
    assert m["f1_macro"] == pytest.approx(
        f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert set(m["per_class_f1"]) == set(DOMARS)


def test_binary_unparseable_is_the_opposite_class():
    names = ["no_change", "change"]
    prompt = load_prompt("mb-change_cls_ctx").render(names)
    y_true = [1, 1, 0, 0, 1]
    m = score(y_true, [1, None, None, 0, 1], prompt, kind="image_pair", class_names=names)
    assert m["f1_weighted"] == pytest.approx(f1_score(y_true, [1, 0, 1, 0, 1]))


def test_multilabel_unparseable_flips_every_label():
    names = list(get_card("mb-surface_multi_label_cls").class_names)
    prompt = load_prompt("mb-surface_multi_label_cls").render(names)
    t = np.zeros((3, 25), np.int64)
    t[0, [3, 21]] = 1
    t[1, [4]] = 1
    t[2, [3]] = 1
    m = score(list(t), [(3, 21), None, (3, 4)], prompt, kind="multilabel", class_names=names)
    p = np.zeros((3, 25), np.int64)
    p[0, [3, 21]] = 1
    p[1] = 1 - t[1]
    p[2, [3, 4]] = 1
    assert m["f1_weighted"] == pytest.approx(
        f1_score(t, p, average="weighted", zero_division=0))


def test_presence_targets_come_from_the_mask():
    names = list(get_card("mb-crater_multi_seg").class_names)
    prompt = load_prompt("mb-crater_multi_seg").render(names)
    mask = np.array([[0, 0, 2], [2, 4, 255]])  # 255: an ignore value, not a class
    sample = SegmentationSample("s", np.zeros((2, 3, 1), np.uint8), mask)
    assert target_of(sample, prompt).tolist() == [0, 1, 0, 1]  # other, layered, buried, secondary
    assert target_of(sample, prompt, min_pixels=2).tolist() == [0, 1, 0, 0]
