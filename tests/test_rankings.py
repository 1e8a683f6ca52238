"""marsbench.aggregate.rankings: win probabilities, significance tiers, rank intervals, seeds
needed; and the ```py blocks of docs/rankings_calibration.md (run here, see the last test)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.stats import trim_mean

from marsbench.aggregate import (
    Normaliser, rank_intervals, seed_power_table, significance_tiers, t_test_power,
    t_test_sample_size, win_probability_matrix,
)
from marsbench.aggregate.rankings import _masked_statistic

DOC = Path(__file__).resolve().parents[1] / "docs" / "rankings_calibration.md"
ROUNDS = 500  # enough for the planted effects below, cheap on a shared 2-core machine


def planted(means: dict[str, float], *, datasets: int = 4, seeds: int = 5, sd: float = 0.02,
            rng: int = 0, offsets: bool = True) -> pd.DataFrame:
    """A tidy table: model m scores means[m] + a per-dataset offset + N(0, sd) noise per seed."""
    gen = np.random.default_rng(rng)
    rows = []
    for model, mu in means.items():
        for d in range(datasets):
            for s in range(seeds):
                rows.append({"model": model, "dataset": f"user-ds{d}", "task": "classification",
                             "regime": "fine_tuning", "variant": "full", "seed": s,
                             "metric": "f1_weighted",
                             "value": mu + (0.05 * d if offsets else 0.0) + gen.normal(0.0, sd)})
    return pd.DataFrame(rows)


# --- win probabilities ----------------------------------------------------------------------------


def test_separated_models_win_probabilities_are_one_and_zero():
    table = planted({"strong": 0.9, "middle": 0.7, "weak": 0.5})
    win = win_probability_matrix(table, rounds=ROUNDS)
    assert list(win.index) == ["strong", "middle", "weak"] == list(win.columns)
    assert win.loc["strong", "middle"] == 1.0 and win.loc["middle", "weak"] == 1.0
    assert win.loc["weak", "strong"] == 0.0 and win.loc["middle", "strong"] == 0.0
    assert np.isnan(np.diag(win.to_numpy())).all()


def test_equal_models_win_probability_near_one_half():
    # same distribution, independent noise: the paired bootstrap should not pick a winner
    table = pd.concat([planted({"a": 0.8}, rng=1), planted({"b": 0.8}, rng=2)], ignore_index=True)
    win = win_probability_matrix(table, rounds=ROUNDS)
    assert 0.1 < win.loc["a", "b"] < 0.9
    # many such pairs: the win probability is spread around 1/2, not piled at 0 or 1
    probs = [win_probability_matrix(pd.concat([planted({"a": 0.8}, rng=2 * k),
                                               planted({"b": 0.8}, rng=2 * k + 1)]),
                                    rounds=200).loc["a", "b"] for k in range(20)]
    assert abs(np.mean(probs) - 0.5) < 0.15


def test_win_matrix_is_antisymmetric():
    table = planted({"a": 0.80, "b": 0.805, "c": 0.79, "d": 0.81}, sd=0.03)
    win = win_probability_matrix(table, rounds=ROUNDS).to_numpy()
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose((win + win.T)[off], 1.0, atol=1e-12)
    assert ((win[off] > 0) & (win[off] < 1)).any()  # close models: not all decided


def test_identical_models_tie_at_one_half():
    table = planted({"a": 0.8})
    both = pd.concat([table, table.assign(model="a_copy")], ignore_index=True)
    win = win_probability_matrix(both, rounds=100)
    assert win.loc["a", "a_copy"] == 0.5 == win.loc["a_copy", "a"]


def test_win_probability_on_a_hand_checkable_table():
    # one dataset, two seeds: A beats B on seed 0 by 0.1 and loses on seed 1 by 0.05. A resample
    # of the two seeds is (0, 0), (0, 1), (1, 0) or (1, 1) with probability 1/4, 1/2 (two
    # orders), 1/4; the mean difference is +0.1, +0.025, -0.05: P(A > B) = 3/4.
    rows = [("A", 0, 0.6), ("A", 1, 0.5), ("B", 0, 0.5), ("B", 1, 0.55)]
    table = pd.DataFrame([{"model": m, "dataset": "user-x", "seed": s, "metric": "acc", "value": v}
                          for m, s, v in rows])
    win = win_probability_matrix(table, rounds=20000, seed=3)
    assert win.loc["A", "B"] == pytest.approx(0.75, abs=0.01)


def test_pairs_use_only_common_cells():
    # "b" lacks dataset 3, where "a" is weak; paired on the common cells "b" always wins.
    table = planted({"a": 0.8, "b": 0.82}, datasets=4, sd=0.002)
    table.loc[(table["model"] == "a") & (table["dataset"] == "user-ds3"), "value"] = 0.0
    ragged = table[~((table["model"] == "b") & (table["dataset"] == "user-ds3"))]
    win = win_probability_matrix(ragged, rounds=ROUNDS, resample_datasets=False)
    assert win.loc["b", "a"] == 1.0


def test_same_seed_same_outputs_and_seed_matters():
    table = planted({"a": 0.80, "b": 0.805, "c": 0.79}, sd=0.03)
    for fn in (win_probability_matrix, significance_tiers, rank_intervals):
        pd.testing.assert_frame_equal(fn(table, rounds=300, seed=7), fn(table, rounds=300, seed=7))
    assert not win_probability_matrix(table, rounds=300, seed=7).equals(
        win_probability_matrix(table, rounds=300, seed=8))


# --- tiers -----------------------------------------------------------------------------------------


def test_tiers_separate_distinct_and_join_equal_models():
    table = pd.concat([planted({"top": 0.9}, rng=1), planted({"mid_1": 0.7}, rng=2),
                       planted({"mid_2": 0.7}, rng=3), planted({"low": 0.5}, rng=4)],
                      ignore_index=True)
    tiers = significance_tiers(table, rounds=ROUNDS).set_index("model")
    assert list(tiers.columns) == ["score", "tier", "leader", "ci_low", "ci_high"]
    assert tiers.loc["top", "tier"] == 1
    assert tiers.loc["mid_1", "tier"] == tiers.loc["mid_2", "tier"] == 2
    assert tiers.loc["low", "tier"] == 3
    follower = "mid_2" if tiers.loc["mid_1", "leader"] == "mid_1" else "mid_1"
    assert tiers.loc[follower, "ci_low"] <= 0 <= tiers.loc[follower, "ci_high"]
    assert tiers[tiers.index == tiers["leader"]][["ci_low", "ci_high"]].isna().all().all()
    # score order, scores = pooled means
    assert tiers["score"].is_monotonic_decreasing
    assert tiers.loc["top", "score"] == pytest.approx(
        table.loc[table["model"] == "top", "value"].mean())


def test_tier_interval_is_the_percentile_interval_of_the_paired_difference():
    # one dataset, no dataset resampling: the paired difference is a plain bootstrap of the mean
    # of per-seed differences, reproducible with the same generator calls.
    table = planted({"a": 0.80, "b": 0.80}, datasets=1, seeds=8, sd=0.03, rng=1)
    tiers = significance_tiers(table, rounds=1000, seed=5, resample_datasets=False)
    leader, other = tiers["model"]
    values = {m: table[table.model == m]["value"].to_numpy() for m in ("a", "b")}
    diff = values[leader] - values[other]
    gen = np.random.default_rng(5)
    slots = np.minimum((gen.random((1000, 1, 8)) * 8).astype(int), 7).reshape(1000, 8)
    low, high = np.percentile(diff[slots].mean(axis=1), [2.5, 97.5])
    assert low <= 0  # close models: one tier
    assert list(tiers["tier"]) == [1, 1]
    assert (tiers["ci_low"].iloc[1], tiers["ci_high"].iloc[1]) == pytest.approx((low, high))


# --- rank intervals -------------------------------------------------------------------------------


def test_rank_intervals_contain_true_rank_of_separated_models():
    truth = {"m1": 0.9, "m2": 0.8, "m3": 0.7, "m4": 0.6}
    ranks = rank_intervals(planted(truth), rounds=ROUNDS).set_index("model")
    for true_rank, model in enumerate(truth, start=1):
        row = ranks.loc[model]
        assert row["rank_point"] == true_rank
        assert row["rank_low"] <= true_rank <= row["rank_high"]
        assert row["rank_low"] == row["rank_high"] == true_rank  # clearly separated: exact


def test_rank_intervals_of_equal_models_overlap():
    table = pd.concat([planted({"a": 0.8}, rng=1), planted({"b": 0.8}, rng=2),
                       planted({"z": 0.5}, rng=3)], ignore_index=True)
    ranks = rank_intervals(table, rounds=ROUNDS).set_index("model")
    assert ranks.loc["a", "rank_low"] == ranks.loc["b", "rank_low"] == 1
    assert ranks.loc["a", "rank_high"] == ranks.loc["b", "rank_high"] == 2
    assert (ranks.loc["z", "rank_low"], ranks.loc["z", "rank_high"]) == (3, 3)


# --- inputs and statistics ------------------------------------------------------------------------


def test_statistics_and_normalised_scores():
    table = planted({"a": 0.9, "b": 0.5})
    for statistic in ("iqm", "median", np.mean, lambda x: float(np.max(x))):
        win = win_probability_matrix(table, statistic=statistic, rounds=100)
        assert win.loc["a", "b"] == 1.0
    norm = Normaliser.from_table(table, version="t", source="test").apply(table)
    tiers = significance_tiers(norm, rounds=100)  # a Normalised: its 'score' column is used
    assert tiers["score"].max() <= 1.0 and list(tiers["tier"]) == [1, 2]


def test_masked_iqm_matches_scipy_trim_mean():
    gen = np.random.default_rng(0)
    values = gen.normal(size=(50, 13))
    values[gen.random(values.shape) < 0.3] = np.nan
    got = _masked_statistic(values, "iqm")
    want = [trim_mean(row[~np.isnan(row)], 0.25) for row in values]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(_masked_statistic(values, "median"), np.nanmedian(values, axis=1))


def test_metric_choice_and_ambiguous_tables():
    table = planted({"a": 0.9, "b": 0.5})
    both = pd.concat([table, table.assign(metric="accuracy", value=1 - table["value"])])
    # user datasets: the classification headline f1_weighted is chosen
    assert win_probability_matrix(both, rounds=50).loc["a", "b"] == 1.0
    assert win_probability_matrix(both, "accuracy", rounds=50).loc["b", "a"] == 1.0
    with pytest.raises(ValueError, match="not in the table"):
        win_probability_matrix(both, "iou")
    regimes = pd.concat([table, table.assign(regime="scratch")])
    with pytest.raises(ValueError, match=r"differ in \['regime'\]"):
        significance_tiers(regimes)


# --- seeds needed ---------------------------------------------------------------------------------

# statsmodels TTestIndPower().solve_power(effect_size=d, alpha=0.05, power=0.8) (also G*Power's
# per-group sample sizes 64, 26, 394 once rounded up). statsmodels is not installed here, so the
# values are written out; the power function is checked against scipy's noncentral t below.
SOLVE_POWER = {0.5: 63.76561, 0.8: 25.52457, 0.2: 393.4057}


@pytest.mark.parametrize("d", sorted(SOLVE_POWER))
def test_sample_size_matches_statsmodels(d):
    assert t_test_sample_size(d) == pytest.approx(SOLVE_POWER[d], abs=2e-4)
    assert t_test_power(d, t_test_sample_size(d)) == pytest.approx(0.8, abs=1e-8)


def test_power_is_the_noncentral_t_tail():
    n, d = 10, 1.2
    df, ncp = 2 * n - 2, d * np.sqrt(n / 2)
    crit = sps.t.ppf(0.975, df)
    assert t_test_power(d, n) == pytest.approx(sps.nct.sf(crit, df, ncp) + sps.nct.cdf(-crit, df, ncp))
    assert t_test_power(0.0, n) == pytest.approx(0.05)  # no effect: power = alpha
    # Monte Carlo check of the definition (two-sided two-sample t-test at n = 10 per group)
    gen = np.random.default_rng(0)
    x, y = gen.normal(d, 1, (4000, n)), gen.normal(0, 1, (4000, n))
    rejected = sps.ttest_ind(x, y, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(t_test_power(d, n), abs=0.025)


def test_seed_power_table_on_planted_sd():
    # two models on two datasets, seeds with sample sd exactly 0.02 (values +-0.02 around the mean
    # in pairs give var = 4 * 0.02**2 / 3 for 4 seeds; scale so s = 0.02).
    s = 0.02 / np.sqrt(4 / 3)
    rows = []
    for model in ("a", "b"):
        for d, base in (("user-x", 0.5), ("user-y", 0.7)):
            for seed, e in enumerate((s, -s, s, -s)):
                rows.append({"model": model, "dataset": d, "seed": seed, "metric": "acc",
                             "value": base + e})
    table = pd.DataFrame(rows)
    power = seed_power_table(table, deltas=(0.01, 0.016, 0.04))
    assert list(power.columns) == ["dataset", "sd", "df", "delta", "effect_size", "seeds_exact",
                                   "seeds_needed", "achieved_power"]
    assert len(power) == 6
    np.testing.assert_allclose(power["sd"], 0.02)
    assert set(power["df"]) == {6}  # two models x (4 - 1)
    by_delta = power[power["dataset"] == "user-x"].set_index("delta")
    # d = 0.5, 0.8, 2.0 -> statsmodels' 63.77, 25.52 -> 64 and 26 seeds per model
    assert by_delta.loc[0.01, "seeds_needed"] == 64 and by_delta.loc[0.016, "seeds_needed"] == 26
    assert by_delta.loc[0.01, "seeds_exact"] == pytest.approx(SOLVE_POWER[0.5], abs=2e-4)
    assert by_delta.loc[0.04, "seeds_needed"] == int(np.ceil(t_test_sample_size(2.0)))
    for row in power.itertuples():
        assert row.achieved_power >= 0.8
        assert t_test_power(row.effect_size, row.seeds_needed - 1) < 0.8 or row.seeds_needed == 2
    overall = seed_power_table(table, deltas=(0.01,), by=None)
    assert len(overall) == 1 and overall["df"].iloc[0] == 12
    assert overall["seeds_needed"].iloc[0] == 64


def test_seed_power_table_pools_variances():
    rows = [{"model": "a", "dataset": "user-x", "seed": i, "metric": "acc", "value": v}
            for i, v in enumerate([0.1, 0.2, 0.3])]
    rows += [{"model": "b", "dataset": "user-x", "seed": i, "metric": "acc", "value": v}
             for i, v in enumerate([0.5, 0.5, 0.6, 0.7])]
    rows += [{"model": "c", "dataset": "user-x", "seed": 0, "metric": "acc", "value": 0.9}]  # 1 seed
    power = seed_power_table(pd.DataFrame(rows), deltas=(0.05,))
    var_a, var_b = np.var([0.1, 0.2, 0.3], ddof=1), np.var([0.5, 0.5, 0.6, 0.7], ddof=1)
    assert power["sd"].iloc[0] == pytest.approx(np.sqrt((2 * var_a + 3 * var_b) / 5))
    assert power["df"].iloc[0] == 5
    one_seed = seed_power_table(pd.DataFrame(rows[-1:]), deltas=(0.05,), by=None)
    assert one_seed["seeds_needed"].iloc[0] == -1 and np.isnan(one_seed["sd"].iloc[0])


# --- the doc's examples ----------------------------------------------------------------------------


def doc_blocks() -> list[str]:
    """The ```py blocks of docs/rankings_calibration.md (```py, not ```python: the documented-
    commands test requires a case for every ```python block of docs/, and this doc's run here)."""
    return re.findall(r"^```py\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_docs_blocks_run(tmp_path, monkeypatch):
    blocks = doc_blocks()
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, code in enumerate(blocks, start=1):
        exec(compile(code, f"docs/rankings_calibration.md py block {number}", "exec"), namespace)  # noqa: S102
