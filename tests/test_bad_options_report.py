"""Scores outside [0, 1] in a results CSV are refused, naming the file, line, column and value."""

from __future__ import annotations

import pytest

from marsbench.aggregate.published import read_published_csv
from marsbench.aggregate.table import ResultsTableError, read_results_csv


def test_published_csv_score_above_one_names_its_line(tmp_path):
    path = tmp_path / "classification.csv"
    path.write_text("model,dataset,seed,test metric,partition name\n"
                    "m,mb-domars16k,0,0.5,default\n"
                    "m,mb-domars16k,1,,default\n"  # a failed run: dropped, lines keep counting
                    "m,mb-domars16k,2,87.5,default\n")
    with pytest.warns(Warning), pytest.raises(ResultsTableError) as info:
        read_published_csv(path)
    assert str(info.value).startswith(f"{path} line 4: column 'value' of metric 'f1_weighted' "
                                      "is '87.5', outside [0, 1]")
    assert "divide by 100" in str(info.value)


@pytest.mark.parametrize("metric, value, refused", [
    ("f1_weighted", "-0.1", True), ("map_50_95", "1.01", True), ("iou_reference", "1", False),
    ("loss", "3.2", False), ("count_mae", "12", False),
])
def test_tidy_csv_bounded_metrics_only(tmp_path, metric, value, refused):
    path = tmp_path / "runs.csv"
    path.write_text("model,dataset,task,regime,variant,seed,metric,value\n"
                    f"m,mine,classification,feature_extraction,full,0,{metric},{value}\n")
    if refused:
        with pytest.raises(ResultsTableError, match=f"runs.csv line 2: .*{metric}"):
            read_results_csv(path)
    else:
        assert read_results_csv(path)["value"].tolist() == [float(value)]
