"""RunSpec identity: a stable hash across processes, sensitive to what was run and nothing else."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import pytest

from marsbench.runs import RunSpec
from marsbench.runs.spec import NON_IDENTITY_FIELDS

BASE = dict(dataset="mb-domars16k", model="efficientnet_lite0", regime="feature_extraction",
            variant="few_shot:5", seed=42, lr=1e-4, extra={"image_size": 224, "freeze_bn": True})


def spec(**changes) -> RunSpec:
    return RunSpec(**{**BASE, **changes})


def test_key_is_identical_in_fresh_interpreters():
    code = ("from marsbench.runs import RunSpec; print(RunSpec(dataset='mb-domars16k', "
            "model='efficientnet_lite0', regime='feature_extraction', variant='few_shot:5', seed=42, "
            "lr=1e-4, extra={'freeze_bn': True, 'image_size': 224}).key)")
    keys = set()
    for hash_seed in ("0", "987654"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True, timeout=120)
        keys.add(out.stdout.strip())
    assert keys == {spec().key}


def test_key_is_the_sha256_of_the_documented_canonical_json():
    # Every stored record is found by this hash. If this fails, keys changed for existing stores:
    # bump SPEC_SCHEMA on purpose (and plan a migration), never by accident.
    canonical = (
        '{"augment":true,"batch_size":32,"dataset":"mb-domars16k",'
        '"extra":{"freeze_bn":"true","image_size":"224"},"loss":"auto","lr":0.0001,'
        '"max_epochs":50,"model":"efficientnet_lite0","optimizer":"adamw","patience":5,'
        '"regime":"feature_extraction","scheduler":"none","schema":"marsbench.RunSpec/1",'
        '"seed":42,"variant":"few_shot:5","weight_decay":0.05,"weights":"default"}'
    )
    assert spec().key == hashlib.sha256(canonical.encode()).hexdigest()
    assert spec().key == "5ce6b60c477cac1281fb7205c6c3132ea8e3790e415697e034c9aaa6c3cd83c6"


IDENTITY_CHANGES = {
    "dataset": "mb-landmark_cls", "model": "resnet101", "regime": "fine_tuning",
    "variant": "partition:0.10", "seed": 43, "lr": 1e-3, "batch_size": 64, "optimizer": "sgd",
    "weight_decay": 0.0, "scheduler": "cosine", "max_epochs": 100, "patience": 10, "loss": "ce",
    "augment": False, "weights": "sha256:abc", "extra": {"image_size": 299, "freeze_bn": True},
}


def test_every_identity_field_is_covered():
    identity = {f.name for f in dataclasses.fields(RunSpec)} - set(NON_IDENTITY_FIELDS)
    assert identity == set(IDENTITY_CHANGES)


@pytest.mark.parametrize("name", sorted(IDENTITY_CHANGES))
def test_changing_an_identity_field_changes_the_key(name):
    changed = spec(**{name: IDENTITY_CHANGES[name]})
    assert changed.key != spec().key
    assert changed != spec()


def test_all_changed_keys_are_distinct():
    keys = {spec(**{k: v}).key for k, v in IDENTITY_CHANGES.items()} | {spec().key}
    assert len(keys) == len(IDENTITY_CHANGES) + 1


def test_where_the_data_lives_is_not_identity():
    a = spec(data_root="/data/a", source="folder")
    b = spec(data_root="/mnt/elsewhere", source="hf")
    assert a.key == b.key == spec().key
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1


@pytest.mark.parametrize("a, b", [
    (dict(lr=0.1 + 0.2), dict(lr=0.3)),
    (dict(lr=1e-3), dict(lr="0.001")),
    (dict(weight_decay=0), dict(weight_decay=0.0)),
    (dict(variant="partition:0.1"), dict(variant="partition:0.10")),
    (dict(variant="few-shot:5"), dict(variant="few_shot:5")),
    (dict(optimizer="AdamW", scheduler="Cosine"), dict(optimizer="adamw", scheduler="cosine")),
    (dict(regime="feature-extraction"), dict(regime="feature_extraction")),
    (dict(extra={"b": "1", "a": "2"}), dict(extra=(("a", "2"), ("b", "1")))),
    (dict(seed=42.0), dict(seed=42)),
])
def test_equivalent_spellings_share_a_key(a, b):
    assert spec(**a).key == spec(**b).key


def test_extra_values_keep_their_type_in_the_key():
    assert spec(extra={"k": 1}).key != spec(extra={"k": "x"}).key
    assert dict(spec(extra={"k": 1, "f": 0.5, "t": True}).extra) == {"k": "1", "f": "0.5", "t": "true"}


def test_dict_and_json_round_trip():
    s = spec(data_root="/data/mars", source="folder", scheduler="plateau")
    d = s.to_dict()
    back = RunSpec.from_dict(json.loads(json.dumps(d)))
    assert back == s and back.key == s.key
    assert back.data_root == "/data/mars" and back.source == "folder"
    assert back.to_dict() == d


@pytest.mark.parametrize("changes, error, match", [
    (dict(regime="linear_probe"), ValueError, "feature_extraction"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(lr=0), ValueError, "lr"),
    (dict(lr=True), TypeError, "lr"),
    (dict(lr=float("nan")), TypeError, "lr"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(augment="yes"), TypeError, "augment"),
    (dict(variant="few_shot"), ValueError, "variant"),
    (dict(model=" "), ValueError, "model"),
    (dict(extra=[("a", 1), ("a", 2)]), ValueError, "twice"),
])
def test_bad_values_are_refused(changes, error, match):
    with pytest.raises(error, match=match):
        spec(**changes)


def test_zero_shot_regime_for_models_scored_without_training():
    assert spec(regime="zero_shot").regime == "zero_shot"


def test_from_dict_names_unknown_fields():
    d = spec().to_dict() | {"learning_rate": 0.1}
    with pytest.raises(ValueError, match="learning_rate"):
        RunSpec.from_dict(d)


def test_describe_and_replace():
    s = spec()
    assert s.replace(seed=7).seed == 7 and s.seed == 42
    text = s.describe()
    for part in ("mb-domars16k[few_shot:5]", "efficientnet_lite0", "feature_extraction", "seed=42",
                 "lr=0.0001", "image_size=224"):
        assert part in text
