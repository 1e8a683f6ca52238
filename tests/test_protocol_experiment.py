"""Experiment files: defaults, validation with file/line/key errors, the shipped experiments."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from marsbench.protocol import (
    PAPER_GRID,
    PAPER_SEEDS,
    ExperimentError,
    list_experiments,
    load_experiment,
    parse_experiment,
)
from marsbench.protocol.experiment import OPTIMIZERS, SCHEDULERS, shipped_dir

REPO = Path(__file__).resolve().parents[1]

MINIMAL = """
datasets: [mb-frost_cls]
models: [efficientnet_lite0]
"""


def test_defaults_are_the_papers_protocol():
    exp = parse_experiment(MINIMAL)
    assert exp.grid_dict == PAPER_GRID
    assert exp.grid_size == 3 * 3 * 3 * 1 * 4 * 3 * 2  # lr, batch, opt, wd, sched, epochs, pat
    assert exp.grid_dict["lr"] == (1e-3, 1e-4, 1e-5)
    assert exp.grid_dict["scheduler"] == ("none", "cosine", "plateau", "step")
    assert exp.seeds == PAPER_SEEDS == (0, 1, 10, 42, 123, 1000, 1234)
    assert exp.grid_seed == 0
    assert exp.selection.metric == "val_loss" and exp.selection.mode == "min"
    assert exp.regimes == ("feature_extraction",)
    assert exp.stages == ("grid", "seeds")
    assert exp.datasets[0].variants == ("full",)


def test_trainer_names_match():
    from marsbench.training import loop

    assert OPTIMIZERS == loop.OPTIMIZERS and SCHEDULERS == loop.SCHEDULERS


def test_full_file(tmp_path):
    ckpt = tmp_path / "ckpt.pth"
    ckpt.write_bytes(b"x")
    text = f"""
version: 1
name: mine
datasets:
  - mb-frost_cls
  - name: mb-domars16k
    variants: [full, partition:0.1, few_shot:5]
models:
  - efficientnet_lite0
  - name: timm:resnet18
    weights: {ckpt.name}
    regimes: [scratch, fine_tuning]
    options: {{input_size: 64}}
regimes: [feature_extraction, scratch]
grid_defaults: single
grid:
  lr: [1e-3, 0.01]       # YAML 1.1 reads 1e-3 as text: still a number here
  optimizer: adam
  scheduler: [none, cosine]
options: {{input_size: 32}}
data: {{root: data, source: folder, subset_seed: 7}}
seeds: [0, 1]
selection: {{metric: val.f1_weighted}}
"""
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    exp = load_experiment(path)
    assert exp.name == "mine"
    assert [d.variants for d in exp.datasets] == [
        ("full",), ("full", "partition:0.10", "few_shot:5")]
    assert exp.grid_dict["lr"] == (0.001, 0.01)
    assert exp.grid_dict["optimizer"] == ("adam",)
    assert exp.grid_dict["batch_size"] == (32,)  # single defaults = RunSpec's
    assert exp.grid_size == 4
    assert exp.models[1].weights == str(ckpt.resolve())  # relative to the file
    assert exp.models[1].regimes == ("scratch", "fine_tuning")
    assert exp.regimes_for(exp.models[0]) == ("feature_extraction", "scratch")
    assert dict(exp.models[1].options) == {"input_size": 64}
    assert exp.data_root == str((tmp_path / "data").resolve())
    assert (exp.source, exp.subset_seed) == ("folder", 7)
    assert exp.selection.mode == "max"  # a score, not a loss


@pytest.mark.parametrize("text, where", [
    (MINIMAL + "grid:\n  lr: [1e-3, fast]\n", ":5: grid.lr[1]: expected a finite number"),
    (MINIMAL + "grid:\n  learning_rate: [0.1]\n", "did you mean 'lr'"),
    (MINIMAL + "regime: [scratch]\n", ":4: regime: unknown key; did you mean 'regimes'?"),
    (MINIMAL + "regimes: [scrach]\n", "did you mean 'scratch'"),
    (MINIMAL + "seeds: [0, 1, 0]\n", "seeds: lists a seed twice"),
    (MINIMAL + "seeds: 3\n", ":4: seeds: expected a list such as [0, 1, 2], got 3"),
    (MINIMAL + "seeds: [0, 4294967296]\n", ":4: seeds[1]: must be <= 4294967295"),
    (MINIMAL + "grid:\n  optimizer: [adam, lamb]\n", "grid.optimizer[1]: 'lamb' is not one of"),
    (MINIMAL + "grid:\n  batch_size: [0]\n", "grid.batch_size[0]: must be >= 1"),
    (MINIMAL + "grid:\n  batch_size: [32, 100000000000000000000000]\n",
     "grid.batch_size[1]: must be <= 16777216"),
    (MINIMAL + "grid:\n  lr: [0.1, 0.1]\n", "value 0.1 is listed twice"),
    (MINIMAL + "selection: test.f1_weighted\n", "select on validation results only"),
    (MINIMAL + "datasets: [mb-frost]\n", "key given twice (first on line 2)"),
    ("datasets: [mb-frostcls]\nmodels: [x]\n", ":1: datasets[0]: unknown dataset 'mb-frostcls': "
                                               "did you mean 'mb-frost_cls'"),
    ("datasets:\n  - name: mb-boulder_seg\n    variants: [few_shot:5]\nmodels: [unet]\n",
     "few-shot variants exist for classification only"),
    ("datasets:\n  - name: mb-frost_cls\n    variants: [partition:2]\nmodels: [x]\n",
     ":3: datasets[0].variants[0]: bad variant 'partition:2'"),
    ("task: segmentation\ndatasets: [mb-frost_cls]\nmodels: [unet]\n",
     "is a classification dataset but the experiment's task is segmentation"),
    ("datasets: [mb-frost_cls]\n", "missing key 'models'"),
    ("models: [x]\ndatasets: [mb-frost_cls\n", "not valid YAML"),
    (MINIMAL + "stages: [seeds]\n", "the grid stage cannot be left out"),
    (MINIMAL + "version: 2\n", "reads experiment format 1"),
    ("datasets: [mb-frost_cls]\nmodels:\n  - name: m\n    weights: nope.pth\n",
     ":4: models[0].weights: checkpoint"),
])
def test_errors_name_file_line_and_key(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert where in message, message


def test_task_is_checked_against_a_dataset_folder(tmp_path):
    """A folder's task is read off the folder, as a catalog name's is off its card."""
    mini = tmp_path / "mine"
    for split in ("train", "val", "test"):
        (mini / "data" / split / "a").mkdir(parents=True)
    (mini / "annotation.csv").write_text("file_id,label,feature_name,split\n"
                                         "x.png,0,a,train\n")
    (mini / "mapping.json").write_text('{"0": "a", "1": "b"}')
    path = tmp_path / "exp.yaml"
    path.write_text("task: segmentation\ndatasets: [./mine]\nmodels: [unet]\n")
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    assert "mine is a classification dataset but the experiment's task is segmentation" in str(
        info.value)
    path.write_text("task: classification\ndatasets: [./mine]\nmodels: [efficientnet_lite0]\n")
    assert load_experiment(path).task == "classification"


def test_unknown_experiment_name_suggests_shipped():
    with pytest.raises(ExperimentError, match="did you mean 'paper:main_classification'"):
        load_experiment("paper:main_clasification")


def test_shipped_experiments_load_and_match_repo_copies():
    names = list_experiments()
    assert {"main_classification", "main_segmentation", "main_detection",
            "training_size_curves", "few_shot_curves", "regimes_comparison",
            "demo_synthetic"} <= set(names)
    for name in names:
        exp = load_experiment(f"paper:{name}")
        assert exp.name == name
        copy = REPO / "experiments" / f"{name}.yaml"
        assert copy.is_file() and filecmp.cmp(copy, shipped_dir() / f"{name}.yaml",
                                              shallow=False), f"{copy} differs from the package"
    main = load_experiment("paper:main_classification")
    assert len(main.datasets) == 9 and main.grid_dict == PAPER_GRID
    assert [m.name for m in main.models] == ["resnet101", "squeezenet1_1", "inception_v3",
                                             "swin_v2_b", "vit_l_16"]
    # the curves' exact fractions and shots are the paper figures' business (test_paper_figures)
    curves = load_experiment("paper:training_size_curves")
    assert curves.datasets[-1].variants[-1] == "full"
    assert all(v.startswith("partition:") for v in curves.datasets[-1].variants[:-1])
    shots = load_experiment("paper:few_shot_curves")
    assert all(v.startswith("few_shot:") for v in shots.datasets[0].variants)
    assert load_experiment("paper:regimes_comparison").regimes == (
        "scratch", "feature_extraction", "fine_tuning")
