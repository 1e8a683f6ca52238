"""Typed run options: validated once where a spec or experiment is built, never silently ignored;
schema-1 records stay readable under their old keys; one folder is one dataset identity."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from marsbench.catalog import Variant
from marsbench.errors import OptionError
from marsbench.protocol import parse_experiment
from marsbench.protocol.experiment import ExperimentError
from marsbench.runs import RunRecord, RunSpec
from marsbench.runs.options import (
    ClassificationOptions,
    DetectionOptions,
    SegmentationOptions,
    build_options,
)

CLS = dict(dataset="mb-domars16k", model="efficientnet_lite0", regime="feature_extraction")
SEG = dict(dataset="mb-boulder_seg", model="unet_resnet34", regime="feature_extraction")
DET = dict(dataset="mb-boulder_det", model="fasterrcnn_resnet50_fpn", regime="fine_tuning")


@pytest.mark.parametrize("base, options, loss, match", [
    # unknown names: a did-you-mean within the task, or the task the name belongs to
    (SEG, {"tile_sise": 256}, "auto", "did you mean 'tile_size'"),
    (CLS, {"input_sise": 64}, "auto", "did you mean 'input_size'"),
    (DET, {"fe_path": "cached"}, "auto",
     "classification and segmentation option, not a detection one"),
    (CLS, {"tile_size": 256}, "auto", "segmentation and detection option"),
    # invalid values list the valid ones
    (SEG, {"input_policy": "crop"}, "auto", "native, tile, reference"),
    (CLS, {"fe_path": "lazy"}, "auto", "cached, online"),
    (SEG, {"input_policy": "tile", "tile_size": "big"}, "auto", "must be an integer"),
    (SEG, {"input_policy": "tile", "tile_size": "256.5"}, "auto", "must be an integer"),
    (SEG, {"input_policy": "tile", "tile_size": 250}, "auto", "multiple of 32"),
    (SEG, {"input_policy": "tile", "tile_overlap": "inf"}, "auto", "finite"),
    (SEG, {"input_policy": "tile", "tile_overlap": 1.0}, "auto", r"\[0, 1\)"),
    (CLS, {"input_size": 0}, "auto", ">= 1"),
    (DET, {"drop_negatives": "maybe"}, "auto", "true or false"),
    (DET, {"min_size": 600, "max_size": 300}, "auto", "max_size must be >= min_size"),
    # options the run does not use
    (SEG, {"tile_size": 256}, "auto", "applies to input_policy=tile only"),
    (SEG, {"input_size": 256}, "auto", "applies to input_policy=reference only"),
    (SEG, {"dice_weighting": "simple"}, "ce", "applies to loss dice or combined only"),
    (SEG | {"regime": "fine_tuning"}, {"fe_path": "online"}, "auto", "feature_extraction only"),
    # ... or cannot honour: random tiles change every epoch, their features cannot be cached
    (SEG, {"input_policy": "tile", "fe_path": "cached"}, "auto",
     "fe_path=cached is not possible with input_policy=tile"),
    (DET, {"tile_size": 256}, "auto", "applies to input_policy=tile only"),
])
def test_bad_options_are_refused_with_the_fix(base, options, loss, match):
    with pytest.raises(OptionError, match=match) as info:
        RunSpec(**base, options=options, loss=loss)
    assert "\n" not in str(info.value)


def test_fe_path_belongs_to_feature_extraction_only():
    with pytest.raises(OptionError, match="feature_extraction only"):
        RunSpec(**(CLS | {"regime": "fine_tuning"}), options={"fe_path": "online"})
    assert RunSpec(**CLS).options.fe_path == "cached"  # the default, recorded
    assert RunSpec(**CLS, options={"fe_path": "Online"}).options.fe_path == "online"
    assert RunSpec(**(CLS | {"regime": "scratch"})).options == ClassificationOptions()


@pytest.mark.parametrize("base, loss, match", [
    (CLS, "focal", "auto, ce, bce"),
    (SEG, "focal", "auto, ce, dice, combined"),
    (DET, "ce", "use one of auto"),
    (CLS, "bce", "binary and multi-label"),                       # 15-class DoMars16k
    (CLS | {"dataset": "mb-surface_multi_label_cls"}, "ce", "multi-label"),
])
def test_loss_is_checked_against_the_task(base, loss, match):
    with pytest.raises(OptionError, match=match):
        RunSpec(**base, loss=loss)


def test_loss_aliases_share_one_name_and_key():
    a = RunSpec(**SEG, loss="ce+dice", options={"dice_weighting": "uniform"})
    b = RunSpec(**SEG, loss="combined", options={"dice_weighting": "uniform"})
    assert a.loss == "combined" and a.key == b.key


def test_each_task_gets_its_own_typed_options():
    assert isinstance(RunSpec(**SEG).options, SegmentationOptions)
    det = RunSpec(**DET, options={"annotation_format": "COCO", "drop_negatives": "true"})
    assert isinstance(det.options, DetectionOptions)
    assert det.options.annotation_format == "coco" and det.options.drop_negatives is True
    with pytest.raises(OptionError, match="segmentation options given to a classification run"):
        build_options("classification", SegmentationOptions(input_policy="tile"))


def test_a_default_valued_option_does_not_change_the_key():
    assert RunSpec(**SEG, options={"input_policy": "native"}).key == RunSpec(**SEG).key
    assert RunSpec(**SEG, options={"input_policy": "tile"}).key != RunSpec(**SEG).key


@pytest.mark.parametrize("variant, match", [
    ("few_shot:999", "does not publish"),
    ("few_shot:0", "k >= 1"),
    ("partition:0.00001", "4 decimals"),
])
def test_variants_are_checked_when_the_spec_is_built(variant, match):
    with pytest.raises(OptionError, match=match):
        RunSpec(**CLS, variant=variant)


def test_unpublished_variant_with_a_subset_seed_is_a_recorded_draw():
    spec = RunSpec(**CLS, variant="few_shot:999", subset_seed=3)
    assert spec.subset_seed == 3 and spec.key != RunSpec(**CLS, variant="few_shot:999",
                                                         subset_seed=4).key
    with pytest.raises(OptionError, match="classification only"):
        RunSpec(**SEG, variant="few_shot:5")


def test_partition_fractions_are_kept_exact():
    assert str(Variant.parse("partition:0.015")) == "partition:0.015"
    assert Variant.parse("partition:0.015").folder_csv == "partitions/0.015x_partition.csv"
    assert str(Variant.parse("partition:0.1")) == "partition:0.10"
    assert Variant.parse("partition:0.015") != Variant.parse("partition:0.01")


# -- schema 1 ----------------------------------------------------------------------------------

def _legacy_record(spec_fields: dict, task: str) -> dict:
    record = RunRecord.success(RunSpec(**CLS), metrics={"test": {"f1_weighted": 0.5}})
    d = json.loads(record.to_json())
    d["spec"] = spec_fields | {"schema": "marsbench.RunSpec/1"}
    d["spec_key"] = "0" * 64  # what the schema-1 store recorded: kept as it was
    d["task"] = task
    return d


def test_schema_1_records_stay_readable_under_their_old_key():
    old = dict(dataset="mb-boulder_seg", model="unet_resnet34", regime="feature_extraction",
               variant="full", seed=0, lr=1e-3, batch_size=8, optimizer="adamw",
               weight_decay=0.05, scheduler="none", max_epochs=5, patience=2, loss="auto",
               augment=True, weights="default", data_root=None, source="auto",
               extra={"input_policy": "tile", "tile_size": "256", "fe_path": "cached",
                      "tile_sise": "128", "subset_seed": "7"})
    back = RunRecord.from_dict(_legacy_record(old, "segmentation"))
    assert back.spec_key == "0" * 64  # never silently re-keyed
    # schema-1 segmentation ran the encoder every step: fe_path=online, whatever extra said
    assert back.spec.options == SegmentationOptions(input_policy="tile", tile_size=256,
                                                    fe_path="online")
    assert back.spec.subset_seed == 7
    # what a schema-1 segmentation run could not have used is kept, not guessed at
    assert dict(back.spec.legacy_extra) == {"fe_path": "cached", "tile_sise": "128"}
    assert "tile_sise=128(schema-1, unused)" in back.spec.describe()


# -- dataset identity --------------------------------------------------------------------------

def test_three_spellings_of_one_folder_are_one_run(tmp_path, monkeypatch, synth_suite):
    folder = tmp_path / "data" / "my_landmarks"
    shutil.copytree(synth_suite["folder"]["mb-landmark_cls"], folder)
    monkeypatch.chdir(tmp_path)
    spellings = [str(folder), "data/my_landmarks", "./data/../data/my_landmarks/"]
    specs = [RunSpec(dataset=s, model="efficientnet_lite0", regime="scratch") for s in spellings]
    assert {s.key for s in specs} == {specs[0].key}
    assert {s.dataset for s in specs} == {"my_landmarks"}
    assert specs[0].task == "classification"
    assert specs[0].data_root == str((tmp_path / "data").resolve())


# -- experiment files --------------------------------------------------------------------------

def _exp(body: str, tmp_path) -> ExperimentError:
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(body))
    with pytest.raises(ExperimentError) as info:
        parse_experiment(path.read_text(), path=path)
    return info.value


def test_experiment_options_are_validated_at_their_line(tmp_path):
    err = _exp("""\
        datasets: [mb-boulder_seg]
        models: [unet_resnet34]
        grid_defaults: single
        options:
          input_policy: tile
          tile_sise: 256
        """, tmp_path)
    assert "exp.yaml:6" in str(err) and "did you mean 'tile_size'" in str(err)


def test_experiment_model_options_and_extra_rename(tmp_path):
    err = _exp("""\
        datasets: [mb-domars16k]
        models:
          - {name: efficientnet_lite0, options: {fe_path: lazy}}
        grid_defaults: single
        """, tmp_path)
    assert "exp.yaml:3" in str(err) and "cached, online" in str(err)
    err = _exp("""\
        datasets: [mb-domars16k]
        models: [efficientnet_lite0]
        extra: {input_size: 64}
        """, tmp_path)
    assert "renamed 'options'" in str(err)


def test_experiment_loss_and_variant_errors(tmp_path):
    err = _exp("""\
        datasets: [mb-domars16k]
        models: [efficientnet_lite0]
        grid_defaults: single
        grid: {loss: [focal]}
        """, tmp_path)
    assert "exp.yaml:4" in str(err) and "auto, ce, bce" in str(err)
    err = _exp("""\
        datasets: [{name: mb-domars16k, variants: [few_shot:999]}]
        models: [efficientnet_lite0]
        grid_defaults: single
        """, tmp_path)
    assert "exp.yaml:1" in str(err) and "does not publish" in str(err)


def test_fe_path_goes_to_feature_extraction_runs_only(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("datasets: [mb-domars16k]\nmodels: [efficientnet_lite0]\n"
                    "regimes: [scratch, feature_extraction]\nfe_path: online\n"
                    "grid_defaults: single\nseeds: [0]\n")
    from marsbench.protocol.plan import grid_runs

    runs = {r.spec.regime: r.spec for r in grid_runs(parse_experiment(path.read_text(),
                                                                      path=path))}
    assert runs["feature_extraction"].options.fe_path == "online"
    assert runs["scratch"].options.fe_path is None


# -- profiles ----------------------------------------------------------------------------------

def test_paper_profile_sets_the_reference_options_where_the_run_does_not():
    cls = RunSpec(**CLS, profile="paper")
    assert cls.options.fe_path == "online"  # the reference augments in feature extraction
    seg = RunSpec(**SEG, profile="paper")
    assert (seg.options.input_policy, seg.options.input_size) == ("reference", 224)
    det = RunSpec(**DET, profile="paper")
    assert det.options.drop_negatives is True and det.options.input_size == 224
    tiled = RunSpec(**SEG, profile="paper", options={"input_policy": "tile"})
    assert tiled.options.input_policy == "tile" and tiled.options.input_size is None
    assert RunSpec(**CLS, profile="paper").key != RunSpec(**CLS, options={"fe_path": "online"}).key
    assert "profile=paper" in cls.label and "profile" not in RunSpec(**CLS).identity()
    assert cls.replace(seed=9).options == cls.options  # rebuilding is idempotent
    with pytest.raises(OptionError, match="marsbench, paper"):
        RunSpec(**CLS, profile="reference")


def test_a_folder_dataset_in_an_experiment_keeps_its_root_through_the_seeds_stage(
        tmp_path, synth_suite):
    from marsbench.protocol.experiment import DatasetEntry, Experiment, ModelEntry
    from marsbench.protocol.plan import grid_runs, seed_runs

    folder = tmp_path / "own" / "my_frost"
    shutil.copytree(synth_suite["folder"]["mb-frost_cls"], folder)
    entry = DatasetEntry(str(folder))  # as Python callers (the demo) build it
    assert (entry.name, entry.root) == ("my_frost", str(folder.parent.resolve()))
    exp = Experiment(name="x", datasets=(entry,), models=(ModelEntry("efficientnet_lite0"),),
                     regimes=("scratch",), grid=(("lr", (1e-3,)),), seeds=(0, 1),
                     data_root=str(tmp_path / "elsewhere"))
    (grid,) = grid_runs(exp)
    seeds = seed_runs(exp, grid.spec, None)
    assert {r.spec.data_root for r in seeds} == {str(folder.parent.resolve())}
