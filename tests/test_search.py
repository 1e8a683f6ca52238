"""Search strategies of the grid stage (grid, random:<n>, tpe:<n>), the paper's loss axis, the
trials table, and the dry-run's counts and cost line."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from marsbench.errors import OptionError
from marsbench.protocol import (
    SweepInterrupted,
    grid_runs,
    make_plan,
    parse_experiment,
    run_sweep,
)
from marsbench.protocol.experiment import ExperimentError
from marsbench.protocol.plan import loss_values, space_runs
from marsbench.protocol.search import parse_search, random_draw, read_trials
from marsbench.runs import ResultsStore, RunSpec
from test_protocol_sweep import Scripted

SPACE = """
name: planted
datasets: [mb-domars16k]
models: [efficientnet_lite0]
grid_defaults: single
search: {search}
grid_seed: {seed}
grid:
  lr: [1.0e-1, 3.0e-2, 1.0e-2, 3.0e-3, 1.0e-3, 3.0e-4, 1.0e-4, 3.0e-5, 1.0e-5, 3.0e-6]
  batch_size: [8, 16, 32, 64]
  optimizer: [adam, adamw, sgd]
  max_epochs: [5, 10, 20]
seeds: [0, 1]
"""  # 360 points, one multi-class group


def planted_loss(spec: RunSpec) -> float:
    """A smooth objective with one optimum: lr 3e-4, batch 16, adamw, 10 epochs."""
    return (abs(math.log10(spec.lr) + 3.5) + 0.3 * abs(math.log2(spec.batch_size) - 4)
            + {"adam": 0.2, "adamw": 0.0, "sgd": 0.5}[spec.optimizer]
            + abs(spec.max_epochs - 10) / 20 + 0.001 * spec.seed)


class Planted(Scripted):
    """Returns the planted validation loss of each run at once (and can stop like Ctrl-C)."""

    name, capacity = "planted", 2

    def __init__(self, interrupt_after: int | None = None):
        super().__init__({}, interrupt_after=interrupt_after)

    def loss_of(self, s) -> float:
        return planted_loss(s)


def sweep(tmp_path, search: str, seed: int = 0, name: str = "s", **kw):
    exp = parse_experiment(SPACE.format(search=search, seed=seed))
    ex = Planted(**kw)
    store = ResultsStore(tmp_path / f"{name}.sqlite")
    summary = run_sweep(exp, store, executor=ex, check_data=False)
    return exp, store, ex, summary


# -- parsing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, n", [("grid", "grid", None), ("random:20", "random", 20),
                                           ("TPE:5", "tpe", 5)])
def test_search_values_parse(text, kind, n):
    s = parse_search(text)
    assert (s.kind, s.n) == (kind, n)


@pytest.mark.parametrize("bad", ["tpe:0", "random:x", "bayes:5", "random", "grid:3", "random:-2"])
def test_bad_search_values_are_one_line_naming_the_value(bad):
    with pytest.raises(OptionError) as err:
        parse_search(bad)
    assert bad in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ExperimentError, match=r"<experiment>:3: search: .*" + bad):
        parse_experiment(f"datasets: [mb-frost_cls]\nmodels: [efficientnet_lite0]\n"
                         f"search: {bad}\n")


def test_cli_search_override_is_checked_before_anything_runs(tmp_path):
    from marsbench.cli.main import app

    result = CliRunner().invoke(app, ["sweep", "paper:demo_synthetic", "--search", "bayes:5",
                                      "--dry-run", "--no-check-data",
                                      "--store", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 2, result.output
    assert "bayes:5" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s.sqlite").exists()


# -- grid: unchanged --------------------------------------------------------------------------------

def test_grid_search_plans_exactly_what_it_planned_before():
    text = SPACE.format(search="grid", seed=0)
    explicit = parse_experiment(text)
    implicit = parse_experiment(text.replace("search: grid\n", ""))
    assert [r.key for r in grid_runs(explicit)] == [r.key for r in grid_runs(implicit)]
    assert explicit.identity_hash() == implicit.identity_hash()  # selections rows keep theirs
    runs = grid_runs(explicit)
    assert len(runs) == 360
    by_hand = RunSpec(dataset="mb-domars16k", model="efficientnet_lite0",
                      regime="feature_extraction", seed=0, lr=0.1, batch_size=8,
                      optimizer="adam", weight_decay=0.05, scheduler="none", max_epochs=5,
                      patience=5, loss="auto", augment=True, options={"fe_path": "cached"})
    assert runs[0].key == by_hand.key


# -- random ---------------------------------------------------------------------------------------

def test_random_draws_n_distinct_grid_points_reproducibly():
    exp = parse_experiment(SPACE.format(search="random:25", seed=0))
    space = {r.key for r in grid_runs(exp.with_overrides(search="grid"))}
    runs = grid_runs(exp)
    keys = [r.key for r in runs]
    assert len(keys) == 25 and len(set(keys)) == 25 and set(keys) <= space
    assert keys == [r.key for r in grid_runs(parse_experiment(
        SPACE.format(search="random:25", seed=0)))]
    other = [r.key for r in grid_runs(exp.with_overrides(grid_seed=1))]
    assert other != keys  # another grid_seed, other draws
    assert random_draw(10, 50, 0) == list(range(10))  # n beyond the space: every point


def test_random_search_selects_among_its_trials_only(tmp_path):
    exp, store, ex, summary = sweep(tmp_path, "random:12")
    trials = {r.key for r in grid_runs(exp)}
    grid = [s for s in ex.submitted if s.seed == exp.grid_seed]
    assert {s.key for s in grid} == trials and len(grid) == 12
    sel = next(iter(summary.selections.values()))
    assert sel.candidates == 12
    assert sel.value == min(planted_loss(s) for s in grid)  # the best trial, as the grid does
    assert len(ex.submitted) == 12 + 1  # one seed retrain (seed 0 is the winning trial)
    table = read_trials(store, "planted")
    assert list(table["number"]) == list(range(12)) and set(table["state"]) == {"complete"}
    assert set(table["search"]) == {"random:12"}
    assert table.equals(read_trials(ResultsStore(store.path, readonly=True), "planted"))
    grid_only = ResultsStore(tmp_path / "grid.sqlite")
    grid_only.to_table()  # a store without the table: read-only readers get an empty table
    assert read_trials(ResultsStore(grid_only.path, readonly=True)).empty


# -- TPE ------------------------------------------------------------------------------------------

def test_tpe_beats_chance_on_a_planted_objective_and_is_reproducible(tmp_path):
    pytest.importorskip("optuna")
    exp, store, ex, summary = sweep(tmp_path, "tpe:30")
    trials = [s for s in ex.submitted if s.seed == exp.grid_seed]
    assert len(trials) == 30 and len({s.key for s in trials}) == 30
    everything = sorted(planted_loss(r.spec) for r in space_runs(exp).popitem()[1])
    best = min(planted_loss(s) for s in trials)
    # random:30 finds one of the 3 best of 360 points with probability 0.23; TPE does
    assert best <= everything[2]
    # and its later trials sit in the best quarter of the space on average (chance: the mean)
    late = [planted_loss(s) for s in trials[15:]]
    assert sum(late) / len(late) < everything[len(everything) // 4]
    sel = next(iter(summary.selections.values()))
    assert sel.value == best and sel.candidates == 30
    # the same seed asks the same trials; another seed others
    _, _, again, _ = sweep(tmp_path, "tpe:30", name="again")
    assert [s.key for s in again.submitted] == [s.key for s in ex.submitted]
    _, _, other, _ = sweep(tmp_path, "tpe:30", seed=7, name="other")
    assert [s.key for s in other.submitted][:30] != [s.key for s in trials]


def test_tpe_trials_are_recorded_and_a_resumed_sweep_continues_the_study(tmp_path):
    pytest.importorskip("optuna")
    _, _, whole, _ = sweep(tmp_path, "tpe:12", name="whole")
    exp = parse_experiment(SPACE.format(search="tpe:12", seed=0))
    store = ResultsStore(tmp_path / "resumed.sqlite")
    first = Planted(interrupt_after=5)
    with pytest.raises(SweepInterrupted):
        run_sweep(exp, store, executor=first, check_data=False)
    done = set(store.keys())
    assert 0 < len(done) < 12
    plan = make_plan(exp, store, check_data=False, check_models=False)
    assert plan.search_runs == 12 and not plan.selections[next(iter(plan.selections))].decided
    second = Planted()
    run_sweep(exp, store, executor=second, check_data=False)
    assert not done & {s.key for s in second.submitted}  # nothing finished is run again
    resumed = [s.key for s in first.submitted if s.key in done] + [s.key for s in
                                                                    second.submitted]
    assert resumed == [s.key for s in whole.submitted]  # the same study, continued
    table = read_trials(store, "planted")
    assert list(table["number"]) == list(range(12))
    assert set(table["state"]) == {"complete"} and table["value"].notna().all()
    assert list(table["spec_key"]) == [s.key for s in whole.submitted[:12]]
    params = table["params"].map(eval)  # JSON of the searched fields only
    assert set(params.iloc[0]) == {"lr", "batch_size", "optimizer", "max_epochs"}
    # a third sweep finds everything done
    third = Planted()
    run_sweep(exp, store, executor=third, check_data=False)
    assert third.submitted == []


def test_tpe_without_optuna_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)
    exp = parse_experiment(SPACE.format(search="tpe:5", seed=0))
    with pytest.raises(OptionError, match=r"marsbench\[search\]"):
        grid_runs(exp)


# -- the paper's loss axis ------------------------------------------------------------------------

def test_the_paper_grid_searches_the_loss_where_the_paper_does():
    exp = parse_experiment("datasets: [mb-frost_cls, mb-domars16k]\n"
                           "models: [efficientnet_lite0]\n")
    frost, domars = exp.datasets
    assert loss_values(exp, frost) == ("auto", "ce")  # binary: one-logit BCE vs two-logit CE
    assert loss_values(exp, domars) == ("auto",)  # multi-class: CE only, keys as before
    sizes = {g.dataset: len(runs) for g, runs in space_runs(exp).items()}
    assert sizes == {"mb-frost_cls": 2 * 648, "mb-domars16k": 648}
    seg = parse_experiment("datasets: [mb-conequest_seg]\nmodels: [unet]\n"
                           "grid_defaults: single\ngrid: {loss: [paper]}\n")
    runs = grid_runs(seg)
    assert [(r.spec.loss, r.spec.options.dice_weighting) for r in runs] == [
        ("auto", None), ("dice", None), ("dice", "simple"), ("dice", "uniform"),
        ("combined", None)]  # CE, generalised Dice x the reference's 3 weightings, CE + Dice


# -- dry run --------------------------------------------------------------------------------------

def test_dry_run_prints_the_counts_and_a_measured_cost(tmp_path, monkeypatch):
    from marsbench.cli.main import app

    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / "cache"))
    exp = tmp_path / "e.yaml"
    exp.write_text("datasets: [mb-frost_cls]\nmodels: [efficientnet_lite0]\n"
                   "grid_defaults: single\nsearch: random:3\noptions: {input_size: 16}\n"
                   "grid: {batch_size: [2], loss: [paper], lr: [1.0e-3, 1.0e-4]}\n"
                   "seeds: [0, 1, 2]\n")
    args = ["sweep", str(exp), "--dry-run", "--no-check-data", "--device", "cpu",
            "--store", str(tmp_path / "s.sqlite")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "search random:3" in out
    assert "runs: 3 search trial(s) (stage grid), then 2 seed retrain(s)" in out
    assert "estimated cost on cpu: at most" in out and "for 5 of the 5 run(s)" in out
    assert "efficientnet_lite0@16px/bs2:" in out and "measured" in out
    assert "early stopping ignored" in out
    again = " ".join(CliRunner().invoke(app, args).output.split())
    assert "measured (cached)" in again  # the next dry-run does not measure again
