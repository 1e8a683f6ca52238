"""Several processes for one run through PyTorch DDP (torchrun, gloo on the CPU), every task."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from marsbench.runs.store import ResultsStore

CASES = {
    "classification": ("mb-landmark_cls", "efficientnet_lite0", ["--input-size", "32"]),
    "segmentation": ("mb-crater_binary_seg", "unet_efficientnet_lite0",
                     ["--option", "input_policy=reference", "--option", "input_size=64"]),
    "detection": ("mb-boulder_det", "fasterrcnn_efficientnet_lite0",
                  ["--option", "input_policy=reference", "--option", "input_size=64"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(CASES))
def test_torchrun_two_processes_shard_the_data_and_rank0_records(synth_suite, tmp_path, task):
    dataset, model, options = CASES[task]
    root = synth_suite["folder"][dataset].parent
    store = tmp_path / "r.sqlite"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "marsbench", "run", "--dataset",
           dataset, "--root", str(root), "--model", model, "--regime", "fine_tuning",
           "--max-epochs", "1", "--batch-size", "4", *options,
           "--store", str(store), "--out", str(tmp_path / "out"), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MARSBENCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (record,) = ResultsStore(store).records()  # rank 1 wrote nothing
    assert record.ok and record.extra["world_size"] == 2
    n_train = record.extra["split_sizes"]["train"]
    assert record.extra["train_samples_per_rank"] == (n_train + 1) // 2
    assert len(list((tmp_path / "out" / "predictions").iterdir())) == 1
