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
            variant="few_shot:5", seed=42, lr=1e-4, options={"input_size": 224})


def spec(**changes) -> RunSpec:
    return RunSpec(**{**BASE, **changes})


def test_key_is_identical_in_fresh_interpreters():
    code = ("from marsbench.runs import RunSpec; print(RunSpec(dataset='mb-domars16k', "
            "model='efficientnet_lite0', regime='feature_extraction', variant='few_shot:5', seed=42, "
            "lr=1e-4, options={'input_size': 224}).key)")
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
        '{"augment":true,"batch_size":32,"dataset":"mb-domars16k","loss":"auto","lr":0.0001,'
        '"max_epochs":50,"model":"efficientnet_lite0","optimizer":"adamw",'
        '"options":{"fe_path":"cached","input_size":224},"patience":5,'
        '"regime":"feature_extraction","scheduler":"none","schema":"marsbench.RunSpec/2",'
        '"seed":42,"task":"classification","variant":"few_shot:5","weight_decay":0.05,'
        '"weights":"default"}'
    )
    assert spec().key == hashlib.sha256(canonical.encode()).hexdigest()


IDENTITY_CHANGES = {
    "dataset": "mb-landmark_cls", "model": "resnet101", "regime": "fine_tuning",
    "variant": "partition:0.10", "seed": 43, "lr": 1e-3, "batch_size": 64, "optimizer": "sgd",
    "weight_decay": 0.0, "scheduler": "cosine", "max_epochs": 100, "patience": 10, "loss": "ce",
    "augment": False, "weights": "sha256:abc", "options": {"input_size": 299},
    "subset_seed": 3, "precision": "bf16", "compile": True, "profile": "paper",
    "split": "observation_disjoint",
}
# task follows the dataset: changing it alone is refused (see test_task_must_match_the_dataset)
DERIVED_IDENTITY = {"task"}


def test_every_identity_field_is_covered():
    identity = {f.name for f in dataclasses.fields(RunSpec)} - set(NON_IDENTITY_FIELDS)
    assert identity == set(IDENTITY_CHANGES) | DERIVED_IDENTITY


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
    (dict(options={"input_size": "224"}), dict(options={"input_size": 224.0})),
    (dict(options={"fe_path": "cached", "input_size": 224}), dict()),
    (dict(loss="cross_entropy"), dict(loss="ce")),
    (dict(seed=42.0), dict(seed=42)),
])
def test_equivalent_spellings_share_a_key(a, b):
    assert spec(**a).key == spec(**b).key


def test_options_are_typed():
    assert spec().options.input_size == 224 and spec().options.fe_path == "cached"
    assert spec(regime="fine_tuning").options.fe_path is None


def test_dict_and_json_round_trip():
    s = spec(data_root="/data/mars", source="folder", scheduler="plateau")
    d = s.to_dict()
    back = RunSpec.from_dict(json.loads(json.dumps(d)))
    assert back == s and back.key == s.key
    assert back.data_root == "/data/mars" and back.source == "folder"
    assert back.to_dict() == d


@pytest.mark.parametrize("changes, error, match", [
    (dict(regime="linear_prob"), ValueError, "linear_probe"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=10**23), ValueError, "batch_size must be <= 16777216"),
    (dict(lr=0), ValueError, "lr"),
    (dict(lr=True), ValueError, "lr"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(seed=1.5), ValueError, "seed"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(seed=2**32), ValueError, "seed must be <= 4294967295"),
    (dict(augment="yes"), ValueError, "augment"),
    (dict(variant="few_shot"), ValueError, "variant"),
    (dict(model=" "), ValueError, "model"),
    (dict(optimizer="adagrad"), ValueError, "adam, adamw, sgd"),
    (dict(precision="fp8"), ValueError, "auto, fp32, bf16, fp16"),
    (dict(compile="yes"), ValueError, "compile"),
    (dict(loss="focal"), ValueError, "auto, ce, bce"),
    (dict(options={"input_sise": 224}), ValueError, "did you mean 'input_size'"),
])
def test_bad_values_are_refused(changes, error, match):
    with pytest.raises(error, match=match):
        spec(**changes)


def test_zero_shot_regime_for_models_scored_without_training():
    zs = spec(regime="zero_shot", options={"provider": "openai", "model_id": "gpt-x"})
    assert zs.regime == "zero_shot" and zs.options.model_id == "gpt-x"
    with pytest.raises(ValueError, match="not a zero_shot one"):
        spec(regime="zero_shot")  # input_size is a task option, not a zero-shot one


def test_from_dict_names_unknown_fields():
    d = spec().to_dict() | {"learning_rate": 0.1}
    with pytest.raises(ValueError, match="learning_rate"):
        RunSpec.from_dict(d)


def test_describe_and_replace():
    s = spec()
    assert s.replace(seed=7).seed == 7 and s.seed == 42
    text = s.describe()
    for part in ("mb-domars16k[few_shot:5]", "efficientnet_lite0", "feature_extraction", "seed=42",
                 "lr=0.0001", "input_size=224", "fe_path=cached"):
        assert part in text


@pytest.mark.parametrize("raw, expected", [
    ("99999999999999999999", 99999999999999999999), ("1e3", 1000), ("256.0", 256), (" 7 ", 7),
    (3.0, 3), (True, None), ("5.5", None), (1e20, None), ("x", None), (None, None)])
def test_integers_are_read_exactly_never_through_a_float(raw, expected):
    """Text of digits keeps every digit (through a float, 99999999999999999999 became 1e20 and a
    run silently used another number); floats beyond 2**53 are not taken as integers."""
    from marsbench.runs.fingerprint import exact_int

    assert exact_int(raw) == expected


def test_an_integer_option_or_seed_given_as_text_keeps_its_value():
    s = spec(seed="4294967295", regime="few_shot_episodes", options={"episodes": "999999"})
    assert s.seed == 4294967295 and s.options.episodes == 999999
    with pytest.raises(ValueError, match="option episodes must be at most 1000000 "):
        spec(regime="few_shot_episodes", options={"episodes": "99999999999999999999"})
