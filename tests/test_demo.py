"""`marsbench demo`: its detection part learns, it says when the real subsets are absent, and its
tables keep names whole."""

from __future__ import annotations


from typer.testing import CliRunner

from marsbench.catalog import list_cards
from marsbench.cli import demo
from marsbench.cli.main import app

runner = CliRunner()


def test_detection_experiment_learns_visibly(tmp_path):
    """The demo's detection study, one seed: Faster R-CNN on the frozen EfficientNet-Lite0 trunk
    finds the synthetic cones (an empty prediction scores 0; the old setting scored ~0.002).
    About 30 s on one CPU core."""
    from marsbench.protocol import run_sweep

    root = demo.detection_data(tmp_path)
    assert (root / demo.DETECTION_DATASET / "SYNTHETIC.md").is_file()
    exp = demo.detection_experiment(root, tmp_path / "no-real-data").with_overrides(seeds=(0,))
    assert [d.name for d in exp.datasets] == [demo.DETECTION_DATASET]
    store = tmp_path / "results.sqlite"
    summary = run_sweep(exp, store, executor="local", threads=1)
    assert summary.progress.failed == 0 and summary.progress.ok == 1
    table = demo.final_table(exp, store)
    scores = dict(table[table.split == "test"][["metric", "value"]].values)
    assert scores["map_50"] >= 0.3, scores
    assert scores["map_50_95"] > 0.05, scores


def test_absent_real_data_says_synthetic_only(tmp_path):
    empty = tmp_path / "no-real-data"
    empty.mkdir()
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "out"), "--real-data",
                                 str(empty), "--summary-only"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "SYNTHETIC data only" in line]
    assert len(lines) == 1, result.output
    assert "real Mars subsets absent" in lines[0] and str(empty.resolve()) in lines[0]
    assert all(n in lines[0] for n in demo.ALL_REAL_SUBSETS)
    # off a terminal the suite table is tab-separated rows: every name whole
    rows = [line.split("\t") for line in result.output.splitlines() if "\t" in line]
    assert rows[0][:2] == ["dataset", "task"]
    assert [r[0] for r in rows[1:]] == [c.name for c in list_cards()]


def test_real_data_note_names_what_is_missing(tmp_path):
    for name in demo.ALL_REAL_SUBSETS[:-1]:
        (tmp_path / name).mkdir()
    note = demo.real_data_note(tmp_path)
    assert note is not None and demo.ALL_REAL_SUBSETS[-1] in note
    assert "SYNTHETIC data only" in note and demo.ALL_REAL_SUBSETS[0] not in note
    (tmp_path / demo.ALL_REAL_SUBSETS[-1]).mkdir()
    assert demo.real_data_note(tmp_path) is None
    exps = demo.demo_experiments(tmp_path / "data", tmp_path)
    assert [len(e.datasets) for e in exps] == [3, 2, 2]  # the real subsets are used


def test_terminal_tables_never_cut_names(monkeypatch, capsys):
    from rich.console import Console

    from marsbench.cli import env

    monkeypatch.setattr(env, "stdout_is_terminal", lambda: True)
    long = "mb-mars_seg_mer-with-a-very-long-name"
    rows = [[long, "fasterrcnn_efficientnet_lite0", "0.912 ± 0.010"]]
    wide = Console(width=90, record=True, force_terminal=True)
    monkeypatch.setattr(demo, "console", wide)
    demo._print_table("t", ["dataset", "model", "score"], rows, names=2)
    text = wide.export_text()
    assert long in text and "fasterrcnn_efficientnet_lite0" in text and "┃" in text
    assert "…" not in text
    # too narrow for the names: plain rows instead of a table that would cut them
    monkeypatch.setattr(demo, "console", Console(width=50, force_terminal=True))
    demo._print_table("t", ["dataset", "model", "score"], rows, names=2)
    out = capsys.readouterr().out
    assert f"{long}\tfasterrcnn_efficientnet_lite0\t0.912 ± 0.010" in out
