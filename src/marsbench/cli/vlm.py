"""`marsbench vlm`: zero-shot evaluation of a vision-language model on one dataset split."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Optional

import typer

from ..errors import OptionError
from . import common

DEFAULT_STORE = Path("runs/results.sqlite")  # the same store as `run` and `sweep`


def default_cache() -> Path:
    """``<cache root>/vlm/responses.sqlite`` (``$MARSBENCH_CACHE``, else the user cache dir)."""
    from ..sources.content_hash import cache_root

    return cache_root() / "vlm" / "responses.sqlite"


def _temperature(text: str) -> float | None:
    """The sampling temperature: a finite number >= 0, or None (left out of the request)."""
    if text.strip().lower() in ("none", "default", "omit"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise OptionError("--temperature must be a finite number >= 0", where="--temperature",
                          value=text, fix="e.g. --temperature 0, or 'none' to leave it out")
    return value


def _check_request_options(timeout: float, base_url: str | None) -> None:
    """Refuse a bad --timeout or --base-url before any request (not once per request)."""
    if not (math.isfinite(timeout) and timeout > 0):
        raise OptionError("--timeout must be a positive number of seconds", where="--timeout",
                          value=timeout, fix="e.g. --timeout 60")
    if base_url is not None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise OptionError("--base-url must be an http(s) URL", where="--base-url",
                              value=base_url, fix="e.g. --base-url http://localhost:8000/v1")


EPILOG = ("Examples:\n\n"
          "marsbench vlm --dataset mb-frost_cls --provider openai --model gpt-4o-mini --limit 50\n\n"
          "marsbench vlm --dataset mb-landmark_cls --provider openai --model "
          "Qwen/Qwen2.5-VL-7B-Instruct --base-url http://localhost:8000/v1    # vLLM, Ollama\n\n"
          "marsbench vlm --dataset mb-domars16k --provider gemini --model gemini-2.0-flash "
          "--concurrency 8")


def vlm_command(
    dataset: str = typer.Option(
        ..., "--dataset", help="Catalog name (mb-domars16k) or a dataset folder."),
    provider: str = typer.Option(
        ..., "--provider", help="openai (any OpenAI-compatible API) or gemini."),
    model: str = typer.Option(
        ..., "--model", help="Model id, e.g. gpt-4o-mini or gemini-2.0-flash."),
    split: str = typer.Option("test", "--split"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N samples."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Requests in flight at once."),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="OpenAI-compatible server (vLLM, Ollama) or Gemini endpoint."),
    root: Optional[Path] = typer.Option(None, "--root", help="Folder holding the datasets."),
    source: str = typer.Option("auto", "--source", help="auto, folder or hf."),
    cache: Optional[Path] = typer.Option(
        None, "--cache", help="Response cache (SQLite); default in the user cache dir."),
    store: Path = typer.Option(
        DEFAULT_STORE, "--store", help="Results store (SQLite) the run record goes to."),
    prompt: Optional[Path] = typer.Option(
        None, "--prompt", help="A prompt YAML instead of the packaged one."),
    max_side: int = typer.Option(
        512, "--max-side", min=16, help="Longest image side sent, in pixels (never upscaled)."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per request attempt."),
    max_retries: int = typer.Option(
        5, "--max-retries", min=0, help="Retries on 429, 5xx and timeouts."),
    temperature: str = typer.Option(
        "0", "--temperature", help="Sampling temperature, or 'none' to omit it."),
    max_tokens: Optional[int] = typer.Option(
        None, "--max-tokens", min=1, help="Cap on answer tokens."),
    predictions: Optional[Path] = typer.Option(
        None, "--predictions", help="Also write each answer as JSON lines here."),
) -> None:
    """Ask a VLM about every image of a split; score it like a trained model; store the record."""
    from ..runs import ResultsStore
    from ..sources import SPLITS, open_dataset
    from ..vocab import DATA_SOURCES as SOURCES
    from ..vlm import IncompleteRunError, make_client, run_zero_shot, task_format, zero_shot_record
    from ..vlm.clients import PROVIDERS

    # Every input is checked before the first (paid) request: a bad one is one line, exit 2.
    common.choice(provider, PROVIDERS, "--provider")
    temperature_value = _temperature(temperature)
    _check_request_options(timeout, base_url)
    common.choice(split, SPLITS, "--split")
    common.choice(source, SOURCES, "--source")
    root = common.data_root(root)
    common.dataset_name(dataset, "--dataset")
    if prompt is not None and not prompt.is_file():
        raise OptionError("no prompt file at this path" if not prompt.is_dir() else
                                 "the --prompt path is a folder, not a YAML file",
                                 where=prompt, fix="give a prompt YAML file (see docs/vlm.md)")
    cache_path = common.output_file(cache or default_cache(), "--cache")
    if predictions is not None:
        common.output_file(predictions, "--predictions", create=False)
    results = ResultsStore(store)  # a folder, foreign or read-only store: refused now
    client = make_client(provider, model, base_url=base_url, timeout=timeout,
                         max_retries=max_retries, temperature=temperature_value,
                         max_tokens=max_tokens)  # MissingAPIKeyError: one line
    data = open_dataset(dataset, split, root=root, source=source)
    try:
        task_format(data.card)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--dataset") from None
    total = len(data) if limit is None else min(limit, len(data))
    done, lock = [0], threading.Lock()

    def progress(item) -> None:
        with lock:
            done[0] += 1
            if done[0] % 25 == 0 or done[0] == total:
                typer.echo(f"  {done[0]}/{total} answered", err=True)

    typer.echo(f"{data.card.name} [{split}]: {total} samples, {provider}:{model}, "
               f"cache {cache_path}", err=True)
    try:
        result = run_zero_shot(data, client, cache=cache_path, prompt=prompt, split=split,
                               limit=limit, concurrency=concurrency, max_side=max_side,
                               progress=progress)
    except IncompleteRunError as e:  # the work ran and part of it failed: exit 1, not 2
        common.echo_error(str(e))
        raise typer.Exit(1) from None
    if predictions is not None:
        write_predictions(result, predictions)
    folder = Path(dataset).expanduser()
    # a dataset given as a folder is recorded by name under its parent folder, as `run` does
    data_root = str(folder.resolve().parent) if folder.is_dir() else (str(root) if root else None)
    record = zero_shot_record(result, data_root=data_root)
    if predictions is not None:
        record.predictions_path = str(predictions)
    results.put(record, on_duplicate="replace")
    counts, usage, m = result.counts, result.usage, result.metrics
    typer.echo(json.dumps({
        "dataset": result.dataset, "split": result.split, "model": result.model_label,
        "prompt_version": result.prompt.version, "f1_weighted": round(m["f1_weighted"], 4),
        "f1_macro": round(m["f1_macro"], 4), "accuracy": round(m["accuracy"], 4),
        "counts": counts, "usage": usage, "store": str(store), "spec_key": record.spec_key,
    }, indent=2))


def write_predictions(result, path: Path) -> None:
    """One JSON line per sample: id, target, raw answer, parsed prediction, status."""
    from ..io import atomic_path

    with atomic_path(path) as tmp, tmp.open("w") as f:
        for it in result.items:
            target = it.target.tolist() if hasattr(it.target, "tolist") else it.target
            pred = list(it.prediction) if isinstance(it.prediction, tuple) else it.prediction
            f.write(json.dumps({"sample_id": it.sample_id, "target": target, "answer": it.answer,
                                "prediction": pred, "status": it.status,
                                "cached": it.cached}) + "\n")
