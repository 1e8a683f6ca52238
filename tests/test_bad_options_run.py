"""`marsbench run --force` whose re-run fails keeps the earlier successful record live."""

from __future__ import annotations

from typer.testing import CliRunner

from marsbench.cli.main import app
from marsbench.runs import ResultsStore, RunRecord, RunSpec
from test_cli_errors import tiny_classification_folder


def test_force_rerun_that_fails_keeps_the_ok_record(tmp_path, monkeypatch):
    import marsbench.training.run as training_run

    monkeypatch.setenv("MARSBENCH_OFFLINE", "1")
    tiny_classification_folder(tmp_path / "mini")
    spec = RunSpec(dataset="mini", model="efficientnet_lite0", regime="feature_extraction",
                   max_epochs=1, data_root=str(tmp_path))
    store = ResultsStore(tmp_path / "s.sqlite")
    store.put(RunRecord.success(spec, task="classification", val_loss=0.4,
                                metrics={"test": {"f1_weighted": 0.7}}))

    def boom(spec):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(training_run, "open_splits", boom)
    result = CliRunner().invoke(app, [
        "run", "--dataset", str(tmp_path / "mini"), "--model", "efficientnet_lite0",
        "--regime", "feature_extraction", "--max-epochs", "1", "--device", "cpu", "--force",
        "--store", str(store.path), "--out", str(tmp_path / "out"), "--quiet"],
        env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    assert "run failed: RuntimeError: out of memory" in result.output
    assert f"earlier successful record {spec.short_key} stays in" in result.output
    live = store.get(spec.key)
    assert live.ok and live.metric("f1_weighted") == 0.7
    assert [r.error.splitlines()[-1] for r in store.history(spec.key)] == [
        "RuntimeError: out of memory"]
