"""The Python API (`marsbench.api`, docs/api.md): lazy top-level names, transforms and
DataLoader batches of real synthetic samples, `plot`, `create_model`, `evaluate`, and every
python block of docs/api.md run as written (its data-folder placeholder replaced)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import marsbench  # noqa: E402
from marsbench.errors import OptionError  # noqa: E402
from marsbench.sources.synth import generate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "api.md"
DOC_ROOT_PLACEHOLDER = "~/marsbench-data"  # what docs/api.md calls the data folder
NAMES = ("mb-frost_cls", "mb-crater_binary_seg", "mb-boulder_det", "mb-change_cls_ctx",
         "mb-surface_multi_label_cls")
ENTRY_POINTS = {"open_dataset", "RunSpec", "run_experiment", "ResultsStore", "create_model",
                "evaluate", "list_models", "list_datasets", "__version__", "to_tensors",
                "collate_detection", "MarsDataset"}
FAST = dict(max_epochs=1, batch_size=8, patience=0, options={"input_size": 32})


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Synthetic copies (folder layout) of one dataset per kind of sample."""
    root = tmp_path_factory.mktemp("api-data")
    for name in NAMES:
        generate(name, root, "folder")
    return root


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


# -- the top-level names ----------------------------------------------------------------------

def test_import_marsbench_is_lazy_and_lists_its_entry_points():
    code = ("import sys, marsbench; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'marsbench.api' not in sys.modules; "
            "print(sorted(marsbench.__all__)); print(sorted(dir(marsbench)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    listed, shown = eval(out[0]), eval(out[1])  # noqa: S307 - our own print of two lists
    assert set(listed) == ENTRY_POINTS
    assert ENTRY_POINTS <= set(shown) and "_LAZY" not in shown
    # the data-side names still do not need torch
    code = ("import sys, marsbench; marsbench.open_dataset; marsbench.RunSpec; "
            "marsbench.ResultsStore; marsbench.list_datasets(); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_entry_points_resolve_to_their_home_modules():
    from marsbench import api
    from marsbench.runs.spec import RunSpec
    from marsbench.runs.store import ResultsStore
    from marsbench.sources import open_dataset
    from marsbench.training.run import run_experiment

    assert marsbench.open_dataset is open_dataset and marsbench.RunSpec is RunSpec
    assert marsbench.ResultsStore is ResultsStore and marsbench.run_experiment is run_experiment
    assert marsbench.create_model is api.create_model and marsbench.evaluate is api.evaluate
    from marsbench import create_model, io  # a lazy name and a submodule, both importable

    assert create_model is api.create_model and io.__name__ == "marsbench.io"
    with pytest.raises(AttributeError, match="no attribute 'not_a_thing'"):
        marsbench.not_a_thing  # noqa: B018


def test_list_models_and_datasets():
    assert "efficientnet_lite0" in marsbench.list_models()
    assert marsbench.list_models("*lite0*", task="segmentation") == [
        "deeplabv3plus_efficientnet_lite0", "segformer_efficientnet_lite0",
        "unet_efficientnet_lite0"]
    assert len(marsbench.list_datasets()) == 20
    assert marsbench.list_datasets(task="detection") == [
        "mb-boulder_det", "mb-conequest_det", "mb-dust_devil_det"]
    with pytest.raises(OptionError, match="did you mean 'detection'"):
        marsbench.list_models(task="detecton")


# -- transforms and DataLoader ----------------------------------------------------------------

def test_transform_is_applied_to_every_item(data_root):
    raw = marsbench.open_dataset("mb-frost_cls", "train", root=data_root)
    ids = marsbench.open_dataset("mb-frost_cls", "train", root=data_root,
                                 transform=lambda s: ("seen", s.sample_id))
    assert ids[0] == ("seen", raw[0].sample_id)
    assert ids[1:3] == [("seen", raw[1].sample_id), ("seen", raw[2].sample_id)]
    assert ids.sample(0).sample_id == raw[0].sample_id  # the canonical sample, whatever transform
    assert raw.transform is None and ids.fingerprint() == raw.fingerprint()
    with pytest.raises(OptionError, match="transform must be callable"):
        marsbench.open_dataset("mb-frost_cls", "train", root=data_root, transform="to_tensors")


def test_classification_batches_default_collate(data_root):
    ds = marsbench.open_dataset("mb-frost_cls", "train", root=data_root,
                                transform=marsbench.to_tensors)
    images, targets = next(iter(DataLoader(ds, batch_size=4)))
    first = ds.sample(0)
    h, w, c = first.image.shape
    assert images.shape == (4, c, h, w) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert torch.equal(images[0], torch.tensor(first.image).permute(2, 0, 1).float() / 255)
    assert targets.dtype == torch.int64 and targets.shape == (4,)
    assert targets.tolist() == [int(ds.sample(i).target) for i in range(4)]


def test_pairs_and_multilabel_batch_too(data_root):
    pairs = marsbench.open_dataset("mb-change_cls_ctx", "val", root=data_root).as_torch()
    images, targets = next(iter(DataLoader(pairs, batch_size=2)))
    h, w, c = pairs.sample(0).images[0].shape
    assert images.shape == (2, 2, c, h, w) and targets.shape == (2,)  # before, after
    multi = marsbench.open_dataset("mb-surface_multi_label_cls", "val", root=data_root)
    images, targets = next(iter(DataLoader(multi.as_torch(), batch_size=3)))
    assert targets.shape == (3, multi.num_classes) and targets.dtype == torch.int64
    assert torch.equal(targets[0], torch.as_tensor(multi.sample(0).target, dtype=torch.int64))


def test_segmentation_batches_default_collate(data_root):
    ds = marsbench.open_dataset("mb-crater_binary_seg", "train", root=data_root).as_torch()
    images, masks = next(iter(DataLoader(ds, batch_size=3)))
    h, w, c = ds.sample(0).image.shape
    assert images.shape == (3, c, h, w) and images.dtype == torch.float32
    assert masks.shape == (3, h, w) and masks.dtype == torch.int64
    assert torch.equal(masks[0], torch.from_numpy(ds.sample(0).mask))
    assert set(masks.unique().tolist()) <= {0, 1}


def test_detection_batches_with_collate_detection(data_root):
    ds = marsbench.open_dataset("mb-boulder_det", "train", root=data_root,
                                transform=marsbench.to_tensors)
    n = len(ds)
    images, targets = next(iter(DataLoader(ds, batch_size=n,
                                           collate_fn=marsbench.collate_detection)))
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == n
    counts = []
    for i, (image, target) in enumerate(zip(images, targets)):
        sample = ds.sample(i)
        assert image.shape == (sample.image.shape[2], *sample.image.shape[:2])
        assert image.dtype == torch.float32
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
        assert target["boxes"].shape == (len(sample.boxes), 4)
        assert target["labels"].shape == (len(sample.boxes),)
        assert np.allclose(target["boxes"].numpy(), sample.boxes)
        counts.append(len(sample.boxes))
    assert 0 in counts and max(counts) > 0  # negatives (no boxes) batch too, as (0, 4)


@pytest.mark.parametrize("name", ["mb-frost_cls", "mb-crater_binary_seg", "mb-boulder_det"])
def test_canonical_samples_in_a_default_loader_say_what_to_do(data_root, name):
    ds = marsbench.open_dataset(name, "val", root=data_root)
    with pytest.raises(TypeError, match=r"transform=marsbench\.to_tensors.*as_torch\(\)"):
        next(iter(DataLoader(ds, batch_size=2)))
    samples = next(iter(DataLoader(ds, batch_size=2, collate_fn=list)))  # still possible
    assert [s.sample_id for s in samples] == ds.sample_ids[:2]


def test_to_tensors_refuses_what_is_not_a_sample():
    with pytest.raises(TypeError, match="takes a marsbench sample"):
        marsbench.to_tensors({"image": 1})


# -- plot -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mb-frost_cls", "mb-crater_binary_seg", "mb-boulder_det",
                                  "mb-change_cls_ctx", "mb-surface_multi_label_cls"])
def test_plot_returns_a_figure_with_what_the_sample_holds(data_root, name, tmp_path):
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    ds = marsbench.open_dataset(name, "train", root=data_root, transform=marsbench.to_tensors)
    index = next(i for i in range(len(ds))  # a detection image with boxes
                 if not hasattr(ds.sample(i), "boxes") or len(ds.sample(i).boxes))
    fig = ds.plot(index)
    assert isinstance(fig, Figure)
    sample = ds.sample(index)
    axes = fig.axes
    if name == "mb-change_cls_ctx":
        assert len(axes) == 2 and axes[0].get_title().startswith("before")
    title = axes[-1].get_title()
    if name in ("mb-frost_cls", "mb-change_cls_ctx"):
        assert title.endswith(ds.class_names[int(sample.target)])
    elif name == "mb-surface_multi_label_cls":
        assert title.split(", ") == [ds.class_names[i] for i in np.flatnonzero(sample.target)]
    elif name == "mb-crater_binary_seg":
        assert len(axes[0].images) == 2  # the image and the mask over it
        assert "crater" in title or (sample.mask == 0).all()
    else:
        boxes = [p for p in axes[0].patches if isinstance(p, Rectangle)]
        assert len(boxes) == len(sample.boxes) > 0
        assert {t.get_text() for t in axes[0].texts} == {"boulder"}
    fig.savefig(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
    import matplotlib.pyplot as plt

    own, ax = plt.subplots()
    assert ds.plot(0, ax=ax) is own  # draws into the given axes


# -- create_model -----------------------------------------------------------------------------

def test_create_model_dispatches_on_the_registry_task():
    from marsbench.models.classifier import ClassifierModel
    from marsbench.models.segmentation import DenseModel

    clf = marsbench.create_model("efficientnet_lite0", 5, regime="scratch")
    assert isinstance(clf, ClassifierModel) and str(clf.regime) == "scratch"
    assert clf.head.out_features == 5 and clf(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert marsbench.create_model("efficientnet_lite0", 2, "scratch").head.out_features == 1
    multi = marsbench.create_model("efficientnet_lite0", 2, "scratch", multilabel=True)
    assert multi.head.out_features == 2 and multi.multilabel

    seg = marsbench.create_model("unet_efficientnet_lite0", 3, regime="scratch",
                                 task="segmentation")
    assert isinstance(seg, DenseModel) and seg.spec.task == "segmentation"
    assert seg.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)

    det = marsbench.create_model("fasterrcnn_efficientnet_lite0", 4, regime="scratch")
    assert isinstance(det, DenseModel) and det.spec.task == "detection"
    assert det.net.roi_heads.box_predictor.cls_score.out_features == 5  # 4 classes + background
    with torch.no_grad():
        out = det.eval()([torch.rand(3, 64, 64)])
    assert set(out[0]) == {"boxes", "labels", "scores"}


def test_create_model_bad_input_is_one_line():
    from marsbench.models import UnknownModelError

    with pytest.raises(OptionError) as info:
        marsbench.create_model("efficientnet_lit0", 3)
    text = str(info.value)
    assert "\n" not in text and "did you mean 'efficientnet_lite0'" in text
    assert isinstance(info.value, UnknownModelError)  # what the registry raises, too
    with pytest.raises(OptionError, match="did you mean 'fine_tuning'"):
        marsbench.create_model("efficientnet_lite0", 3, regime="finetune")
    with pytest.raises(OptionError, match="efficientnet_lite0 is a classification model"):
        marsbench.create_model("efficientnet_lite0", 3, regime="scratch", task="detection")
    with pytest.raises(OptionError, match="at least 2 classes"):
        marsbench.create_model("efficientnet_lite0", 1, regime="scratch")


def test_create_model_missing_published_weights_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from marsbench.models import WeightsUnavailableError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MARSBENCH_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsUnavailableError, match="squeezenet1_1-b8a52dc0.pth"):
        marsbench.create_model("squeezenet1_1", 2, regime="fine_tuning")
    model = marsbench.create_model("squeezenet1_1", 2, regime="scratch")  # no download needed
    assert model.weights_tag == "random"


# -- evaluate ---------------------------------------------------------------------------------

@pytest.mark.usefixtures("isolated_cache")
def test_evaluate_runs_the_grid_into_the_store(data_root, tmp_path):
    store = marsbench.ResultsStore(tmp_path / "runs.sqlite")
    table = marsbench.evaluate("mb-frost_cls", ["efficientnet_lite0"], regimes="scratch",
                               root=data_root, store=store, seeds=[0, 1], **FAST)
    from marsbench.runs.store import TABLE_COLUMNS

    assert list(table.columns) == list(TABLE_COLUMNS)
    records = store.records()
    assert len(store) == 2 and {r.spec.seed for r in records} == {0, 1}
    assert all(r.ok and r.epochs_run == 1 and r.spec.regime == "scratch" for r in records)
    assert sorted(table["spec_key"].unique()) == sorted(r.spec_key for r in records)
    for record in records:  # one row per numeric test metric per run
        rows = table[table["spec_key"] == record.spec_key]
        numeric = {k: v for k, v in record.metrics["test"].items()
                   if isinstance(v, float | int) and not isinstance(v, bool)}
        assert dict(zip(rows["metric"], rows["value"])) == pytest.approx(numeric)
        assert "f1_weighted" in numeric and "per_class_f1" not in set(rows["metric"])
    assert set(table["dataset"]) == {"mb-frost_cls"} and set(table["split"]) == {"test"}
    assert table.equals(store.to_table())

    # without a store: the same table shape, nothing written anywhere
    val = marsbench.evaluate(data_root / "mb-frost_cls", "efficientnet_lite0", "scratch",
                             split="val", **FAST)
    assert set(val["split"]) == {"val"} and val["spec_key"].nunique() == 1
    assert val["spec_key"].iloc[0] in set(table["spec_key"])  # a folder path names the same run
    assert len(store) == 2


def test_evaluate_checks_every_spec_before_running(data_root, monkeypatch):
    import marsbench.training.run as run_module

    monkeypatch.setattr(run_module, "run_experiment", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(OptionError, match="did you mean 'max_epochs'"):
        marsbench.evaluate("mb-frost_cls", "efficientnet_lite0", "scratch", root=data_root,
                           max_epoch=1)
    with pytest.raises(OptionError, match="regime"):
        marsbench.evaluate("mb-frost_cls", "efficientnet_lite0", ["scratch", "finetune"],
                           root=data_root)
    with pytest.raises(OptionError, match="seeds="):
        marsbench.evaluate("mb-frost_cls", "efficientnet_lite0", "scratch", seed=1)


# -- docs/api.md ------------------------------------------------------------------------------

def doc_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


@pytest.mark.usefixtures("isolated_cache")
def test_docs_api_python_blocks_run(data_root, tmp_path, monkeypatch):
    """Every ```python block of docs/api.md, in order and in one namespace, with the doc's data
    folder (DOC_ROOT_PLACEHOLDER) replaced by the synthetic copies; files land in tmp_path."""
    blocks = doc_blocks()
    assert len(blocks) >= 4
    assert any(DOC_ROOT_PLACEHOLDER in b for b in blocks)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_api"}
    for number, block in enumerate(blocks, 1):
        code = block.replace(DOC_ROOT_PLACEHOLDER, str(data_root))
        exec(compile(code, f"docs/api.md python block {number}", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "crater_mask.png").is_file() and (tmp_path / "runs.sqlite").is_file()
    assert len(namespace["table"]) > 0 and len(namespace["store"]) == 1
