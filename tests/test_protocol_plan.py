"""The planner: grid specs, selection on validation loss, seed reuse, dry-run counts, staleness."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from marsbench.protocol import (
    final_keys,
    grid_runs,
    make_plan,
    parse_experiment,
    read_selections,
    write_selections,
)
from marsbench.protocol.plan import data_fingerprint, select_group
from marsbench.runs import ResultsStore, RunRecord, RunSpec

EXP = """
name: small
datasets: [mb-frost_cls, mb-landmark_cls]
models: [efficientnet_lite0]
regimes: [feature_extraction, scratch]
grid_defaults: single
grid:
  lr: [1.0e-3, 1.0e-2, 1.0e-4]
options: {input_size: 32}
seeds: [0, 1, 2]
"""


def record(spec: RunSpec, val_loss: float | None = 1.0, *, ok: bool = True, f1: float = 0.5,
           code: str | None = None, data: str | None = None) -> RunRecord:
    if not ok:
        return RunRecord.failure(spec, RuntimeError("boom"))
    r = RunRecord.success(spec, val_loss=val_loss, data_fingerprint=data,
                          metrics={"val": {"loss": val_loss, "f1_weighted": f1},
                                   "test": {"f1_weighted": f1}})
    if code is not None:
        r.code_fingerprint = code
    return r


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    return ResultsStore(tmp_path / "results.sqlite")


def test_grid_runs_cover_the_product_group_by_group():
    exp = parse_experiment(EXP)
    runs = grid_runs(exp)
    assert len(runs) == 2 * 1 * 2 * 3
    assert len({r.key for r in runs}) == len(runs)
    assert all(r.stage == "grid" and r.spec.seed == 0 for r in runs)
    groups = [r.group for r in runs]
    assert groups == sorted(groups, key=groups.index)  # each group's runs are contiguous
    assert [r.spec.lr for r in runs[:3]] == [1e-3, 1e-2, 1e-4]  # grid order as written
    fe = [r for r in runs if r.spec.regime == "feature_extraction"]
    assert all(r.spec.options.identity() == {"fe_path": "cached", "input_size": 32} for r in fe)
    # the same configuration planned here and given to `marsbench run` has the same key
    by_hand = RunSpec(dataset="mb-frost_cls", model="efficientnet_lite0",
                      regime="feature_extraction", seed=0, lr=1e-3, batch_size=32,
                      optimizer="adamw", weight_decay=0.05, scheduler="none", max_epochs=50,
                      patience=5, loss="auto", augment=True,
                      options={"fe_path": "cached", "input_size": 32})
    assert runs[0].key == by_hand.key


def test_checkpoint_weights_count_in_pretrained_regimes_only(tmp_path):
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"weights")
    path = tmp_path / "e.yaml"
    path.write_text("datasets: [mb-frost_cls]\nmodels:\n  - {name: timm:resnet18, weights: w.pth}"
                    "\nregimes: [scratch, fine_tuning]\ngrid_defaults: single\n")
    from marsbench.protocol import load_experiment
    import hashlib

    runs = grid_runs(load_experiment(path))
    by_regime = {r.spec.regime: r for r in runs}
    digest = hashlib.sha256(b"weights").hexdigest()
    assert by_regime["fine_tuning"].spec.weights == f"sha256:{digest}"
    assert by_regime["fine_tuning"].weights_path == str(ckpt.resolve())
    assert by_regime["scratch"].spec.weights == "default"
    assert by_regime["scratch"].weights_path is None


def test_selection_lowest_val_loss_ties_to_earlier_failed_never_win():
    exp = parse_experiment(EXP)
    runs = [r for r in grid_runs(exp) if r.group == grid_runs(exp)[0].group]
    a, b, c = runs
    group = a.group
    recs = {a.key: record(a.spec, 0.5), b.key: record(b.spec, 0.5), c.key: record(c.spec, 0.7)}
    sel = select_group(exp, group, runs, recs)
    assert sel.decided and sel.winner.spec_key == a.key and sel.value == 0.5  # tie: earlier
    recs[a.key] = record(a.spec, ok=False)
    recs[c.key] = record(c.spec, math.nan)
    sel = select_group(exp, group, runs, recs)
    assert sel.winner.spec_key == b.key and (sel.candidates, sel.failed) == (1, 2)
    recs[b.key] = record(b.spec, ok=False)
    sel = select_group(exp, group, runs, recs)
    assert sel.decided and sel.winner is None  # nothing to select
    del recs[b.key]
    sel = select_group(exp, group, runs, {a.key: record(a.spec, 0.1)})
    assert not sel.decided and sel.winner is None and sel.missing == 2
    # pending (about to be rerun) counts as missing even with a record
    full = {r.key: record(r.spec, 0.3) for r in runs}
    assert not select_group(exp, group, runs, full, pending={c.key}).decided


def test_selection_on_a_score_maximises():
    exp = parse_experiment(EXP + "selection: {metric: val.f1_weighted}\n")
    runs = grid_runs(exp)[:3]
    recs = {r.key: record(r.spec, 0.1 * i, f1=f1) for i, (r, f1) in
            enumerate(zip(runs, [0.2, 0.9, 0.4]))}
    sel = select_group(exp, runs[0].group, runs, recs)
    assert sel.winner.spec_key == runs[1].key and sel.value == 0.9


def test_plan_counts_reuse_and_final_keys(store):
    exp = parse_experiment(EXP)
    runs = grid_runs(exp)
    groups = list(dict.fromkeys(r.group for r in runs))
    g0 = [r for r in runs if r.group == groups[0]]
    g1 = [r for r in runs if r.group == groups[1]]
    # group 0: whole grid done, winner = second point; group 1: one failed, one stale, one todo
    for r, loss in zip(g0, [0.9, 0.2, 0.4]):
        store.put(record(r.spec, loss))
    store.put(record(g1[0].spec, ok=False))
    store.put(record(g1[1].spec, 0.3, code="other-code"))

    plan = make_plan(exp, store, check_data=False, check_models=False)
    grid_row, seeds_row = plan.counts()
    assert grid_row == {"stage": "grid", "planned": 12, "reused": 0, "will_run": 7,
                        "done": 3, "failed": 1, "stale": 1, "todo": 7}
    # only group 0 is decided: 3 seeds, seed 0 is the winning grid run itself
    assert seeds_row == {"stage": "seeds", "planned": 3, "reused": 1, "will_run": 2,
                         "done": 0, "failed": 0, "stale": 0, "todo": 2}
    assert plan.pending_seed_runs() == 3 * 2  # 3 undecided groups x 2 new seeds
    assert len(plan.undecided) == 3
    winner = g0[1].spec
    assert [s.run.spec for s in plan.seeds] == [winner.replace(seed=s) for s in (0, 1, 2)]
    assert plan.seeds[0].run.key == g0[1].key and plan.seeds[0].reused
    assert [s.stale.code_changed for s in plan.stale] == [True]
    assert final_keys(exp, store) == [winner.replace(seed=s).key for s in (0, 1, 2)]

    retry = make_plan(exp, store, retry_failed=True, rerun_stale=True, check_data=False,
                      check_models=False)
    assert retry.counts()[0]["will_run"] == 12 - 3


def test_stale_data_is_detected(tmp_path):
    from marsbench.sources.synth import generate

    generate("mb-frost_cls", tmp_path / "data")
    exp = parse_experiment(EXP.replace("datasets: [mb-frost_cls, mb-landmark_cls]",
                                       "datasets: [mb-frost_cls]")
                           + f"data: {{root: {tmp_path / 'data'}}}\n")
    store = ResultsStore(tmp_path / "s.sqlite")
    a, b = grid_runs(exp)[:2]
    now = data_fingerprint(a.spec)
    assert now and len(now) == 16
    store.put(record(a.spec, 0.5, data=now))
    store.put(record(b.spec, 0.5, data="0" * 16))
    plan = make_plan(exp, store, check_models=False)
    states = {s.run.key: s.state for s in plan.grid}
    assert states[a.key] == "done" and states[b.key] == "stale"
    assert [(s.stale.data_changed, s.stale.code_changed) for s in plan.stale] == [(True, False)]


def test_selections_table_roundtrip(store):
    exp = parse_experiment(EXP)
    runs = grid_runs(exp)[:3]
    for r, loss in zip(runs, [0.9, 0.2, 0.4]):
        store.put(record(r.spec, loss))
    sel = select_group(exp, runs[0].group, runs, {r.key: store.get(r.key) for r in runs})
    undecided = select_group(exp, grid_runs(exp)[3].group, grid_runs(exp)[3:6], {})
    assert write_selections(store, exp, [sel, undecided]) == 1  # undecided is not written
    table = read_selections(store.path, "small")
    assert len(table) == 1
    row = table.iloc[0]
    assert row["winner_key"] == runs[1].key and row["value"] == pytest.approx(0.2)
    assert (row["candidates"], row["failed"], row["metric"]) == (3, 0, "val_loss")
    assert '"lr": 0.01' in row["winner_config"]
    assert len(store) == 3  # the store itself still reads fine with the extra table


def test_cli_dry_run_prints_the_counts(tmp_path, store):
    exp_path = tmp_path / "small.yaml"
    exp_path.write_text(EXP)
    exp = parse_experiment(EXP)
    for r in grid_runs(exp)[:3]:
        store.put(record(r.spec, 0.5))
    from marsbench.cli.main import app

    result = CliRunner().invoke(app, ["sweep", str(exp_path), "--store", str(store.path),
                                      "--dry-run", "--no-check-data"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "4 groups" in out
    assert "│ grid │ 12 │ 3 │ 0 │ 0 │ 9 │ 9 │ 0 │" in out
    assert "│ seeds │ 3 │ 0 │ 0 │ 0 │ 2 │ 2 │ 1 │" in out
    assert "about 6 more runs after selection" in out
    assert len(store) == 3  # a dry run writes no run


AXES = EXP.replace("regimes: [feature_extraction, scratch]", "regimes: [feature_extraction]") \
    + "option_axes: {imbalance: [none, focal]}\n"


def test_option_axes_are_arms_selected_and_retrained_apart(store):
    """Each value of an option axis is its own group (never pooled in selection), its runs carry
    the option in their key, and the ``none`` arm's runs are exactly the plain runs."""
    plain, axes = parse_experiment(EXP.replace("regimes: [feature_extraction, scratch]",
                                               "regimes: [feature_extraction]")), \
        parse_experiment(AXES)
    runs = grid_runs(axes)
    groups = list(dict.fromkeys(r.group for r in runs))
    assert len(groups) == 2 * 2 and {g.arm for g in groups} == {"imbalance=none",
                                                                 "imbalance=focal"}
    none = [r.key for r in runs if r.group.arm == "imbalance=none"]
    assert none == [r.key for r in grid_runs(plain)]  # no re-keying of the plain runs
    focal = [r for r in runs if r.group.arm == "imbalance=focal"]
    assert all(r.spec.options.imbalance == "focal" for r in focal)
    assert not set(none) & {r.key for r in focal}
    assert axes.identity_hash() != plain.identity_hash()
    # the focal arm's own best point wins for it, whatever the none arm's losses are
    group = focal[0].group
    mine = [r for r in focal if r.group == group]
    for r, loss in zip(mine, [0.5, 0.4, 0.1]):
        store.put(record(r.spec, loss))
    for r in runs:
        if r.group.arm == "imbalance=none" and r.group.dataset == group.dataset:
            store.put(record(r.spec, 0.01))
    sel = make_plan(axes, store, check_data=False, check_models=False).selections[group]
    assert sel.winner.spec_key == mine[2].key
    assert write_selections(store, axes, [sel]) == 1
    row = read_selections(store.path, "small").iloc[0]
    assert row["model"] == "efficientnet_lite0 imbalance=focal"


@pytest.mark.parametrize("text", [
    EXP,
    AXES,
    AXES.replace("datasets: [mb-frost_cls, mb-landmark_cls]",
                 "datasets: [mb-landmark_cls]") + "splits: [official, observation_disjoint]\n",
    # a multi-label dataset's episodes are not planned (`not_applicable`)
    EXP.replace("datasets: [mb-frost_cls, mb-landmark_cls]",
                "datasets: [mb-landmark_cls, mb-surface_multi_label_cls]").replace(
        "regimes: [feature_extraction, scratch]", "regimes: [feature_extraction, "
        "few_shot_episodes]").replace("grid:\n  lr: [1.0e-3, 1.0e-2, 1.0e-4]\n", ""),
])
def test_group_count_is_the_number_of_groups_the_planner_makes(text):
    """`sweep --list` counts groups with `group_count`: the planner's own count, splits, option
    arms and left-out pairs included."""
    from marsbench.protocol.plan import group_count, space_runs

    exp = parse_experiment(text)
    assert group_count(exp) == len(space_runs(exp)) > 0


@pytest.mark.parametrize("text, message", [
    ("option_axes: {imbalance: [none, none]}\n", "listed twice"),
    ("option_axes: {imbalance: []}\n", "must not be empty"),
    ("option_axes: {imbalance: [none, sqrt]}\n", "sqrt"),
    ("option_axes: {input_size: [32, 64]}\n", "both an axis and a fixed option"),
])
def test_option_axes_refuse_bad_values_at_their_line(text, message):
    from marsbench.protocol.experiment import ExperimentError

    with pytest.raises(ExperimentError, match=message) as err:
        parse_experiment(EXP + text)
    assert "option_axes" in str(err.value) or "line" in str(err.value)
