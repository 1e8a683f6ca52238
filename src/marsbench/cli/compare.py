"""`marsbench compare A B`: the verdict between two models from a results store.

The comparison covers every ``(model, dataset, seed)`` run asked for (`comparison_scope`); a
store that lacks some gets no verdict but one line naming them and the command that fills them:
the same command with ``--run``, which runs each missing one as `marsbench run` and the sweep
workers do (`marsbench.protocol.executors.execute`), records it in the store, then compares."""

from __future__ import annotations

import html
import json
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import OptionError, did_you_mean
from ..runs.spec import MAX_SEED

EPILOG = ("Examples:\n\n"
          "marsbench compare momo_vit_b16 timm:vit_base_patch16_224.augreg_in21k_ft_in1k "
          "--store runs/results.sqlite\n\n"
          "marsbench compare resnet101 vit_l_16 --store runs/results.sqlite --regime "
          "feature_extraction --json\n\n"
          "marsbench compare efficientnet_lite0 squeezenet1_1 --store runs/results.sqlite "
          "--experiment demo_synthetic --out compare/\n\n"
          "marsbench compare efficientnet_lite0 squeezenet1_1 --store runs/results.sqlite "
          "--dataset mb-frost_cls --dataset mb-landmark_cls --regime linear_probe --seeds 0,1,2 "
          "--run    # run what the store lacks, then compare")
DEFAULT_RUN_REGIME = "linear_probe"  # --run without a regime: the fast probe
DEFAULT_RUN_SEEDS = [0, 1, 2]


def compare_command(
    model_a: Annotated[str, typer.Argument(help="the model to test (its label in the store)")],
    model_b: Annotated[str, typer.Argument(help="the model it is compared with")],
    store: Annotated[Path, typer.Option(help="results database (SQLite)")] = Path(
        "runs/results.sqlite"),
    experiment: Annotated[Optional[list[str]], typer.Option(
        help="only this experiment's selected seed runs (as `marsbench report`)")] = None,
    regime: Annotated[Optional[str], typer.Option(
        help="the regime to compare in (default: the one both models were run in)")] = None,
    variant: Annotated[str, typer.Option(help="full | partition:<p> | few_shot:<k>")] = "full",
    datasets: Annotated[Optional[list[str]], typer.Option(
        "--dataset", help="restrict to these datasets; repeatable")] = None,
    rounds: Annotated[int, typer.Option(min=100, help="bootstrap rounds")] = 2000,
    seed: Annotated[int, typer.Option(min=0, help="bootstrap seed")] = 0,
    confidence: Annotated[float, typer.Option(help="interval level, from 0.5 to 0.999")] = 0.95,
    resample_datasets: Annotated[bool, typer.Option(
        "--resample-datasets", help="also resample datasets in the bootstrap")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
    out: Annotated[Optional[Path], typer.Option(
        help="also write compare.json, compare.md and a self-contained compare.html here")
    ] = None,
    seeds: Annotated[Optional[str], typer.Option(
        help="the seeds to compare, e.g. 0,1,2 (default: every seed either model has; with "
             "--run and none, 0,1,2)")] = None,
    run: Annotated[bool, typer.Option(
        "--run", help="first run the (model, dataset, seed) runs the store lacks (default "
                      f"regime {DEFAULT_RUN_REGIME}) and record them")] = False,
    data_root: Annotated[Optional[Path], typer.Option(
        help="--run: the data root (default: $MARSBENCH_DATA / the user cache)")] = None,
    max_epochs: Annotated[Optional[int], typer.Option(
        min=1, help="--run: epochs of each run (default: marsbench run's)")] = None,
    device: Annotated[Optional[str], typer.Option(
        help="--run: auto | cpu | cuda | cuda:N")] = None,
) -> None:
    """The verdict between two models of a results store.

    IQM difference with a bootstrap interval, probability of improvement with its interval,
    and per-dataset winners; the verdict says whether the difference is significant. Every
    (model, dataset, seed) run asked for must be in the store: the missing ones are named with
    the command that fills them (--run runs them, then compares)."""
    from ..aggregate.compare import CompareError, compare_models, comparison_scope

    if not store.is_file() and not run:
        raise OptionError("no results store", where=store,
                          fix="give --store the SQLite file `marsbench run` / `sweep` wrote, "
                              "or add --run to run the comparison's runs into it")
    if data_root is not None and not data_root.is_dir():
        raise OptionError("data root not found", where="--data-root", value=str(data_root),
                          fix="pass the folder holding the dataset folders")
    from . import common

    common.confidence(confidence)
    seed_list = _seeds(seeds)
    variant = _variant(variant)
    if regime is not None:
        from ..vocab import REGIMES

        if regime not in REGIMES:
            raise OptionError(f"unknown regime {regime!r}", where="--regime",
                              fix=did_you_mean(regime, REGIMES))
    datasets, data_root = _dataset_names(list(datasets or []), data_root)
    experiments = list(experiment or [])
    table = _table(store, experiments, run)
    _check_datasets(datasets, table, data_root, run)
    try:
        scope = comparison_scope(table, (model_a, model_b), regime=regime, variant=variant,
                                 datasets=list(datasets or []) or None, seeds=seed_list,
                                 default_regime=DEFAULT_RUN_REGIME if run else None,
                                 default_seeds=DEFAULT_RUN_SEEDS if run else None,
                                 allow_absent=run)
    except CompareError as exc:
        raise OptionError("cannot compare", where=str(store), value=str(exc)) from None
    if scope.missing:
        settings = {"variant": variant, "data_root": data_root, "max_epochs": max_epochs}
        table = _fill(store, table, scope, settings, run, device, (model_a, model_b))
    try:
        result = compare_models(table, model_a, model_b, regime=scope.regime, variant=variant,
                                datasets=scope.datasets, seeds=scope.seeds, rounds=rounds,
                                confidence=confidence, seed=seed,
                                resample_datasets=resample_datasets)
    except CompareError as exc:
        raise OptionError("cannot compare", where=str(store), value=str(exc)) from None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.json").write_text(json.dumps(result.to_dict(), indent=1))
        (out / "compare.md").write_text(markdown(result))
        (out / "compare.html").write_text(html_page(result))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
        return
    typer.echo(markdown(result))


def _seeds(text: str | None) -> list[int] | None:
    """Distinct seeds in [0, MAX_SEED]; a negative, huge or repeated one is refused."""
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise OptionError("not a list of seeds", where="--seeds", value=text, fix="e.g. 0,1,2")
    bad = [v for v in values if not 0 <= v <= MAX_SEED]
    if bad:
        raise OptionError(f"seeds must be from 0 to {MAX_SEED}", where="--seeds", value=text,
                          fix=f"{bad[0]} is out of range; e.g. 0,1,2")
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise OptionError(f"seed {twice[0]} is listed twice", where="--seeds", value=text,
                          fix="name each seed once, e.g. 0,1,2")
    return sorted(values)


def _variant(text: str) -> str:
    from ..catalog.variant import Variant

    try:
        return str(Variant.parse(text))
    except ValueError as exc:
        raise OptionError("bad variant", where="--variant", value=text,
                          fix=str(exc).split(": ", 1)[-1]) from None


def _check_datasets(names: list[str], table, data_root: Path | None, run: bool) -> None:
    """Each --dataset must have runs in the store, or (--run) be a catalog name or a folder
    under the data root: a typo gets a "did you mean", not "no seeds to compare"."""
    known = set(table["dataset"].astype(str)) if "dataset" in table else set()
    for name in names:
        if name in known:
            continue
        if run:
            if data_root is None or not (data_root / name).is_dir():
                from . import common

                common.dataset_name(name, "--dataset")
            continue
        raise OptionError("the store has no runs of this dataset", where="--dataset",
                          value=name, fix=did_you_mean(name, known) if known else
                          "the store holds no runs; add --run to run them")


def _dataset_names(datasets: list[str], data_root: Path | None
                   ) -> tuple[list[str], Path | None]:
    """Dataset names as the store records them: a folder path given to --dataset becomes its
    name, and its parent the data root of the runs --run makes."""
    from ..runs.spec import split_dataset

    names = []
    for text in datasets:
        name, root, _ = split_dataset(text, str(data_root) if data_root else None, "auto")
        if root is not None and data_root is None:
            data_root = Path(root)
        elif root is not None and Path(root).resolve() != data_root.resolve():
            raise OptionError("datasets in two data roots", where="--dataset", value=text,
                              fix=f"put them under one folder, or give {data_root} / {root} "
                                  "in separate comparisons")
        names.append(name)
    return names, data_root


def _table(store: Path, experiments: list[str], run: bool):
    """The store's runs as `marsbench report` reads them; with --run, an absent or empty store
    is an empty table (the runs are about to be made)."""
    import pandas as pd

    from ..runs.store import TABLE_COLUMNS, ResultsStore
    from .report import _read_store

    if run and (not store.is_file()
                or not ResultsStore(store, readonly=True).keys(status="ok")):
        return pd.DataFrame(columns=list(TABLE_COLUMNS)).astype({"seed": "int64"})
    return _read_store(store, experiments, False)


def fill_spec(label: str, dataset: str, seed: int, regime: str, settings: dict):
    """The `RunSpec` whose label is ``label`` (a model name, optionally with the options that
    set its runs apart: ``name [key=value ...]``), or a one-line error."""
    from ..runs.spec import RunSpec

    name, _, rest = label.partition(" [")
    fields: dict = {}
    options: dict = {}
    for item in rest.removesuffix("]").split():
        key, _, value = item.partition("=")
        if key == "subset_seed":
            fields[key] = int(value)
        elif key in ("split", "precision", "profile"):
            fields[key] = value
        else:
            options[key] = value
    extra = {"max_epochs": settings["max_epochs"]} if settings.get("max_epochs") else {}
    root = settings.get("data_root")
    spec = RunSpec(dataset=dataset, model=name, regime=regime, variant=settings["variant"],
                   seed=seed, options=options, data_root=str(root) if root else None,
                   **fields, **extra)
    if spec.label != label:
        raise OptionError("--run cannot rebuild this model's runs from its label", value=label,
                          fix=f"it reads back as {spec.label!r}; run them with `marsbench run` "
                              "(user weights, for one, are not in a label)")
    return spec


def fill_command(models: tuple[str, str], store: Path, scope, settings: dict) -> str:
    """The `marsbench compare ... --run` command that fills ``scope``'s missing runs."""
    words = ["marsbench", "compare", *models, "--store", str(store), "--regime", scope.regime]
    for dataset in scope.datasets:
        words += ["--dataset", dataset]
    words += ["--seeds", ",".join(map(str, scope.seeds))]
    if settings["variant"] != "full":
        words += ["--variant", settings["variant"]]
    if settings.get("data_root"):
        words += ["--data-root", str(settings["data_root"])]
    if settings.get("max_epochs"):
        words += ["--max-epochs", str(settings["max_epochs"])]
    return " ".join(shlex.quote(w) for w in [*words, "--run"])


def _fill(store: Path, table, scope, settings: dict, run: bool, device: str | None,
          models: tuple[str, str]):
    """Runs of ``scope.missing`` already in the store under the key ``--run`` gives them join
    the table; the others are run (``--run``) or named in a one-line refusal."""
    import pandas as pd

    from ..aggregate.compare import describe_missing
    from ..protocol.executors import RunTask, execute
    from ..runs.store import ResultsStore

    specs = {}
    for m in scope.missing:
        try:
            specs[m] = fill_spec(m[0], m[1], m[2], scope.regime, settings)
        except OptionError:
            if run:
                raise
            specs[m] = None  # not rebuildable from its label: named as missing below
    if run:
        store.parent.mkdir(parents=True, exist_ok=True)
    results = ResultsStore(store, readonly=not run)
    have = [m for m, spec in specs.items()
            if spec is not None and (r := results.get(spec.key)) is not None and r.ok]
    todo = [m for m in scope.missing if m not in have]
    if todo and not run:
        raise OptionError(
            f"the store lacks {len(todo)} of the comparison's runs", where=str(store),
            value=describe_missing(todo),
            fix=f"run them with `{fill_command(models, store, scope, settings)}`, or compare on "
                "fewer --dataset / --seeds")
    failed = []
    for i, missing in enumerate(todo, 1):
        spec = specs[missing]
        typer.echo(f"running {i}/{len(todo)}: {spec.label} on {spec.dataset} seed {spec.seed} "
                   f"({spec.regime})", err=True)
        record = execute(RunTask(spec, device=device))
        if "environment_error" in record.extra:  # bad input or environment: not a result
            raise OptionError("cannot run a missing run", where=f"{spec.label} on "
                              f"{spec.dataset} seed {spec.seed}",
                              value=record.extra["environment_error"])
        results.put(record, on_duplicate="replace")
        if not record.ok:
            last = (record.error or "").strip().splitlines()[-1:] or ["no message"]
            failed.append(f"{spec.label} on {spec.dataset} seed {spec.seed} ({last[0]})")
    if failed:
        raise OptionError(f"{len(failed)} run(s) failed (recorded in the store)",
                          where=str(store), value="; ".join(failed))
    keys = [spec.key for spec in specs.values()]
    added = results.to_table(spec_key=keys)
    return pd.concat([table, added], ignore_index=True).drop_duplicates(
        ["spec_key", "metric", "split"])


def markdown(r) -> str:
    pct = f"{100 * r.confidence:.0f} %"
    lines = [f"# {r.model_a} vs {r.model_b} ({r.regime}, {len(r.datasets)} datasets)", "",
             f"**Verdict: {r.verdict}**", "",
             f"- IQM of normalised scores: {r.iqm_a:.3f} vs {r.iqm_b:.3f}; difference "
             f"{r.difference:+.3f} [{r.difference_ci[0]:+.3f}, {r.difference_ci[1]:+.3f}] "
             f"({pct} stratified bootstrap, {r.rounds} rounds)",
             f"- probability of improvement P({r.model_a} > {r.model_b}): "
             f"{r.probability_of_improvement:.3f} [{r.probability_ci[0]:.3f}, "
             f"{r.probability_ci[1]:.3f}]",
             f"- normaliser: {r.normaliser}", "",
             "| dataset | metric | A mean ± std (seeds) | B mean ± std (seeds) | winner |",
             "|---|---|---|---|---|"]
    for row in r.per_dataset.itertuples(index=False):
        lines.append(f"| {row.dataset} | {row.metric} | {row.mean_a:.3f} ± {row.std_a:.3f} "
                     f"({row.seeds_a}) | {row.mean_b:.3f} ± {row.std_b:.3f} ({row.seeds_b}) | "
                     f"{row.winner} |")
    wins = r.per_dataset["winner"].value_counts()
    lines += ["", f"wins: {r.model_a} {int(wins.get(r.model_a, 0))}, {r.model_b} "
                  f"{int(wins.get(r.model_b, 0))}, ties {int(wins.get('tie', 0))} "
                  "(a tie: the means differ by less than their combined standard error)"]
    return "\n".join(lines) + "\n"


def html_page(r) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(x.dataset)}</td><td>{html.escape(x.metric)}</td>"
        f"<td>{x.mean_a:.3f} ± {x.std_a:.3f} ({x.seeds_a})</td>"
        f"<td>{x.mean_b:.3f} ± {x.std_b:.3f} ({x.seeds_b})</td>"
        f"<td>{html.escape(x.winner)}</td></tr>" for x in r.per_dataset.itertuples(index=False))
    a, b = html.escape(r.model_a), html.escape(r.model_b)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{a} vs {b}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em}}</style></head><body>
<h1>{a} vs {b}</h1><p><b>Verdict: {html.escape(r.verdict)}</b> ({html.escape(r.regime)},
{len(r.datasets)} datasets, normaliser {html.escape(r.normaliser)})</p>
<p>IQM difference {r.difference:+.3f} [{r.difference_ci[0]:+.3f}, {r.difference_ci[1]:+.3f}];
probability of improvement {r.probability_of_improvement:.3f}
[{r.probability_ci[0]:.3f}, {r.probability_ci[1]:.3f}]
({100 * r.confidence:.0f} % bootstrap intervals, {r.rounds} rounds)</p>
<table><tr><th>dataset</th><th>metric</th><th>{a}</th><th>{b}</th><th>winner</th></tr>{rows}
</table></body></html>
"""
