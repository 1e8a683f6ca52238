"""What the listing commands, `--version`, `env` and `run`'s progress print, in a pipe and on a
terminal (typer's CliRunner is not a terminal; the terminal case patches the one detector)."""

from __future__ import annotations

import csv
import fnmatch
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import marsbench
from marsbench.catalog import list_cards
from marsbench.cli import env as cli_env
from marsbench.cli.main import app
from marsbench.models import list_specs

runner = CliRunner()
DATASETS = [c.name for c in list_cards()]
MODELS = [s.name for s in list_specs()]


def _tsv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def _fnmatch_oracle(names: list[str], *patterns: str) -> list[str]:
    return [n for n in names if any(fnmatch.fnmatch(n.lower(), p.lower()) for p in patterns)]


# -- plain rows in a pipe ------------------------------------------------------------------------

@pytest.mark.parametrize("group, names, columns", [
    ("datasets", DATASETS, 9), ("models", MODELS, 7)])
def test_list_in_a_pipe_is_tsv_with_whole_names(group, names, columns) -> None:
    result = runner.invoke(app, [group, "list"], env={"COLUMNS": "40"})  # narrow: no effect
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[0] == "name"
    assert all(line.count("\t") == columns - 1 for line in lines), lines
    rows = _tsv(result.stdout)
    assert [r["name"] for r in rows] == names  # every name, whole, in registry order
    assert max(map(len, names)) > 20  # the long names a rich table used to cut are there
    assert "…" not in result.stdout and "┃" not in result.stdout


def test_datasets_rows_carry_the_card_values() -> None:
    rows = {r["name"]: r for r in _tsv(runner.invoke(app, ["datasets", "list"]).stdout)}
    for card in list_cards():
        row = rows[card.name]
        assert row["task"] == str(card.task) and row["px"] == str(card.image_size)
        s = card.split_sizes
        assert row["train/val/test"] == f"{s['train']}/{s['val']}/{s['test']}"


def test_models_hint_goes_to_stderr_in_a_pipe() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert "timm:<name>" in result.stderr and "timm:<name>" not in result.stdout


def test_json_is_unchanged_by_the_pipe_mode() -> None:
    result = runner.invoke(app, ["datasets", "list", "--json"])
    assert [d["name"] for d in json.loads(result.stdout)] == DATASETS


# -- a rich table on a terminal, names never cut -------------------------------------------------

@pytest.mark.parametrize("group, names", [("datasets", DATASETS), ("models", MODELS)])
def test_terminal_table_keeps_whole_names(monkeypatch, group, names) -> None:
    monkeypatch.setattr(cli_env, "stdout_is_terminal", lambda: True)
    result = runner.invoke(app, [group, "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "┃" in result.stdout  # the rich table
    cells = {line.split("│")[1].strip() for line in result.stdout.splitlines()
             if line.startswith("│")}
    assert set(names) <= cells


# -- wildcard filters ----------------------------------------------------------------------------

@pytest.mark.parametrize("group, names, patterns", [
    ("models", MODELS, ["*lite*"]),
    ("models", MODELS, ["*LITE*"]),
    ("models", MODELS, ["unet*", "deeplab*"]),
    ("models", MODELS, ["*_l?6", "yolo11[ns]"]),
    ("datasets", DATASETS, ["*seg*"]),
    ("datasets", DATASETS, ["mb-crater_*", "*_det"]),
    ("datasets", DATASETS, ["mb-domars16k"]),
])
def test_wildcards_select_exactly_the_fnmatch_set(group, names, patterns) -> None:
    expected = _fnmatch_oracle(names, *patterns)
    assert expected
    plain = runner.invoke(app, [group, "list", *patterns])
    assert plain.exit_code == 0, plain.output
    assert [r["name"] for r in _tsv(plain.stdout)] == expected
    as_json = runner.invoke(app, [group, "list", *patterns, "--json"])
    assert [d["name"] for d in json.loads(as_json.stdout)] == expected


def test_wildcards_combine_with_task() -> None:
    result = runner.invoke(app, ["models", "list", "*lite*", "--task", "segmentation", "--json"])
    got = [d["name"] for d in json.loads(result.stdout)]
    expected = [s.name for s in list_specs("segmentation")
                if fnmatch.fnmatch(s.name.lower(), "*lite*")]
    assert got == expected and got


@pytest.mark.parametrize("args, hint", [
    (["models", "list", "*lte*"], "did you mean '*lite0*'?"),
    (["models", "list", "vit"], "did you mean '*vit*'?"),
    (["datasets", "list", "*sge*"], "did you mean '*seg*'?"),
    (["datasets", "list", "--task", "detection", "*seg*"], "drop or change --task"),
    (["models", "list", "*lite*", "qqqq*"], "models are "),
])
def test_a_pattern_matching_nothing_is_one_line_exit_2(args, hint) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""  # not an empty table
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: no ") and "matches the pattern" in lines[0]
    assert hint in lines[0]


# -- --version -----------------------------------------------------------------------------------

def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"marsbench {marsbench.__version__}\n"


# -- env -----------------------------------------------------------------------------------------

def _env_lines(result) -> dict[str, str]:
    assert result.exit_code == 0, result.output
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


def test_env_lists_the_real_paths(monkeypatch, tmp_path) -> None:
    from marsbench.sources.cache import data_root
    from marsbench.training.engine import default_workers
    from marsbench.training.run import pick_device

    cache = tmp_path / "cache"
    monkeypatch.setenv("MARSBENCH_CACHE", str(cache))
    monkeypatch.setenv("MARSBENCH_WORKERS", "3")
    monkeypatch.delenv("MARSBENCH_DATA", raising=False)
    lines = _env_lines(runner.invoke(app, ["env"]))
    assert lines["marsbench"] == marsbench.__version__
    assert lines["feature_cache"] == f"{cache / 'features'}  [from MARSBENCH_CACHE]"
    assert lines["pixel_cache"].startswith(f"{cache / 'pixels'}  [from MARSBENCH_CACHE")
    assert lines["content_hash_memo"].startswith(str(cache / "content-hashes.sqlite3"))
    assert lines["cache"].startswith(f"{cache}  [from MARSBENCH_CACHE")
    assert lines["data_root"].startswith(f"{data_root(None)}  [default; set with MARSBENCH_DATA")
    assert lines["loader_workers"].startswith("3  [from MARSBENCH_WORKERS")
    assert lines["device_auto"].startswith(str(pick_device("auto")))
    assert lines["results_store"].startswith(str(Path.cwd() / "runs" / "results.sqlite"))
    for key in ("python", "torch", "cuda", "mps", "torch_hub_checkpoints", "hf_hub_cache"):
        assert lines[key]
    monkeypatch.delenv("MARSBENCH_WORKERS")
    again = _env_lines(runner.invoke(app, ["env"]))
    assert again["loader_workers"].startswith(
        f"{default_workers(pick_device('auto'))}  [default; set with MARSBENCH_WORKERS")


def test_env_json_and_a_bad_setting(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("MARSBENCH_WORKERS", "many")
    data = json.loads(runner.invoke(app, ["env", "--json"]).stdout)
    assert data["feature_cache"] == str(tmp_path / "features")
    assert data["variables"]["feature_cache"] == {"name": "MARSBENCH_CACHE", "set": True}
    assert data["variables"]["data_root"]["name"] == "MARSBENCH_DATA"
    assert data["loader_workers"].startswith("invalid: MARSBENCH_WORKERS must be an integer")


def test_help_ends_with_examples() -> None:
    for args in (["run"], ["datasets", "list"], ["models", "list"], ["env"], ["demo"]):
        result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        tail = result.stdout[result.stdout.index("Examples:"):]
        assert tail.count("marsbench ") >= 2, (args, tail)


# -- run's progress ------------------------------------------------------------------------------

def test_epoch_lines_one_flushed_line_per_epoch() -> None:
    from marsbench.cli.run import _EpochLines

    class Stream(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            Stream.flushes += 1

    ticks = iter([0.0, 10.0, 22.3, 30.0, 31.25])
    stream = Stream()
    with _EpochLines(20, stream=stream, clock=lambda: next(ticks)) as progress:
        for epoch, (train, val) in enumerate([(0.9, 0.8), (0.4123, 0.3981), (0.3, 0.31),
                                              (0.2, 0.35)], start=1):
            for i in range(1, 6):
                progress.batch(i, 5)  # batches print nothing in a log
            progress(epoch, train, val)
            assert Stream.flushes == epoch  # each line is out when it is written
    assert stream.getvalue().splitlines() == [
        "epoch 1/20  train 0.9000  val 0.8000  10.0s",
        "epoch 2/20  train 0.4123  val 0.3981  12.3s",
        "epoch 3/20  train 0.3000  val 0.3100  7.7s",
        "epoch 4/20  train 0.2000  val 0.3500  1.2s",
    ]


def test_progress_bars_count_batches_of_the_epoch() -> None:
    from marsbench.cli.run import _ProgressBars

    bars = _ProgressBars(4)
    bars.batch(3, 7)
    task = bars.bars.tasks[1]
    assert (task.completed, task.total, task.description) == (3, 7, "batches of epoch 1")
    bars(1, 0.5, 0.6)
    bars.batch(1, 7)
    task = bars.bars.tasks[1]
    assert (task.completed, task.total, task.description) == (1, 7, "batches of epoch 2")
    assert bars.bars.tasks[0].completed == 1


def test_run_prints_epoch_lines_in_a_pipe_and_bars_on_a_terminal(monkeypatch, tmp_path) -> None:
    """`marsbench run` end to end, with the trainer replaced by fake progress calls."""
    seen = []

    def fake_run(spec, *, progress=None, **kwargs):
        seen.append(type(progress).__name__)
        for epoch in (1, 2):
            progress.batch(1, 2)
            progress.batch(2, 2)
            progress(epoch, 0.5 / epoch, 0.4 / epoch)
        raise RuntimeError("the fake trainer stops here")

    monkeypatch.setattr("marsbench.training.run.run_experiment", fake_run)
    args = ["run", "--dataset", "mb-frost_cls", "--model", "squeezenet1_1", "--regime",
            "scratch", "--max-epochs", "7", "--store", str(tmp_path / "s.sqlite"),
            "--out", str(tmp_path / "out")]
    plain = runner.invoke(app, args)
    assert plain.exit_code == 1, plain.output  # the fake run "failed"
    lines = [line for line in plain.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.rsplit("  ", 1)[0] for line in lines] == [
        "epoch 1/7  train 0.5000  val 0.4000", "epoch 2/7  train 0.2500  val 0.2000"]
    monkeypatch.setattr(cli_env, "stdout_is_terminal", lambda: True)
    bars = runner.invoke(app, args)
    assert bars.exit_code == 1 and "epoch 1/7" not in bars.stdout
    assert seen == ["_EpochLines", "_ProgressBars"]
