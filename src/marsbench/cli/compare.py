"""`marsbench compare A B`: the verdict between two models from a results store."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import OptionError

EPILOG = ("Examples:\n\n"
          "marsbench compare momo_vit_b16 timm:vit_base_patch16_224.augreg_in21k_ft_in1k "
          "--store runs/results.sqlite\n\n"
          "marsbench compare resnet101 vit_l_16 --store runs/results.sqlite --regime "
          "feature_extraction --json\n\n"
          "marsbench compare efficientnet_lite0 squeezenet1_1 --store runs/results.sqlite "
          "--experiment demo_synthetic --out compare/")


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
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999)] = 0.95,
    resample_datasets: Annotated[bool, typer.Option(
        "--resample-datasets", help="also resample datasets in the bootstrap")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
    out: Annotated[Optional[Path], typer.Option(
        help="also write compare.json, compare.md and a self-contained compare.html here")
    ] = None,
) -> None:
    """The verdict between two models of a results store.

    IQM difference with a bootstrap interval, probability of improvement with its interval,
    and per-dataset winners; the verdict says whether the difference is significant."""
    from ..aggregate.compare import CompareError, compare_models
    from .report import _read_store

    if not store.is_file():
        raise OptionError("no results store", where=store,
                          fix="give --store the SQLite file `marsbench run` / `sweep` wrote")
    table = _read_store(store, list(experiment or []), False)
    try:
        result = compare_models(table, model_a, model_b, regime=regime, variant=variant,
                                datasets=list(datasets or []) or None, rounds=rounds,
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
