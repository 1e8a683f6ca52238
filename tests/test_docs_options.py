"""docs/options.md stays true: it lists every option, and its command does what it says."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from marsbench.runs.options import OPTION_CLASSES

DOC = Path(__file__).resolve().parents[1] / "docs" / "options.md"


def test_every_option_is_documented():
    text = DOC.read_text()
    for task, cls in OPTION_CLASSES.items():
        for f in dataclasses.fields(cls):
            assert re.search(rf"\| {task} \| [^|]*`{f.name}`", text), (task, f.name)


def test_the_documented_command_fails_as_documented(tmp_path):
    command = next(line for line in DOC.read_text().splitlines()
                   if line.startswith("marsbench run"))
    argv = shlex.split(command)
    marsbench = Path(sys.executable).with_name("marsbench")
    env = {**os.environ, "MARSBENCH_DATA": str(tmp_path / "no-data")}
    out = subprocess.run([str(marsbench), *argv[1:]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr
    assert "error: unknown segmentation option (options): tile_sise; did you mean 'tile_size'?" \
        in out.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything was written
