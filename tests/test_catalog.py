import json
import re

import pytest
from typer.testing import CliRunner

from marsbench.catalog import Task, TaskKind, Variant, get_card, list_cards
from marsbench.cli.main import app

FACTS_NAMES = {
    "mb-atmospheric_dust_cls_edr", "mb-atmospheric_dust_cls_rdr", "mb-change_cls_ctx",
    "mb-change_cls_hirise", "mb-domars16k", "mb-frost_cls", "mb-landmark_cls", "mb-surface_cls",
    "mb-surface_multi_label_cls", "mb-boulder_seg", "mb-conequest_seg", "mb-crater_binary_seg",
    "mb-crater_multi_seg", "mb-mars_seg_mer", "mb-mars_seg_msl", "mb-mmls", "mb-s5mars",
    "mb-boulder_det", "mb-conequest_det", "mb-dust_devil_det",
}


def test_list_json_has_exactly_the_20_facts_sheet_names():
    result = CliRunner().invoke(app, ["datasets", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["name"] for r in rows} == FACTS_NAMES and len(rows) == 20
    for row in rows:
        assert {"name", "task", "num_classes", "hf_repo", "splits"} <= set(row)
        assert row["hf_repo"] == f"Mirali33/{row['name']}"
        assert set(row["splits"]) == {"train", "val", "test"}


def test_task_counts_and_facts():
    assert len(list_cards(Task.CLASSIFICATION)) == 9
    assert len(list_cards(Task.SEGMENTATION)) == 8
    assert len(list_cards(Task.DETECTION)) == 3
    assert get_card("mb-boulder_seg").split_sizes == {"train": 39, "val": 6, "test": 4}
    assert get_card("mb-mmls").bands == 7
    assert get_card("mb-change_cls_ctx").kind is TaskKind.IMAGE_PAIR
    assert get_card("mb-surface_multi_label_cls").kind is TaskKind.MULTILABEL
    assert get_card("mb-domars16k").class_names[13] == "cra"
    assert get_card("mb-landmark_cls").class_names[-1] == "spider"
    # names only published in the data are not invented on the card
    assert get_card("mb-surface_cls").class_names is None
    assert get_card("mb-mars_seg_msl").class_names is None
    # boulder has no 1 % / 2 % partitions
    assert "partition:0.01" not in get_card("mb-boulder_seg").variants()
    assert "few_shot:5" not in get_card("mb-boulder_seg").variants()


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean 'mb-domars16k'"):
        get_card("mb-domars")


def test_info_command_prints_card_and_local_presence(tmp_path):
    result = CliRunner().invoke(app, ["datasets", "info", "mb-frost_cls", "--root", str(tmp_path)],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Mirali33/mb-frost_cls" in result.output
    assert re.search(r"local \(zenodo\).*absent", result.output)


@pytest.mark.parametrize("text,expected", [
    ("full", "full"), (None, "full"), ("few_shot:5", "few_shot:5"),
    ("partition:0.1", "partition:0.10"), ("partition:0.01", "partition:0.01"),
])
def test_variant_parse(text, expected):
    assert str(Variant.parse(text)) == expected


@pytest.mark.parametrize("bad", ["few_shot:x", "partition:1.5", "partition:0", "half"])
def test_variant_parse_rejects(bad):
    with pytest.raises(ValueError, match="variant"):
        Variant.parse(bad)


def test_variant_file_and_split_names():
    v = Variant.parse("partition:0.1")
    assert v.folder_csv == "partitions/0.10x_partition.csv"
    assert v.hf_splits == ("partition_train_0.10x_partition", "0.10x_partition")
    assert Variant.parse("few_shot:2").hf_splits == ("few_shot_train_2_shot",)
