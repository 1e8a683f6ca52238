"""Experiment files: YAML in, a validated, frozen `Experiment` out.

An experiment names datasets (with variants), models, regimes, a hyper-parameter grid, seeds,
the selection rule and where the data lives; docs/protocol.md documents every key. Defaults are
the paper's protocol (Mars-Bench, facts sheet section 4): the grid `PAPER_GRID`, selection by the
lowest validation loss per (model, dataset, regime, variant) with the grid run at seed
``grid_seed`` (0), then the winner retrained with `PAPER_SEEDS`. ``search`` (`grid`, the default,
or ``random:<n>`` / ``tpe:<n>``) says which points of the grid are trained.

Errors name the file, the line and the key (``exp.yaml:12: grid.lr[1]: ...``). PyYAML reports
no positions for parsed values, so the node tree is walked once to map key paths to lines.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..catalog import UnknownDatasetError, Variant, get_card, list_cards
from ..errors import MarsbenchError, did_you_mean
from ..runs.fingerprint import normalise_float
from ..runs.spec import MAX_BATCH_SIZE, MAX_SEED
from ..vocab import (
    DATA_SOURCES,
    FE_PATHS,
    OPTIMIZERS,
    PRECISIONS,
    PROFILES,
    SCHEDULERS,
    TRAINING_REGIMES,
)

FORMAT_VERSION = 1
PAPER_SEEDS = (0, 1, 10, 42, 123, 1000, 1234)
GRID_SEED = 0
# A loss value meaning "the paper's loss space for the dataset" (`plan.loss_values`): binary
# one-logit BCE vs two-logit CE; segmentation CE, generalised Dice (3 weightings), combined.
PAPER_LOSS = "paper"
# The grid of the paper, in the order the product is taken (its first point is grid index 0).
PAPER_GRID: dict[str, tuple[Any, ...]] = {
    "lr": (1e-3, 1e-4, 1e-5),
    "batch_size": (16, 32, 64),
    "optimizer": ("adam", "adamw", "sgd"),
    "weight_decay": (0.05,),
    "scheduler": ("none", "cosine", "plateau", "step"),
    "max_epochs": (50, 100, 200),
    "patience": (5, 10),
    "loss": (PAPER_LOSS,),
    "augment": (True,),
}
# `grid_defaults: single`: one value per field, RunSpec's defaults (what `marsbench run` uses).
SINGLE_GRID: dict[str, tuple[Any, ...]] = {
    "lr": (1e-3,), "batch_size": (32,), "optimizer": ("adamw",), "weight_decay": (0.05,),
    "scheduler": ("none",), "max_epochs": (50,), "patience": (5,), "loss": ("auto",),
    "augment": (True,),
}
GRID_FIELDS = tuple(PAPER_GRID)
STAGES = ("grid", "seeds")
SHIPPED_PREFIX = "paper:"
TOP_KEYS = ("version", "name", "description", "task", "data", "datasets", "variants", "models",
            "regimes", "grid", "grid_defaults", "options", "fe_path", "precision", "compile", "profile", "seeds", "grid_seed",
            "selection", "stages", "search", "splits", "option_axes")

# Common spellings of grid keys, for "did you mean" where string similarity does not help.
ALIASES = {"learning_rate": "lr", "batch": "batch_size", "epochs": "max_epochs",
           "wd": "weight_decay", "optim": "optimizer", "lr_scheduler": "scheduler"}


class ExperimentError(MarsbenchError, ValueError):
    """An experiment file that cannot be used as written; the message names file, line, key."""


@dataclass(frozen=True)
class DatasetEntry:
    """A catalog dataset, or a folder of one's own (``name`` is the folder's name, ``root`` the
    folder holding it: the path is where the data is, never part of a run's identity)."""

    name: str
    variants: tuple[str, ...] = ("full",)
    root: str | None = None

    def __post_init__(self) -> None:
        # a folder given by its path (the parser, or Python callers such as the demo)
        from ..runs.spec import folder_name_and_root

        folder = folder_name_and_root(self.name) if self.root is None else None
        if folder is not None:
            object.__setattr__(self, "name", folder[0])
            object.__setattr__(self, "root", folder[1])


@dataclass(frozen=True)
class ModelEntry:
    """A model; ``weights`` is a user checkpoint (used in the pretrained regimes only),
    ``regimes`` overrides the experiment's, ``options`` adds run options for this model."""

    name: str
    weights: str | None = None
    regimes: tuple[str, ...] | None = None
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class SelectionRule:
    """``metric`` is ``val_loss`` (the record's best validation loss) or ``val.<metric name>``."""

    metric: str = "val_loss"
    mode: str = "min"


@dataclass(frozen=True)
class Experiment:
    name: str
    datasets: tuple[DatasetEntry, ...]
    models: tuple[ModelEntry, ...]
    regimes: tuple[str, ...] = ("feature_extraction",)
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = tuple(PAPER_GRID.items())
    seeds: tuple[int, ...] = PAPER_SEEDS
    grid_seed: int = GRID_SEED
    selection: SelectionRule = SelectionRule()
    stages: tuple[str, ...] = STAGES
    options: tuple[tuple[str, Any], ...] = ()
    fe_path: str = "cached"
    precision: str = "auto"
    compile: bool = False
    profile: str = "marsbench"
    data_root: str | None = None
    source: str = "auto"
    subset_seed: int | None = None
    splits: tuple[str, ...] = ("official",)  # split schemes, an axis (RunSpec.split)
    task: str | None = None
    description: str = ""
    path: str | None = field(default=None, compare=False)
    search: str = "grid"  # grid | random:<n> | tpe:<n> (`marsbench.protocol.search`)
    # run options varied as an axis (e.g. imbalance: [none, focal]): every combination is its
    # own arm, selected and retrained apart, like another model
    option_axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @property
    def arms(self) -> list[tuple[tuple[str, Any], ...]]:
        """Every combination of the option axes' values (one empty arm without axes)."""
        names = [name for name, _ in self.option_axes]
        return [tuple(zip(names, values))
                for values in itertools.product(*(v for _, v in self.option_axes))]

    @property
    def grid_dict(self) -> dict[str, tuple[Any, ...]]:
        return dict(self.grid)

    @property
    def grid_size(self) -> int:
        """Points of the grid as written (the loss value ``paper`` counts once; the plan
        expands it per dataset)."""
        n = 1
        for _, values in self.grid:
            n *= len(values)
        return n

    def regimes_for(self, model: ModelEntry) -> tuple[str, ...]:
        return model.regimes or self.regimes

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["grid"] = {k: list(v) for k, v in self.grid}
        out["options"] = dict(self.options)
        out["option_axes"] = {k: list(v) for k, v in self.option_axes}
        for m in out["models"]:
            m["options"] = dict(m["options"])
        return out

    def identity_hash(self) -> str:
        """sha256 (16 hex) of what the experiment plans; the data location and file path are
        not part of it."""
        d = self.to_dict()
        for k in ("path", "data_root", "source", "description"):
            d.pop(k)
        if list(d["splits"]) == ["official"]:  # the default: older hashes stay
            d.pop("splits")
        if d["search"] == "grid":  # the default: hashes of experiments from before it stay
            d.pop("search")
        if not d["option_axes"]:  # likewise
            d.pop("option_axes")
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def with_overrides(self, **changes: Any) -> Experiment:
        """A copy with top-level fields replaced (e.g. ``data_root`` from the command line)."""
        import dataclasses

        return dataclasses.replace(self, **changes)


# -- locating and loading ------------------------------------------------------------------------

def shipped_dir() -> Path:
    return Path(str(resources.files("marsbench.protocol") / "experiments"))


def list_experiments() -> list[str]:
    """Names of the experiment files shipped with marsbench (``paper:<name>``)."""
    return sorted(p.stem for p in shipped_dir().glob("*.yaml"))


def find_experiment(name_or_path: str | Path) -> Path:
    """A file path, or ``paper:<name>`` / ``<name>`` of a shipped experiment."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    name = text.removeprefix(SHIPPED_PREFIX).removesuffix(".yaml")
    candidate = shipped_dir() / f"{name}.yaml"
    if (text.startswith(SHIPPED_PREFIX) or "/" not in text) and candidate.is_file():
        return candidate
    shipped = [SHIPPED_PREFIX + s for s in list_experiments()]
    raise ExperimentError("no such experiment file or shipped experiment", where=text,
                          value=text, fix=did_you_mean(SHIPPED_PREFIX + name, shipped))


def load_experiment(name_or_path: str | Path) -> Experiment:
    """Read and validate an experiment file (see docs/protocol.md)."""
    path = find_experiment(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ExperimentError("experiment file is not UTF-8 text", where=path,
                              value=f"byte {exc.start}",
                              fix="give a YAML experiment file (see docs/protocol.md)") from None
    return parse_experiment(text, path=path)


def parse_experiment(text: str, *, path: str | Path | None = None) -> Experiment:
    """Validate experiment YAML ``text``; relative paths resolve against ``path``'s folder."""
    where = str(path) if path is not None else "<experiment>"
    try:
        from .. import yaml_io  # no aliases: a "billion laughs" file is refused, not expanded

        node = yaml_io.compose(text)
        data = yaml_io.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ExperimentError(f"{where}{line}: not valid YAML: {exc}") from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _walk(node, (), lines, where)
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    return _Parser(where, lines, base).experiment(data, path)


def _walk(node: yaml.Node, at: tuple, lines: dict[tuple, int], where: str) -> None:
    lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in seen:
                raise ExperimentError(f"{where}:{line}: {_dotted(at + (key,))}: key given twice "
                                      f"(first on line {seen[key]})")
            seen[key] = line
            lines[at + (key,)] = line
            _walk(value_node, at + (key,), lines, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, at + (i,), lines, where)


def _dotted(at: tuple) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _Parser:
    def __init__(self, where: str, lines: dict[tuple, int], base: Path) -> None:
        self.where, self.lines, self.base = where, lines, base

    def error(self, at: tuple, message: str) -> ExperimentError:
        probe = at
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        return ExperimentError(f"{self.where}{f':{line}' if line else ''}: {_dotted(at)}: "
                               f"{message}")

    # -- typed readers ---------------------------------------------------------------------------
    def mapping(self, value: Any, at: tuple, known: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(at, f"expected a mapping of {', '.join(known)}, got {value!r}")
        for key in value:
            if key not in known:
                if key == "extra" and "options" in known:
                    raise self.error(at + (key,), "'extra' was renamed 'options' (typed run "
                                                  "options, see docs/protocol.md)")
                hint = (f"did you mean {ALIASES[key]!r}?" if ALIASES.get(key) in known
                        else did_you_mean(str(key), known))
                raise self.error(at + (key,), f"unknown key; {hint} (known keys: "
                                              f"{', '.join(known)})")
        return dict(value)

    def listing(self, value: Any, at: tuple, *, allow_scalar: bool = True) -> list[Any]:
        if isinstance(value, list):
            if not value:
                raise self.error(at, "must not be empty")
            return value
        if allow_scalar and value is not None and not isinstance(value, Mapping):
            return [value]
        raise self.error(at, f"expected a list, got {value!r}")

    def text(self, value: Any, at: tuple, choices: Sequence[str] | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(at, f"expected a name, got {value!r}")
        value = value.strip()
        if choices is not None:
            low = value.lower().replace("-", "_")
            if low not in choices:
                raise self.error(at, f"{value!r} is not one of {', '.join(choices)} "
                                     f"({did_you_mean(low, choices)})")
            return low
        return value

    def boolean(self, value: Any, at: tuple) -> bool:
        if not isinstance(value, bool):
            raise self.error(at, f"expected true or false, got {value!r}")
        return value

    def integer(self, value: Any, at: tuple, low: int | None = None,
                high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(at, f"expected an integer, got {value!r}")
        if low is not None and value < low:
            raise self.error(at, f"must be >= {low}, got {value}")
        if high is not None and value > high:
            raise self.error(at, f"must be <= {high}, got {value}")
        return value

    def number(self, value: Any, at: tuple, *, positive: bool) -> float:
        # YAML 1.1 reads 1e-3 (no dot) as text; accept any text float() reads.
        if isinstance(value, bool):
            raise self.error(at, f"expected a number, got {value!r}")
        try:
            x = normalise_float(float(value))
        except (TypeError, ValueError):
            raise self.error(at, f"expected a finite number, got {value!r}") from None
        if x < 0 or (positive and x == 0):
            raise self.error(at, f"must be {'> 0' if positive else '>= 0'}, got {value!r}")
        return x

    def options(self, value: Any, at: tuple) -> tuple[tuple[str, Any], ...]:
        """Raw option values; typed and checked per dataset task in `check_options`."""
        if not isinstance(value, Mapping):
            raise self.error(at, f"expected a mapping name -> value, got {value!r}")
        out = {}
        for k, v in value.items():
            if isinstance(v, (Mapping, list)) or v is None:
                raise self.error(at + (k,), f"option values are scalars, got {v!r}")
            out[str(k)] = v
        return tuple(sorted(out.items()))

    def option_axes(self, value: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """Option name -> the list of its values (scalars, no repeats); typed and checked per
        dataset task with the runs (`check_runs`)."""
        at = ("option_axes",)
        if not isinstance(value, Mapping):
            raise self.error(at, f"expected a mapping option -> list of values, got {value!r}")
        out = []
        for name, values in value.items():
            items = self.listing(values, at + (name,))
            if not items:
                raise self.error(at + (name,), "an option axis needs at least one value")
            for i, v in enumerate(items):
                if isinstance(v, (Mapping, list)) or v is None:
                    raise self.error(at + (name, i), f"option values are scalars, got {v!r}")
            self.no_duplicates(items, at + (name,), "value")
            out.append((str(name), tuple(items)))
        return tuple(out)

    def path(self, value: Any, at: tuple) -> str:
        text = self.text(value, at)
        p = Path(text).expanduser()
        return str(p if p.is_absolute() else (self.base / p).resolve())

    # -- sections --------------------------------------------------------------------------------
    def experiment(self, data: Any, path: str | Path | None) -> Experiment:
        d = self.mapping(data if data is not None else {}, (), TOP_KEYS)
        version = d.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise self.error(("version",), f"this marsbench reads experiment format "
                                           f"{FORMAT_VERSION}, not {version!r}")
        for required in ("datasets", "models"):
            if required not in d:
                raise self.error((), f"missing key {required!r}")
        name = self.text(d.get("name", Path(path).stem if path else "experiment"), ("name",))
        task = self.text(d["task"], ("task",), ("classification", "segmentation", "detection")) \
            if "task" in d else None
        default_variants = tuple(self.variant(v, ("variants", i)) for i, v in
                                 enumerate(self.listing(d.get("variants", ["full"]),
                                                        ("variants",))))
        datasets = self.datasets(d["datasets"], default_variants, task)
        regimes = self.regimes(d.get("regimes", ["feature_extraction"]), ("regimes",))
        models = self.models(d["models"])
        data_opts = self.mapping(d.get("data", {}) or {}, ("data",),
                                 ("root", "source", "subset_seed"))
        root = data_opts.get("root")
        if "seeds" in d and not isinstance(d["seeds"], list):  # `seeds: 3` is not three seeds
            raise self.error(("seeds",), f"expected a list such as [0, 1, 2], got {d['seeds']!r}")
        seeds = [self.integer(s, ("seeds", i), 0, MAX_SEED) for i, s in
                 enumerate(self.listing(d.get("seeds", list(PAPER_SEEDS)), ("seeds",)))]
        if len(set(seeds)) != len(seeds):
            raise self.error(("seeds",), f"lists a seed twice: {seeds}")
        stages = tuple(self.text(s, ("stages", i), STAGES) for i, s in
                       enumerate(self.listing(d.get("stages", list(STAGES)), ("stages",))))
        if "grid" not in stages:
            raise self.error(("stages",), "the grid stage cannot be left out (it is one run "
                                          "per group when the grid has one point)")
        exp = Experiment(
            name=name, description=str(d.get("description", "") or "").strip(),
            datasets=datasets, models=models, regimes=regimes,
            grid=self.grid(d.get("grid", {}) or {}, d.get("grid_defaults", "paper")),
            seeds=tuple(seeds),
            grid_seed=self.integer(d.get("grid_seed", GRID_SEED), ("grid_seed",), 0, MAX_SEED),
            selection=self.selection(d.get("selection", {}) or {}),
            stages=tuple(s for s in STAGES if s in stages),
            options=self.options(d.get("options", {}) or {}, ("options",)),
            fe_path=self.text(d.get("fe_path", "cached"), ("fe_path",), FE_PATHS),
            precision=self.text(d.get("precision", "auto"), ("precision",), PRECISIONS),
            compile=self.boolean(d.get("compile", False), ("compile",)),
            profile=self.text(d.get("profile", "marsbench"), ("profile",), PROFILES),
            data_root=None if root is None else self.path(root, ("data", "root")),
            source=self.text(data_opts.get("source", "auto"), ("data", "source"), DATA_SOURCES),
            subset_seed=None if data_opts.get("subset_seed") is None else
            self.integer(data_opts["subset_seed"], ("data", "subset_seed"), 0),
            splits=self.splits(d.get("splits", ["official"])),
            task=task, path=None if path is None else str(path),
            search=self.search(d.get("search", "grid")),
            option_axes=self.option_axes(d.get("option_axes", {}) or {}))
        overlap = sorted(set(dict(exp.option_axes)) & (
            set(dict(exp.options)) | {k for m in exp.models for k, _ in m.options}))
        if overlap:
            raise self.error(("option_axes", overlap[0]),
                             f"option {overlap[0]} is both an axis and a fixed option; give it "
                             f"in one place")
        self.check_runs(exp)
        return exp

    def check_runs(self, exp: Experiment) -> None:
        """Build one spec per (dataset, variant, model, regime, loss) exactly as the planner
        will, so every option, variant and loss error is raised now, at its line."""
        from .plan import not_applicable, planned_spec  # the planner's own: one validation

        from .plan import loss_values

        config = {k: v[0] for k, v in exp.grid}
        skipped = not_applicable(exp)  # not planned, and said so by the plan
        for i, ds in enumerate(exp.datasets):
            losses = loss_values(exp, ds)
            for variant in ds.variants:
                for j, model in enumerate(exp.models):
                    for regime in exp.regimes_for(model):
                        if (ds.name, regime) in skipped:
                            continue
                        for loss, split, arm in itertools.product(losses, exp.splits,
                                                                  exp.arms):
                            try:
                                planned_spec(exp, ds, variant, model, regime,
                                             config | {"loss": loss}, split=split, arm=arm)
                            except MarsbenchError as exc:
                                raise self.error(self.blame(exc, i, j, model),
                                                 f"{ds.name}[{variant}] {model.name} {regime}: "
                                                 f"{exc}") from None

    def blame(self, exc: MarsbenchError, dataset: int, model: int, entry: ModelEntry) -> tuple:
        """The key path an error belongs to: an option's, else the loss's, else the dataset's."""
        name = getattr(exc, "option", None)
        if exc.where == "options" and name is not None:
            if name in dict(entry.options):
                return ("models", model, "options", name)
            if ("option_axes", name) in self.lines:
                return ("option_axes", name)
            if ("options", name) in self.lines:
                return ("options", name)
            if name == "dice_weighting":  # from a loss value dice:<weighting>
                return ("grid", "loss")
            return ("fe_path",) if name == "fe_path" and ("fe_path",) in self.lines \
                else ("options",)
        if exc.where == "split":
            return ("splits",)
        if "loss" in str(exc.value) or exc.where == "loss":
            return ("grid", "loss")
        return ("datasets", dataset)

    def variant(self, value: Any, at: tuple) -> str:
        try:
            return str(Variant.parse(str(value)))
        except ValueError as exc:
            raise self.error(at, str(exc)) from None

    def datasets(self, value: Any, default_variants: tuple[str, ...],
                 task: str | None) -> tuple[DatasetEntry, ...]:
        out: list[DatasetEntry] = []
        for i, item in enumerate(self.listing(value, ("datasets",))):
            at = ("datasets", i)
            if isinstance(item, Mapping):
                item = self.mapping(item, at, ("name", "variants"))
                if "name" not in item:
                    raise self.error(at, "a dataset entry needs a name")
                name = self.text(item["name"], at + ("name",))
                variants = tuple(self.variant(v, at + ("variants", j)) for j, v in enumerate(
                    self.listing(item.get("variants", list(default_variants)),
                                 at + ("variants",))))
            else:
                name, variants = self.text(item, at), default_variants
            if ("/" in name or name.startswith(".")) and Path(self.path(name, at)).is_dir():
                name = self.path(name, at)  # relative to the file; the entry splits it
            entry = DatasetEntry(name, variants)
            self.check_dataset(entry.name, variants, task, at, entry.root)
            if len(set(variants)) != len(variants):
                raise self.error(at, f"lists a variant twice: {list(variants)}")
            out.append(entry)
        self.no_duplicates([(d.name, v) for d in out for v in d.variants], ("datasets",),
                           "dataset variant")
        return tuple(out)

    def check_dataset(self, name: str, variants: tuple[str, ...], task: str | None,
                      at: tuple, root: str | None = None) -> None:
        try:
            card = get_card(name)
        except UnknownDatasetError:
            if root is not None:  # a user's own dataset folder: its card is read off the folder
                from ..runs.spec import dataset_card

                try:
                    card = dataset_card(name, root, required=False)
                except MarsbenchError:
                    return  # a broken folder: the data check names what is wrong with it
                if card is None:
                    return
            else:
                card = None
        if card is None:
            names = [c.name for c in list_cards()]
            raise self.error(at, f"unknown dataset {name!r}: {did_you_mean(name, names)} "
                                 "(a catalog name from `marsbench datasets list`, or the path "
                                 "of a dataset folder)") from None
        if task is not None and str(card.task) != task:
            raise self.error(at, f"{name} is a {card.task} dataset but the experiment's task "
                                 f"is {task}")
        if str(card.task) != "classification":
            for v in variants:
                if v.startswith("few_shot"):
                    raise self.error(at, f"{name}: few-shot variants exist for classification "
                                         f"only, not {card.task}")

    def regimes(self, value: Any, at: tuple) -> tuple[str, ...]:
        regimes = tuple(self.text(r, at + (i,), TRAINING_REGIMES)
                        for i, r in enumerate(self.listing(value, at)))
        self.no_duplicates(regimes, at, "regime")
        return regimes

    def models(self, value: Any) -> tuple[ModelEntry, ...]:
        out = []
        for i, item in enumerate(self.listing(value, ("models",))):
            at = ("models", i)
            if not isinstance(item, Mapping):
                out.append(ModelEntry(self.text(item, at)))
                continue
            item = self.mapping(item, at, ("name", "weights", "regimes", "options"))
            if "name" not in item:
                raise self.error(at, "a model entry needs a name")
            weights = None
            if item.get("weights") is not None:
                weights = self.path(item["weights"], at + ("weights",))
                if not Path(weights).is_file():
                    raise self.error(at + ("weights",), f"checkpoint {weights} does not exist")
            out.append(ModelEntry(
                name=self.text(item["name"], at + ("name",)), weights=weights,
                regimes=self.regimes(item["regimes"], at + ("regimes",)) if "regimes" in item
                else None,
                options=self.options(item.get("options", {}) or {}, at + ("options",))))
        self.no_duplicates([(m.name, m.weights) for m in out], ("models",), "model")
        return tuple(out)

    def grid(self, value: Any, defaults: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        choice = self.text(defaults, ("grid_defaults",), ("paper", "single"))
        base = PAPER_GRID if choice == "paper" else SINGLE_GRID
        given = self.mapping(value, ("grid",), GRID_FIELDS)
        out = []
        for name in GRID_FIELDS:
            if name not in given:
                out.append((name, base[name]))
                continue
            at = ("grid", name)
            values = tuple(self.grid_value(name, v, at + (i,))
                           for i, v in enumerate(self.listing(given[name], at)))
            self.no_duplicates(values, at, "value")
            out.append((name, values))
        return tuple(out)

    def grid_value(self, name: str, v: Any, at: tuple) -> Any:
        if name in ("lr", "weight_decay"):
            return self.number(v, at, positive=name == "lr")
        if name in ("batch_size", "max_epochs"):
            return self.integer(v, at, 1, MAX_BATCH_SIZE if name == "batch_size" else None)
        if name == "patience":
            return self.integer(v, at, 0)
        if name == "optimizer":
            return self.text(v, at, OPTIMIZERS)
        if name == "scheduler":
            return "none" if v is None else self.text(v, at, SCHEDULERS)
        if name == "augment":
            if not isinstance(v, bool):
                raise self.error(at, f"expected true or false, got {v!r}")
            return v
        return self.text(v, at).lower()  # loss: the trainer checks the name per task

    def search(self, value: Any) -> str:
        from .search import parse_search

        try:
            return str(parse_search(value))
        except MarsbenchError as exc:
            raise self.error(("search",), f"{exc}") from None

    def splits(self, value: Any) -> tuple[str, ...]:
        from ..sources.splits import parse_scheme

        out = []
        for i, item in enumerate(self.listing(value, ("splits",))):
            try:
                out.append(str(parse_scheme(item)))
            except MarsbenchError as exc:
                raise self.error(("splits", i), str(exc)) from None
        if len(set(out)) != len(out):
            raise self.error(("splits",), f"lists a split scheme twice: {out}")
        return tuple(out)

    def selection(self, value: Any) -> SelectionRule:
        if isinstance(value, str):
            value = {"metric": value}
        d = self.mapping(value, ("selection",), ("metric", "mode"))
        metric = self.text(d.get("metric", "val_loss"), ("selection", "metric"))
        if metric != "val_loss" and not metric.startswith("val."):
            raise self.error(("selection", "metric"),
                             f"{metric!r}: select on validation results only: 'val_loss' or "
                             "'val.<metric>' (e.g. val.f1_weighted)")
        default_mode = "min" if metric == "val_loss" or "loss" in metric else "max"
        mode = self.text(d.get("mode", default_mode), ("selection", "mode"), ("min", "max"))
        return SelectionRule(metric, mode)

    def no_duplicates(self, items: Sequence[Any], at: tuple, what: str) -> None:
        seen = set()
        for item in items:
            if item in seen:
                raise self.error(at, f"{what} {item!r} is listed twice")
            seen.add(item)
