"""Every bad input to every command is one clear line: ``error: ...`` on stderr, non-zero exit,
no traceback, and the file or value at fault named in the message.

The table `CASES` drives the CLI through typer's CliRunner; ``{tmp}`` in an argument is the
test's folder, filled by `bad_inputs` with the broken files. Run this file as a script to print
the counts: ``python tests/test_cli_errors.py`` -> tried / clear / traceback / silent.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marsbench.cli.main import app

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    expect: tuple[str, ...]  # substrings of the error line: the file or value, the fix
    code: int = 2
    env: dict = field(default_factory=dict)
    absent: tuple[str, ...] = ()  # paths ({tmp}/...) that must still not exist afterwards


def case(id: str, args: str | list[str], *expect: str, code: int = 2, env=None, absent=()):
    return Case(id, tuple(args.split() if isinstance(args, str) else args), expect, code,
                env or {}, tuple(absent))


STORES = [  # (name, what the message must say)
    ("afolder", "is a folder"),
    ("corrupt.sqlite", "not an SQLite database"),
    ("foreign.sqlite", "not a marsbench results store"),
    ("newer.sqlite", "upgrade marsbench"),
    ("afile/store.sqlite", "a part of its path is a file"),
]

CASES = [
    # -- global --------------------------------------------------------------------------------
    case("unknown-command", "bogus", "bogus"),
    case("unknown-option", "report --bogus", "--bogus", "marsbench report --help"),
    case("missing-required-option", "report", "--out"),
    # -- datasets ------------------------------------------------------------------------------
    case("datasets-list-task", "datasets list --task bogus", "--task", "bogus",
         "classification"),
    case("datasets-info-typo", "datasets info mb-frost_clss", "mb-frost_clss",
         "did you mean 'mb-frost_cls'"),
    case("datasets-info-root-missing", "datasets info mb-frost_cls --root {tmp}/nowhere",
         "{tmp}/nowhere", "does not exist"),
    case("datasets-info-root-file", "datasets info mb-frost_cls --root {tmp}/afile",
         "{tmp}/afile", "not a folder"),
    case("datasets-check-typo", "datasets check mb-domars16", "mb-domars16",
         "did you mean 'mb-domars16k'"),
    case("datasets-check-root-missing", "datasets check mb-frost_cls --root {tmp}/nowhere",
         "{tmp}/nowhere", "does not exist"),
    case("datasets-check-folder-missing", "datasets check {tmp}/nowhere/mb-x",
         "{tmp}/nowhere/mb-x", "no dataset folder"),
    case("datasets-check-not-a-dataset", "datasets check {tmp}/afolder", "{tmp}/afolder",
         "Mars-Bench folder", code=1),  # `check` reports problems with exit code 1
    case("datasets-check-file", "datasets check {tmp}/afile", "{tmp}/afile", "is a file"),
    case("datasets-check-source", "datasets check mb-frost_cls --source zenodoo", "zenodoo",
         "--source"),
    case("datasets-check-absent", "datasets check mb-frost_cls --root {tmp}/afolder",
         "mb-frost_cls", "not present locally"),
    case("datasets-synth-typo", "datasets synth mb-frost --out {tmp}/synth", "mb-frost",
         "did you mean", absent=["{tmp}/synth"]),
    case("datasets-synth-format", "datasets synth mb-frost_cls --out {tmp}/s --format csv",
         "csv", "--format"),
    case("datasets-synth-out-file", "datasets synth mb-frost_cls --out {tmp}/afile",
         "{tmp}/afile", "--out"),
    case("datasets-download-typo", "datasets download mb-frots_cls --root {tmp}/d",
         "mb-frots_cls", "did you mean 'mb-frost_cls'", absent=["{tmp}/d"]),
    case("datasets-download-source", "datasets download mb-frost_cls --source s3 --root {tmp}/d",
         "s3", "--source", absent=["{tmp}/d"]),
    case("datasets-download-root-file", "datasets download mb-frost_cls --root {tmp}/afile/x",
         "{tmp}/afile", "a part of its path is a file"),
    # -- models --------------------------------------------------------------------------------
    case("models-list-task", "models list --task detectoin", "detectoin",
         "did you mean 'detection'"),
    case("models-info-typo", "models info efficientnet_lite", "efficientnet_lite",
         "did you mean 'efficientnet_lite0'"),
    case("models-info-timm-typo", "models info timm:resnet5", "timm:resnet5", "did you mean"),
    # -- report --------------------------------------------------------------------------------
    case("report-no-input", "report --out {tmp}/r", "--store", "--csv"),
    case("report-store-missing", "report --store {tmp}/nope.sqlite --out {tmp}/r",
         "{tmp}/nope.sqlite", "no results store", absent=["{tmp}/nope.sqlite", "{tmp}/r"]),
    *[case(f"report-store-{name.split('.')[0].split('/')[0]}",
           f"report --store {{tmp}}/{name} --out {{tmp}}/r", name.split("/")[0], text)
      for name, text in STORES if "/" not in name],
    case("report-store-zero-bytes", "report --store {tmp}/empty.csv --out {tmp}/r",
         "{tmp}/empty.csv", "empty file"),
    case("report-store-empty", "report --store {tmp}/empty.sqlite --out {tmp}/r",
         "{tmp}/empty.sqlite", "no successful runs", "0 run(s)"),
    case("report-store-only-failed", "report --store {tmp}/failed.sqlite --out {tmp}/r",
         "{tmp}/failed.sqlite", "no successful runs", "1 failed"),
    case("report-csv-missing", "report --csv {tmp}/nope.csv --out {tmp}/r", "{tmp}/nope.csv",
         "no such file"),
    case("report-csv-folder", "report --csv {tmp}/afolder --out {tmp}/r", "{tmp}/afolder",
         "folder"),
    case("report-csv-binary", "report --csv {tmp}/binary.csv --out {tmp}/r", "{tmp}/binary.csv",
         "not a text CSV"),
    case("report-csv-empty", "report --csv {tmp}/empty.csv --out {tmp}/r", "{tmp}/empty.csv",
         "cannot be read as CSV"),
    case("report-csv-foreign", "report --csv {tmp}/foreign.csv --out {tmp}/r",
         "{tmp}/foreign.csv", "not a published Mars-Bench results CSV"),
    case("report-normaliser-bad-json",
         "report --csv {tmp}/good.csv --out {tmp}/r --normaliser {tmp}/bad.json",
         "bad.json", "not valid JSON"),
    case("report-normaliser-typo", "report --csv {tmp}/good.csv --out {tmp}/r --normaliser papr",
         "papr", "paper"),
    case("report-metric", "report --csv {tmp}/good.csv --out {tmp}/r --metric f1", "'f1'",
         "DATASET=METRIC"),
    case("report-metric-dataset-typo", "report --csv {tmp}/good.csv --out {tmp}/r --metric "
         "mb-domars16x=f1_weighted", "mb-domars16x=f1_weighted", "did you mean 'mb-domars16k'",
         absent=["{tmp}/r"]),
    case("report-csv-score-over-1", "report --csv {tmp}/over1.csv --out {tmp}/r",
         "{tmp}/over1.csv line 3", "'value'", "f1_weighted", "1.7", "outside [0, 1]",
         absent=["{tmp}/r"]),
    *[case(f"{cmd}-confidence-{v}", f"{cmd} {args} --confidence {v}", "--confidence", v,
           "from 0.5 to 0.999")
      for cmd, args in (("report", "--csv {tmp}/good.csv --out {tmp}/r"),
                        ("compare", "a b --store {tmp}/empty.sqlite"))
      for v in ("nan", "1.5", "0.1")],
    case("report-out-file", "report --csv {tmp}/good.csv --out {tmp}/afile", "{tmp}/afile",
         "--out"),
    case("report-rounds-0", "report --csv {tmp}/good.csv --out {tmp}/r --rounds 0", "--rounds",
         "greater than or equal to 1"),
    # -- sweep ---------------------------------------------------------------------------------
    case("sweep-no-experiment", "sweep", "experiment file", "--list"),
    case("sweep-experiment-missing", "sweep {tmp}/nope.yaml --dry-run", "nope.yaml"),
    case("sweep-experiment-shipped-typo", "sweep paper:main_clasification --dry-run",
         "paper:main_classification"),
    case("sweep-experiment-bad-yaml", "sweep {tmp}/bad.yaml --dry-run", "bad.yaml", "YAML"),
    case("sweep-experiment-unknown-key", "sweep {tmp}/typo.yaml --dry-run", "typo.yaml",
         "did you mean 'regimes'"),
    case("sweep-experiment-folder", "sweep {tmp}/afolder --dry-run", "afolder"),
    case("sweep-executor", "sweep {tmp}/exp.yaml --executor threads --store {tmp}/s.sqlite",
         "threads", "--executor", absent=["{tmp}/s.sqlite"]),
    *[case(f"sweep-{opt.strip('-')}-{value}", f"sweep {{tmp}}/exp.yaml {opt} {value} --store "
           "{tmp}/s.sqlite", opt, value, "at most 65536", absent=["{tmp}/s.sqlite"])
      for opt, value in (("--workers", "0"), ("--workers", "99999999999999999999"),
                         ("--threads", "-1"), ("--gpus-per-run", "-1"),
                         ("--cpus-per-run", "nan"), ("--cpus-per-run", "0"))],
    case("demo-workers", "demo --workers 0 --out {tmp}/demo", "--workers", "at least 1",
         absent=["{tmp}/demo"]),
    case("synth-seed", "datasets synth mb-frost_cls --out {tmp}/syn --seed -1", "--seed",
         "at most 4294967295", absent=["{tmp}/syn"]),
    case("check-ignore-index", "datasets check mb-frost_cls --ignore-index -1", "--ignore-index",
         "at most 65535"),
    case("report-seed", "report --figure figure:aggregate --published --seed -1 --out {tmp}/r",
         "--seed", absent=["{tmp}/r"]),
    case("sweep-source", "sweep {tmp}/exp.yaml --source parquet --store {tmp}/s.sqlite",
         "parquet", "--source", absent=["{tmp}/s.sqlite"]),
    case("sweep-root-missing", "sweep {tmp}/exp.yaml --root {tmp}/nowhere --store {tmp}/s.sqlite",
         "{tmp}/nowhere", "does not exist", absent=["{tmp}/s.sqlite"]),
    case("sweep-device-cuda", "sweep {tmp}/exp.yaml --device cuda --store {tmp}/s.sqlite",
         "--device", "cuda", "CUDA is not available", absent=["{tmp}/s.sqlite"]),
    case("sweep-device-typo", "sweep {tmp}/exp.yaml --device gpu --store {tmp}/s.sqlite",
         "gpu", "unknown device", absent=["{tmp}/s.sqlite"]),
    case("sweep-out-file", "sweep {tmp}/exp.yaml --out {tmp}/afile --store {tmp}/s.sqlite",
         "{tmp}/afile", "--out", absent=["{tmp}/s.sqlite"]),
    *[case(f"sweep-store-{name.split('.')[0].split('/')[0]}",
           f"sweep {{tmp}}/exp.yaml --dry-run --no-check-data --store {{tmp}}/{name}",
           name.rsplit("/", 1)[0] if "/" in name else name, text) for name, text in STORES],
    # -- vlm (no request is ever sent: each is refused first) ------------------------------------
    case("vlm-no-api-key", "vlm --dataset {tmp}/mini --provider openai --model m "
         "--store {tmp}/s.sqlite --cache {tmp}/c.sqlite", "OPENAI_API_KEY",
         env={"OPENAI_API_KEY": None}),
    case("vlm-provider", "vlm --dataset mb-frost_cls --provider anthropic --model m",
         "anthropic", "--provider"),
    case("vlm-dataset-typo", "vlm --dataset mb-frost --provider openai --model m", "mb-frost",
         "did you mean"),
    case("vlm-root-missing", "vlm --dataset mb-frost_cls --provider openai --model m "
         "--root {tmp}/nowhere", "{tmp}/nowhere", "does not exist"),
    case("vlm-prompt-missing", "vlm --dataset {tmp}/mini --provider openai --model m "
         "--prompt {tmp}/nope.yaml --cache {tmp}/c.sqlite", "{tmp}/nope.yaml", "prompt"),
    case("vlm-cache-folder", "vlm --dataset {tmp}/mini --provider openai --model m "
         "--cache {tmp}/afolder", "{tmp}/afolder", "--cache"),
    case("vlm-predictions-folder", "vlm --dataset {tmp}/mini --provider openai --model m "
         "--cache {tmp}/c.sqlite --predictions {tmp}/afolder", "{tmp}/afolder",
         "--predictions"),
    *[case(f"vlm-store-{name.split('.')[0].split('/')[0]}",
           f"vlm --dataset {{tmp}}/mini --provider openai --model m --cache {{tmp}}/c.sqlite "
           f"--store {{tmp}}/{name}", name.rsplit("/", 1)[0] if "/" in name else name, text,
           env={"OPENAI_API_KEY": "sk-test"})
      for name, text in STORES],
    *[case(f"vlm-{flag}-{value}", f"vlm --dataset {{tmp}}/mini --provider openai --model m "
           f"--cache {{tmp}}/c.sqlite --store {{tmp}}/s.sqlite --{flag} {value}", f"--{flag}",
           value, fix, env={"OPENAI_API_KEY": "sk-test"}, absent=["{tmp}/s.sqlite"])
      for flag, value, fix in (("temperature", "nan", ">= 0"), ("temperature", "-1", ">= 0"),
                               ("temperature", "warm", ">= 0"), ("timeout", "-5", "positive"),
                               ("timeout", "nan", "positive"), ("timeout", "0", "positive"),
                               ("base-url", "notaurl", "http(s) URL"))],
    case("vlm-split", "vlm --dataset mb-frost_cls --provider openai --model m --split tset",
         "tset", "did you mean 'test'"),
    # -- run (its options belong to cli/run.py; the handler makes each one line) ------------------
    case("run-dataset-typo", "run --dataset mb-frost_clss --model efficientnet_lite0 "
         "--regime scratch --store {tmp}/s.sqlite", "mb-frost_clss", "did you mean",
         absent=["{tmp}/s.sqlite"]),
    case("run-model-typo", "run --dataset mb-frost_cls --model efficientnet_lite "
         "--regime scratch --store {tmp}/s.sqlite", "efficientnet_lite", "did you mean",
         absent=["{tmp}/s.sqlite"]),
    case("run-weights-folder", "run --dataset mb-frost_cls --model efficientnet_lite0 "
         "--regime fine_tuning --weights {tmp}/afolder --store {tmp}/s.sqlite",
         "{tmp}/afolder", "folder", absent=["{tmp}/s.sqlite"]),
    case("run-weights-missing", "run --dataset mb-frost_cls --model efficientnet_lite0 "
         "--regime fine_tuning --weights {tmp}/nope.pt --store {tmp}/s.sqlite",
         "{tmp}/nope.pt", absent=["{tmp}/s.sqlite"]),
    case("run-root-missing", "run --dataset mb-frost_cls --model efficientnet_lite0 "
         "--regime scratch --root {tmp}/nowhere --store {tmp}/s.sqlite", "{tmp}/nowhere",
         absent=["{tmp}/s.sqlite"]),
    case("run-input-size-0", "run --dataset mb-frost_cls --model efficientnet_lite0 "
         "--regime scratch --input-size 0 --store {tmp}/s.sqlite", "input_size", "0",
         absent=["{tmp}/s.sqlite"]),
    case("run-input-size-huge", "run --dataset {tmp}/mini --model efficientnet_lite0 "
         "--regime scratch --input-size 1000000 --store {tmp}/s.sqlite", "input_size",
         "1000000", "at most 8192", absent=["{tmp}/s.sqlite"]),
    case("run-option-tile-size-huge", "run --dataset mb-crater_binary_seg --model "
         "unet_efficientnet_lite0 --regime scratch -o input_policy=tile -o tile_size=99999 "
         "--store {tmp}/s.sqlite", "tile_size", "99999", "at most 8192",
         absent=["{tmp}/s.sqlite"]),
    *[case(f"run-weights-{name.split('.')[0]}", "run --dataset {tmp}/mini --model "
           f"efficientnet_lite0 --regime fine_tuning --weights {{tmp}}/{name} "
           "--store {tmp}/s.sqlite", name, text, absent=["{tmp}/s.sqlite"])
      for name, text in (("empty.pt", "is empty (0 bytes)"), ("text.pt", "re-save"),
                         ("pickled.pkl", "re-save"), ("alist.pt", "no state dict"))],
    case("run-device-cuda", "run --dataset {tmp}/mini --model efficientnet_lite0 "
         "--regime scratch --device cuda --store {tmp}/s.sqlite", "--device", "cuda",
         absent=["{tmp}/s.sqlite"]),
    case("run-store-folder", "run --dataset {tmp}/mini --model efficientnet_lite0 "
         "--regime scratch --store {tmp}/afolder", "{tmp}/afolder", "is a folder"),
]


# -- the broken inputs ---------------------------------------------------------------------------

def tiny_classification_folder(mini: Path) -> Path:
    """A classification folder in the Mars-Bench layout: one 8-px image in each split."""
    from PIL import Image

    for split in ("train", "val", "test"):
        (mini / "data" / split / "a").mkdir(parents=True)
        Image.new("L", (8, 8)).save(mini / "data" / split / "a" / "x.png")
    (mini / "annotation.csv").write_text(
        "file_id,label,feature_name,split\n"
        + "".join(f"x.png,0,a,{s}\n" for s in ("train", "val", "test")))
    (mini / "mapping.json").write_text('{"0": "a", "1": "b"}')
    return mini


def write_bad_inputs(tmp: Path) -> None:
    from marsbench.runs import ResultsStore, RunRecord, RunSpec

    (tmp / "afolder").mkdir()
    (tmp / "afile").write_text("just a file\n")
    (tmp / "corrupt.sqlite").write_bytes(b"these are not the bytes of a database\n" * 50)
    con = sqlite3.connect(tmp / "foreign.sqlite")
    con.execute("CREATE TABLE songs (title TEXT)")
    con.commit()
    con.close()
    ResultsStore(tmp / "empty.sqlite")
    newer = ResultsStore(tmp / "newer.sqlite")
    con = sqlite3.connect(newer.path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    failed = ResultsStore(tmp / "failed.sqlite")
    failed.put(RunRecord.failure(RunSpec(dataset="mb-frost_cls", model="efficientnet_lite0",
                                         regime="scratch"), RuntimeError("boom")))
    (tmp / "binary.csv").write_bytes(bytes(range(128, 256)) * 20)
    (tmp / "empty.csv").write_bytes(b"")
    (tmp / "foreign.csv").write_text("a,b\n1,2\n")
    (tmp / "good.csv").write_text(
        "model,dataset,task,regime,variant,seed,metric,value\n"
        "m,mb-domars16k,classification,feature_extraction,full,0,f1_weighted,0.5\n")
    (tmp / "empty.pt").write_bytes(b"")
    (tmp / "text.pt").write_text("hello\n")
    import pickle

    import torch

    (tmp / "pickled.pkl").write_bytes(pickle.dumps({"a": object}, protocol=4))
    torch.save([torch.zeros(2)], tmp / "alist.pt")
    (tmp / "over1.csv").write_text(
        "model,dataset,task,regime,variant,seed,metric,value\n"
        "m,mb-domars16k,classification,feature_extraction,full,0,f1_weighted,0.5\n"
        "m,mb-domars16k,classification,feature_extraction,full,1,f1_weighted,1.7\n")
    (tmp / "bad.json").write_text("{not json")
    (tmp / "bad.yaml").write_text("datasets: [mb-frost_cls\nmodels: [efficientnet_lite0]\n")
    (tmp / "typo.yaml").write_text("datasets: [mb-frost_cls]\nmodels: [efficientnet_lite0]\n"
                                   "regime: [scratch]\n")
    (tmp / "exp.yaml").write_text("datasets: [mb-frost_cls]\nmodels: [efficientnet_lite0]\n"
                                  "regimes: [scratch]\ngrid_defaults: single\nseeds: [0]\n")
    tiny_classification_folder(tmp / "mini")


@pytest.fixture
def bad_inputs(tmp_path, monkeypatch):
    write_bad_inputs(tmp_path)
    monkeypatch.setenv("MARSBENCH_OFFLINE", "1")  # never the network
    monkeypatch.setenv("MARSBENCH_DATA", str(tmp_path / "afolder"))
    monkeypatch.delenv("MARSBENCH_DEBUG", raising=False)
    return tmp_path


def invoke(c: Case, tmp: Path):
    args = [a.replace("{tmp}", str(tmp)) for a in c.args]
    env = {"COLUMNS": "200", **c.env}
    return CliRunner().invoke(app, args, env=env)


def classify(c: Case, result, tmp: Path) -> str:
    """clear | traceback | silent | unclear (with why)."""
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    if crashed or "Traceback" in result.output:
        return "traceback"
    if result.exit_code == 0 or not result.stderr.strip():
        return "silent"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return f"unclear: not one 'error:' line: {result.stderr!r}"
    missing = [e for e in c.expect if e.replace("{tmp}", str(tmp)) not in lines[0]]
    if missing:
        return f"unclear: {missing} not in {lines[0]!r}"
    if result.exit_code != c.code:
        return f"unclear: exit code {result.exit_code}, expected {c.code}"
    left = [p for p in c.absent if Path(p.replace("{tmp}", str(tmp))).exists()]
    if left:
        return f"unclear: refused too late, {left} was written"
    return "clear"


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(c, bad_inputs):
    result = invoke(c, bad_inputs)
    assert classify(c, result, bad_inputs) == "clear", (result.exit_code, result.output)


# -- the handler itself --------------------------------------------------------------------------

def test_unexpected_exception_is_one_line_and_debug_shows_the_traceback(monkeypatch, tmp_path):
    import marsbench.catalog

    def boom(task=None):
        raise ZeroDivisionError("division by zero deep inside")

    monkeypatch.setattr("marsbench.cli.datasets.list_cards", boom)
    monkeypatch.delenv("MARSBENCH_DEBUG", raising=False)
    result = CliRunner().invoke(app, ["datasets", "list"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        "error: internal error: ZeroDivisionError: division by zero deep inside; rerun with "
        "--debug for the traceback and report it")
    debug = CliRunner().invoke(app, ["--debug", "datasets", "list"])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
    assert debug.stderr.strip().endswith("report it")  # the line still comes last
    env = CliRunner().invoke(app, ["datasets", "list"], env={"MARSBENCH_DEBUG": "1"})
    assert "Traceback" in env.stderr
    assert marsbench.catalog.list_cards  # untouched


def test_os_errors_name_the_file(monkeypatch, tmp_path):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.csv"))

    monkeypatch.setattr("marsbench.cli.datasets.list_cards", full)
    result = CliRunner().invoke(app, ["datasets", "list"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: no space left on device ({tmp_path / 'x.csv'}); "
                                     "free some disk space or choose a folder on another disk")


def test_keyboard_interrupt_is_one_line_and_130(monkeypatch):
    def interrupted(task=None):
        raise KeyboardInterrupt

    monkeypatch.setattr("marsbench.cli.datasets.list_cards", interrupted)
    result = CliRunner().invoke(app, ["datasets", "list"])
    assert result.exit_code == 130 and result.stderr.startswith("error: interrupted")
    assert "Traceback" not in result.output


def test_a_refused_sweep_writes_no_failed_run(bad_inputs):
    """An environment error is not a result: the store, if it exists, gains no record."""
    from marsbench.runs import ResultsStore

    store = ResultsStore(bad_inputs / "kept.sqlite")
    for args in (["--device", "cuda"], ["--root", str(bad_inputs / "nowhere")]):
        result = CliRunner().invoke(app, ["sweep", str(bad_inputs / "exp.yaml"), "--store",
                                          str(store.path), *args])
        assert result.exit_code == 2, result.output
    assert len(store) == 0


def test_read_only_store_and_folder_are_refused_before_work(tmp_path, monkeypatch):
    """What a read-only file or folder looks like to the store (faked: root ignores modes)."""
    from marsbench.runs import ResultsStore

    locked = tmp_path / "locked"
    locked.mkdir()
    ResultsStore(locked / "s.sqlite")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        not (mode & os.W_OK and Path(path).is_relative_to(locked)) and real_access(path, mode)))
    exp = tmp_path / "exp.yaml"
    exp.write_text("datasets: [mb-frost_cls]\nmodels: [efficientnet_lite0]\n")
    for name, text in (("s.sqlite", "cannot be written"), ("new.sqlite", "not writable")):
        result = CliRunner().invoke(app, ["sweep", str(exp), "--dry-run", "--no-check-data",
                                          "--store", str(locked / name)])
        assert result.exit_code == 2 and text in result.stderr, result.output
        assert str(locked) in result.stderr and "Traceback" not in result.output
    assert not (locked / "new.sqlite").exists()
    # a reader (report) does not need to write
    assert ResultsStore(locked / "s.sqlite", readonly=True).records() == []


def test_console_script_end_to_end_no_traceback_unless_debug(tmp_path):
    """The real process: `python -m marsbench`, exit code, stderr, and --debug."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("MARSBENCH_DEBUG", None)
    store = tmp_path / "corrupt.sqlite"
    store.write_bytes(b"not a database at all" * 10)
    args = [sys.executable, "-m", "marsbench", "report", "--store", str(store), "--out",
            str(tmp_path / "r")]
    plain = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr + plain.stdout
    assert plain.stderr.startswith("error: ") and str(store) in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1
    debug = subprocess.run(args[:3] + ["--debug"] + args[3:], capture_output=True, text=True,
                           env=env, timeout=120)
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "StoreError" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("error: ")


# -- the counts ----------------------------------------------------------------------------------

def tally() -> dict[str, list[str]]:
    import tempfile

    outcomes: dict[str, list[str]] = {"clear": [], "traceback": [], "silent": [], "unclear": []}
    os.environ["MARSBENCH_OFFLINE"] = "1"
    os.environ.pop("MARSBENCH_DEBUG", None)
    for c in CASES:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            write_bad_inputs(tmp)
            os.environ["MARSBENCH_DATA"] = str(tmp / "afolder")
            verdict = classify(c, invoke(c, tmp), tmp)
        kind = verdict.split(":")[0]
        outcomes[kind].append(c.id if kind == "clear" else f"{c.id}: {verdict}")
    return outcomes


if __name__ == "__main__":
    out = tally()
    print(f"tried {sum(map(len, out.values()))} / clear {len(out['clear'])} / traceback "
          f"{len(out['traceback'])} / silent {len(out['silent'])} / unclear {len(out['unclear'])}")
    for kind in ("traceback", "silent", "unclear"):
        for line in out[kind]:
            print(f"  {kind}: {line}")


def test_every_command_help_ends_with_examples():
    """Help that teaches: every command's --help ends with runnable examples."""
    import typer

    from marsbench.cli.main import app

    root = typer.main.get_command(app)
    missing = []

    def visit(command, path: list[str]) -> None:
        if hasattr(command, "commands"):  # a group (typer ships its own click)
            for name, sub in command.commands.items():
                visit(sub, path + [name])
            return
        if not (command.epilog or "").startswith("Examples:"):
            missing.append(" ".join(path))
        else:
            assert "marsbench " + " ".join(path) in command.epilog, path

    visit(root, [])
    assert not missing, f"commands whose help has no examples: {missing}"
