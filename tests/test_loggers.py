"""Optional loggers (TensorBoard, MLflow, W&B offline), read back with their own libraries."""

from __future__ import annotations

import pytest

from marsbench.errors import OptionError
from marsbench.runs import RunSpec
from marsbench.training.run import run_experiment

pytestmark = pytest.mark.usefixtures("isolated_cache")  # tests/conftest.py


def _run(synth_suite, monkeypatch, tmp_path, logger):
    monkeypatch.setenv("MARSBENCH_LOGGER", logger)
    monkeypatch.setenv("MARSBENCH_LOG_DIR", str(tmp_path / "logs"))
    root = synth_suite["folder"]["mb-frost_cls"].parent
    spec = RunSpec(dataset="mb-frost_cls", data_root=str(root), model="efficientnet_lite0",
                   regime="feature_extraction", max_epochs=3, patience=0, batch_size=8,
                   options={"input_size": 32})
    return run_experiment(spec)


def test_tensorboard_gets_every_epoch_and_the_metrics(synth_suite, monkeypatch, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = _run(synth_suite, monkeypatch, tmp_path, "tensorboard")
    (run_dir,) = (tmp_path / "logs").iterdir()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    val = [(s.step, s.value) for s in events.Scalars("loss/val")]
    assert [step for step, _ in val] == [1, 2, 3]
    assert [v for _, v in val] == pytest.approx([h["val_loss"] for h in record.extra["history"]])
    assert events.Scalars("test/f1_weighted")[0].value == pytest.approx(
        record.metrics["test"]["f1_weighted"])


def test_mlflow_sqlite_store_holds_the_run(synth_suite, monkeypatch, tmp_path):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    record = _run(synth_suite, monkeypatch, tmp_path, "mlflow")
    client = mlflow.tracking.MlflowClient(
        f"sqlite:///{(tmp_path / 'logs' / 'mlflow.db').resolve()}")
    (run,) = client.search_runs([client.get_experiment_by_name("marsbench").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["regime"] == "feature_extraction"
    history = client.get_metric_history(run.info.run_id, "loss_val")
    assert [m.step for m in history] == [1, 2, 3]
    assert run.data.metrics["test_f1_weighted"] == pytest.approx(
        record.metrics["test"]["f1_weighted"])


def test_wandb_offline_writes_a_local_run(synth_suite, monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    _run(synth_suite, monkeypatch, tmp_path, "wandb")
    runs = list((tmp_path / "logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_bad_logger_choices_are_one_line(monkeypatch):
    import importlib.util

    from marsbench.training.loggers import check_logger

    with pytest.raises(OptionError, match="did you mean 'tensorboard'"):
        check_logger("tensorbord")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(OptionError, match=r"pip install 'marsbench\[mlflow\]'"):
        check_logger("mlflow")
