"""Run a vision-language model zero-shot over a dataset split, with a cache, and score it.

`run_zero_shot` walks the samples in order, answers each from the `ResponseCache` when it can and
otherwise asks the client, with at most ``concurrency`` requests in flight (threads: the clients
are blocking and thread-safe). Each answer is committed to the cache the moment it arrives, so an
interrupted run (Ctrl-C, a crash, kill -9) loses only what was in flight, and the rerun asks only
for the rest. A request that still fails after the client's own retries is not cached: the run
finishes every other item, then raises `IncompleteRunError` (rerun to retry just those). An
authentication, permission or unknown-model error (HTTP 401, 403, 404) stops the run at once.

`zero_shot_record` turns the result into a `RunRecord` with regime ``zero_shot`` for the
`ResultsStore`, so reports show VLMs beside trained models.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..catalog import DatasetCard, Task, TaskKind
from ..errors import MarsbenchError
from .cache import ResponseCache, cache_key
from .clients import Reply, VLMClient
from .images import DEFAULT_MAX_SIDE, encode_png, images_hash
from .parsing import parse_multi, parse_single
from .prompts import Prompt, PromptTemplate, TaskFormat, load_prompt
from .scoring import sample_images, score, target_of

REGIME = "zero_shot"
FATAL_STATUS = (401, 403, 404)  # HTTP statuses that stop the whole run at once
ItemStatus = Literal["ok", "unparseable", "failed"]


class IncompleteRunError(MarsbenchError, RuntimeError):
    """Some requests failed after retries; every other answer is cached. ``result`` is partial."""

    def __init__(self, result: ZeroShotResult):
        self.result = result
        failed = [it for it in result.items if it.status == "failed"]
        first = failed[0]
        super().__init__(
            f"{result.dataset} [{result.split}] {result.model_label}: {len(failed)} of "
            f"{len(result.items)} requests failed after retries (first, sample "
            f"{first.sample_id}: {first.error}). The other answers are cached: rerun the same "
            "command to ask only for the missing ones.")


@dataclass
class ItemResult:
    """One sample's answer: raw text, parsed prediction (None if unparseable), provenance."""

    index: int
    sample_id: str
    target: Any
    answer: str | None = None
    prediction: int | tuple[int, ...] | None = None
    status: ItemStatus = "ok"
    cached: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None


@dataclass
class ZeroShotResult:
    """Everything a zero-shot run produced."""

    dataset: str
    split: str
    prompt: Prompt
    client_identity: dict[str, Any]
    card: DatasetCard
    class_names: list[str]
    items: list[ItemResult]
    metrics: dict[str, Any] = field(default_factory=dict)
    max_side: int = DEFAULT_MAX_SIDE
    limit: int | None = None
    data_fingerprint: str | None = None
    seconds: float = 0.0

    @property
    def model_label(self) -> str:
        return f"{self.client_identity['provider']}:{self.client_identity['model']}"

    @property
    def counts(self) -> dict[str, int]:
        n = {s: sum(it.status == s for it in self.items) for s in ("ok", "unparseable", "failed")}
        return {"items": len(self.items), "answered": n["ok"] + n["unparseable"],
                "parsed": n["ok"], "unparseable": n["unparseable"], "failed": n["failed"],
                "from_cache": sum(it.cached for it in self.items)}

    @property
    def usage(self) -> dict[str, int]:
        """Tokens of every answer used (cached ones at what they cost then) and of this run."""
        fresh = [it for it in self.items if not it.cached]
        return {"input_tokens": sum(it.input_tokens for it in self.items),
                "output_tokens": sum(it.output_tokens for it in self.items),
                "input_tokens_this_run": sum(it.input_tokens for it in fresh),
                "output_tokens_this_run": sum(it.output_tokens for it in fresh)}


def prompt_for(dataset: Any, prompt: PromptTemplate | str | Path | None = None) -> Prompt:
    """The dataset's prompt, rendered from its class names (its own file, or the generic one)."""
    card: DatasetCard = dataset.card
    template = prompt if isinstance(prompt, PromptTemplate) else load_prompt(
        prompt if prompt is not None else card.name, task=task_format(card))
    captions = ("before", "after") if card.image_pair and not template.images else None
    return template.render(list(dataset.class_names), dataset=card.name, image_captions=captions,
                           class_aliases=getattr(dataset, "class_aliases", None))


def task_format(card: DatasetCard) -> TaskFormat:
    if card.task is Task.SEGMENTATION:
        return "presence"
    if card.task is Task.CLASSIFICATION:
        return "multi_label" if card.kind is TaskKind.MULTILABEL else "single_label"
    raise ValueError(f"{card.name} is a {card.task} dataset; zero-shot VLM evaluation covers "
                     "classification and segmentation (as presence) only")


def run_zero_shot(
    dataset: Any,
    client: VLMClient,
    *,
    cache: ResponseCache | str | Path,
    prompt: PromptTemplate | str | Path | None = None,
    split: str | None = None,
    limit: int | None = None,
    concurrency: int = 4,
    max_side: int = DEFAULT_MAX_SIDE,
    min_pixels: int = 1,
    progress: Callable[[ItemResult], None] | None = None,
) -> ZeroShotResult:
    """Ask ``client`` about each sample of ``dataset`` (first ``limit``), score, return the result.

    ``dataset`` is any sequence of canonical samples with ``.card`` and ``.class_names`` (a
    `MarsDataset`, or a list-based stand-in). Raises `IncompleteRunError` when requests failed.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    start = time.monotonic()
    rendered = prompt_for(dataset, prompt)
    own_cache = not isinstance(cache, ResponseCache)
    store = ResponseCache(cache) if own_cache else cache
    n = len(dataset) if limit is None else min(limit, len(dataset))
    identity = client.identity
    items: list[ItemResult] = []

    def finish(item: ItemResult, reply: Reply) -> None:
        item.answer, item.input_tokens, item.output_tokens = (
            reply.text, reply.input_tokens, reply.output_tokens)
        item.prediction = (parse_single(reply.text, rendered.labels)
                           if rendered.task == "single_label"
                           else parse_multi(reply.text, rendered.labels))
        item.status = "unparseable" if item.prediction is None else "ok"
        if progress is not None:
            progress(item)

    def ask(item: ItemResult, key: str, image_hash: str, pngs: list[bytes]) -> None:
        try:
            reply = client.ask(rendered, pngs)
        except Exception as e:  # noqa: BLE001 - any API failure is this item's, reported at the end
            if _status(e) in FATAL_STATUS:
                raise  # a bad key, no access, unknown model: every request would fail alike
            item.status, item.error = "failed", f"{type(e).__name__}: {e}"
            if progress is not None:
                progress(item)
            return
        store.put(key, reply, identity=identity, prompt_version=rendered.version,
                  prompt_sha256=rendered.sha256, image_hash=image_hash,
                  dataset=rendered.dataset, sample_id=item.sample_id)
        finish(item, reply)

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="vlm")
    pending: set[Future] = set()
    try:
        for i in range(n):
            sample = dataset[i]
            images = sample_images(sample)
            item = ItemResult(index=i, sample_id=str(sample.sample_id),
                              target=target_of(sample, rendered, min_pixels=min_pixels))
            items.append(item)
            image_hash = images_hash(images, max_side)
            key = cache_key(identity, rendered.version, rendered.sha256, image_hash)
            hit = store.get(key)
            if hit is not None:
                item.cached = True
                finish(item, hit)
                continue
            pngs = [encode_png(im, max_side) for im in images]
            while len(pending) >= 2 * concurrency:  # bound memory: few encoded images waiting
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()
            pending.add(pool.submit(ask, item, key, image_hash, pngs))
        for f in pending:
            f.result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # in-flight answers still get cached
        raise
    finally:
        pool.shutdown(wait=True)
        if own_cache:
            store.close()
    result = ZeroShotResult(
        dataset=rendered.dataset, split=split or str(getattr(dataset, "split", "test")),
        prompt=rendered, client_identity=identity, card=dataset.card,
        class_names=[str(c) for c in dataset.class_names], items=items, max_side=max_side,
        limit=limit, seconds=time.monotonic() - start,
        data_fingerprint=dataset.fingerprint() if hasattr(dataset, "fingerprint") else None)
    if any(it.status == "failed" for it in items):
        raise IncompleteRunError(result)
    if items:
        result.metrics = score([it.target for it in items], [it.prediction for it in items],
                               rendered, kind=str(dataset.card.kind),
                               class_names=result.class_names)
    return result


def _status(error: Exception) -> int | None:
    """The HTTP status of an API error (``openai``: status_code; ``google-genai``: code)."""
    for name in ("status_code", "code"):
        value = getattr(error, name, None)
        if isinstance(value, int):
            return value
    return None


def zero_shot_record(result: ZeroShotResult, *, data_root: str | None = None) -> Any:
    """A `RunRecord` (regime ``zero_shot``) for the results store."""
    from ..runs import RunRecord, RunSpec

    ident = result.client_identity
    spec = RunSpec(
        dataset=result.dataset, model=result.model_label, regime=REGIME, seed=0,
        options={"provider": ident["provider"], "endpoint": ident.get("endpoint") or "",
               "model_id": ident["model"], "temperature": ident.get("temperature"),
               "max_tokens": ident.get("max_tokens"), "prompt_version": result.prompt.version,
               "prompt_sha256": result.prompt.sha256, "max_side": result.max_side,
               "limit": result.limit, "split": result.split},
        data_root=data_root)
    unparseable = [{"sample_id": it.sample_id, "answer": it.answer}
                   for it in result.items if it.status == "unparseable"]
    return RunRecord.success(
        spec, task=str(result.card.task), metrics={result.split: result.metrics},
        timings={"total_s": round(result.seconds, 3)},
        data_fingerprint=result.data_fingerprint,
        extra={"provider": ident["provider"], "model_id": ident["model"],
               "endpoint": ident.get("endpoint"), "prompt_version": result.prompt.version,
               "prompt_sha256": result.prompt.sha256, "prompt_task": result.prompt.task,
               "asked_labels": result.prompt.label_names, "counts": result.counts,
               "usage": result.usage, "image_encoding": f"png, longest side <= {result.max_side}",
               "unparseable_rule": "scored as wrong (docs/vlm.md)",
               "unparseable_answers": unparseable[:50]})
