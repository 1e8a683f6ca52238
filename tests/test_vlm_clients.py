"""The real `openai` and `google-genai` clients against a scripted HTTP server on 127.0.0.1.

The server decodes every image part it receives (base64 PNG) and answers by the image's pixel
value, so answers do not depend on request order; faults (429, 5xx, timeouts, malformed bodies,
a hang) are scripted per image. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from marsbench.catalog import get_card
from marsbench.runs import ResultsStore
from marsbench.sources.samples import ClassificationSample, SegmentationSample
from marsbench.vlm import (
    GeminiClient,
    IncompleteRunError,
    OpenAIChatClient,
    ResponseCache,
    run_zero_shot,
    sent_size,
    zero_shot_record,
)

LANDMARKS = ["other", "crater", "dark dune", "slope streak", "bright dune", "impact ejecta",
             "swiss cheese", "spider"]
SECRET = "sk-test-DO-NOT-STORE-4711"


# -- a stand-in dataset ---------------------------------------------------------------------------


class ListDataset(list):
    """The runner's contract: a sequence of samples with ``card``, ``class_names``, ``split``."""

    def __init__(self, samples, card, class_names, split="test"):
        super().__init__(samples)
        self.card, self.class_names, self.split = card, list(class_names), split


# Sample i of the landmark stand-in: a 100 x 80 grayscale image of constant value 20 + 7 i (the
# server reads it back to know which sample it sees), its true class, and the model's answer.
LANDMARK_ROWS = [
    (1, "crater"), (2, "Dark dune."), (3, "**slope streak**"), (4, "The image shows a bright dune."),
    (7, "spider"), (0, "other"), (1, "I cannot tell from this image."), (5, "impact ejecta"),
    (6, "Swiss Cheese"), (2, "crater"), (3, ""), (1, "Answer: crater"),
]


def landmark_dataset(n: int = len(LANDMARK_ROWS)) -> ListDataset:
    samples = [ClassificationSample(f"lm{i}", (np.full((100, 80, 1), 20 + 7 * i, np.uint8),), t)
               for i, (t, _) in enumerate(LANDMARK_ROWS[:n])]
    return ListDataset(samples, get_card("mb-landmark_cls"), LANDMARKS)


def landmark_answer(images: list[np.ndarray]) -> str:
    return LANDMARK_ROWS[(int(images[0].flat[0]) - 20) // 7][1]


# -- the fake server ------------------------------------------------------------------------------


class FakeVLMServer:
    """OpenAI chat-completions and Gemini generateContent, answered by ``answer_for(images)``.

    ``faults[key]`` is a queue of faults served, one per request, before the real answer for the
    image whose first pixel is ``key``: ``("status", code)``, ``("sleep", s)`` (answer after s
    seconds: a client timeout), ``("raw", bytes)`` (a 200 that is not JSON), ``("hang",)``.
    """

    def __init__(self, answer_for: Callable[[list[np.ndarray]], str]):
        self.answer_for = answer_for
        self.faults: dict[int, list[tuple]] = {}
        self.requests: list[dict] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api = "gemini" if ":generateContent" in self.path else "openai"
                images, texts, mimes = (_gemini_parts if api == "gemini" else _openai_parts)(body)
                key = int(images[0].flat[0]) if images else -1
                with server.lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    server.requests.append({"api": api, "path": self.path, "body": body,
                                            "headers": headers, "images": images,
                                            "texts": texts, "mimes": mimes, "key": key})
                    queue = server.faults.get(key) or []
                    fault = queue.pop(0) if queue else None
                try:
                    self._serve(api, body, images, fault)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout) or was killed

            def _serve(self, api, body, images, fault):
                if fault and fault[0] == "status":
                    return self._send(fault[1], {"error": {"message": "scripted", "code": fault[1]}},
                                      {"retry-after-ms": "5", "retry-after": "0"})
                if fault and fault[0] == "raw":
                    return self._send(200, fault[1])
                if fault and fault[0] == "hang":
                    server.release.wait(30)
                    return
                if fault and fault[0] == "sleep":
                    time.sleep(fault[1])
                text = server.answer_for(images)
                if api == "gemini":
                    out = {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                           "finishReason": "STOP"}],
                           "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 3,
                                             "totalTokenCount": 103}}
                else:
                    out = {"id": "c1", "object": "chat.completion", "created": 0,
                           "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}],
                           "usage": {"prompt_tokens": 100, "completion_tokens": 3,
                                     "total_tokens": 103}}
                self._send(200, out)

            def _send(self, code, payload, headers=None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def keys(self) -> list[int]:
        with self.lock:
            return [r["key"] for r in self.requests]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.array(im)


def _openai_parts(body: dict):
    images, texts, mimes = [], [], []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content:
            if part["type"] == "text":
                texts.append(part["text"])
            elif part["type"] == "image_url":
                head, b64 = part["image_url"]["url"].split(",", 1)
                mimes.append(head)
                images.append(_decode_png(base64.b64decode(b64)))
    return images, texts, mimes


def _gemini_parts(body: dict):
    images, texts, mimes = [], [], []
    for content in body["contents"]:
        for part in content["parts"]:
            if "text" in part:
                texts.append(part["text"])
            if "inlineData" in part:
                blob = part["inlineData"]  # the REST API accepts either spelling of mime type
                mimes.append(blob.get("mimeType", blob.get("mime_type")))
                data = blob["data"]  # google-genai sends URL-safe base64 without padding
                images.append(_decode_png(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))))
    return images, texts, mimes


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def server():
    with FakeVLMServer(landmark_answer) as s:
        yield s


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


def openai_client(server, **kw) -> OpenAIChatClient:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("max_retries", 3)
    return OpenAIChatClient("vlm-test", base_url=server.url + "/v1", **kw)


def gemini_client(server, **kw) -> GeminiClient:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("attempts", 4)
    return GeminiClient("gemini-test", base_url=server.url, initial_delay=0.01, max_delay=0.05,
                        **kw)


def expected_landmark_scores(n: int = len(LANDMARK_ROWS)):
    """sklearn's weighted F1 with the documented rule: an unparseable answer is a miss."""
    parsed = {"crater": 1, "Dark dune.": 2, "**slope streak**": 3, "spider": 7, "other": 0,
              "The image shows a bright dune.": 4, "impact ejecta": 5, "Swiss Cheese": 6,
              "Answer: crater": 1}
    y_true = [t for t, _ in LANDMARK_ROWS[:n]]
    y_pred = [parsed.get(a, -1) for _, a in LANDMARK_ROWS[:n]]  # -1: matches no class
    return f1_score(y_true, y_pred, labels=list(range(8)), average="weighted", zero_division=0)


# -- OpenAI ----------------------------------------------------------------------------------------


def test_openai_requests_carry_png_image_parts_of_the_documented_size(server, tmp_path):
    data = landmark_dataset()
    result = run_zero_shot(data, openai_client(server), cache=tmp_path / "c.sqlite",
                           max_side=64, concurrency=3)
    assert len(server.requests) == len(data)
    for req in server.requests:
        assert req["path"] == "/v1/chat/completions"
        assert req["headers"]["authorization"] == f"Bearer {SECRET}"
        assert req["body"]["model"] == "vlm-test" and req["body"]["temperature"] == 0
        system, user = req["body"]["messages"]
        assert system["role"] == "system" and "expert Martian geologist" in system["content"]
        assert [p["type"] for p in user["content"]] == ["text", "image_url"]
        assert "spider" in user["content"][0]["text"]  # the class list is in the text
        assert req["mimes"] == ["data:image/png;base64"]
        (img,) = req["images"]
        i = (req["key"] - 20) // 7
        original = data[i].images[0]
        assert img.shape == sent_size(original.shape, 64) == (64, 51)  # 100x80 capped at 64
        assert img.dtype == np.uint8 and (img == original[0, 0, 0]).all()  # raw, unnormalised
    assert sorted(server.keys()) == [20 + 7 * i for i in range(len(data))]
    assert result.counts == {"items": 12, "answered": 12, "parsed": 10, "unparseable": 2,
                             "failed": 0, "from_cache": 0}
    assert result.usage["input_tokens"] == 1200 and result.usage["output_tokens"] == 36
    assert result.metrics["f1_weighted"] == pytest.approx(expected_landmark_scores())
    assert [it.prediction for it in result.items][:4] == [1, 2, 3, 4]


def test_small_images_are_never_upscaled(server, tmp_path):
    run_zero_shot(landmark_dataset(2), openai_client(server), cache=tmp_path / "c.sqlite")
    assert [r["images"][0].shape for r in server.requests] == [(100, 80), (100, 80)]


def test_second_run_is_answered_from_the_cache_with_no_requests(server, tmp_path):
    data, cache = landmark_dataset(), tmp_path / "c.sqlite"
    first = run_zero_shot(data, openai_client(server), cache=cache, concurrency=4)
    n = len(server.requests)
    second = run_zero_shot(data, openai_client(server), cache=cache, concurrency=4)
    assert len(server.requests) == n == len(data)
    assert second.counts["from_cache"] == len(data)
    assert second.metrics == first.metrics
    assert second.usage["input_tokens"] == first.usage["input_tokens"]  # what they cost then
    assert second.usage["input_tokens_this_run"] == 0
    # another model, prompt or image size is another cache key
    run_zero_shot(landmark_dataset(2), openai_client(server, temperature=0.7), cache=cache)
    assert len(server.requests) == n + 2


def test_unparseable_answers_are_kept_with_their_raw_text(server, tmp_path):
    result = run_zero_shot(landmark_dataset(), openai_client(server), cache=tmp_path / "c.sqlite")
    bad = [it for it in result.items if it.status == "unparseable"]
    assert [(it.sample_id, it.answer) for it in bad] == [
        ("lm6", "I cannot tell from this image."), ("lm10", "")]
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        stored = {r["sample_id"]: r["answer"] for r in cache.rows()}
    assert stored["lm6"] == "I cannot tell from this image." and stored["lm10"] == ""
    assert len(stored) == 12


def test_rate_limit_then_success_is_retried(server, tmp_path):
    server.faults = {20: [("status", 429), ("status", 429)], 27: [("status", 503)]}
    result = run_zero_shot(landmark_dataset(3), openai_client(server), cache=tmp_path / "c.sqlite")
    assert server.keys().count(20) == 3 and server.keys().count(27) == 2
    assert result.counts["failed"] == 0 and result.counts["parsed"] == 3


def test_timeout_then_success_is_retried(server, tmp_path):
    server.faults = {27: [("sleep", 2.0)]}  # the first attempt always times out
    client = openai_client(server, timeout=0.7)
    result = run_zero_shot(landmark_dataset(2), client, cache=tmp_path / "c.sqlite")
    assert server.keys().count(27) >= 2  # (a loaded machine may time out a retry too)
    assert [it.answer for it in result.items] == ["crater", "Dark dune."]


def test_failed_requests_are_not_cached_and_a_rerun_asks_only_for_them(server, tmp_path):
    server.faults = {27: [("status", 400)], 34: [("raw", b"this is not json")]}
    cache = tmp_path / "c.sqlite"
    with pytest.raises(IncompleteRunError, match="2 of 5 requests failed") as info:
        run_zero_shot(landmark_dataset(5), openai_client(server, max_retries=0), cache=cache)
    partial = info.value.result
    assert [it.status for it in partial.items] == ["ok", "failed", "failed", "ok", "ok"]
    assert "BadRequestError" in partial.items[1].error
    assert len(ResponseCache(cache)) == 3
    before = len(server.requests)
    result = run_zero_shot(landmark_dataset(5), openai_client(server), cache=cache)
    assert sorted(server.keys()[before:]) == [27, 34]
    assert result.counts["from_cache"] == 3 and result.counts["failed"] == 0


@pytest.mark.parametrize("make", [openai_client, gemini_client], ids=["openai", "gemini"])
def test_a_rejected_key_stops_the_run_at_once(server, tmp_path, make):
    server.faults = {34: [("status", 401)] * 10}
    with pytest.raises(Exception, match="401|scripted") as info:
        run_zero_shot(landmark_dataset(), make(server), cache=tmp_path / "c.sqlite",
                      concurrency=1)
    assert not isinstance(info.value, IncompleteRunError)
    keys = server.keys()  # 34 asked once, not retried; at most the queued next one went out too
    assert keys[:3] == [20, 27, 34] and len(keys) <= 5 and keys.count(34) == 1
    assert len(ResponseCache(tmp_path / "c.sqlite")) == len(keys) - 1  # the answered ones


class InterruptAfter:
    """Wraps a client; the (n+1)-th request raises KeyboardInterrupt, as Ctrl-C would."""

    def __init__(self, client, n: int):
        self.client, self.n, self.calls = client, n, 0
        self.provider, self.model, self.identity = client.provider, client.model, client.identity

    def ask(self, prompt, images):
        self.calls += 1
        if self.calls > self.n:
            raise KeyboardInterrupt
        return self.client.ask(prompt, images)


def test_interrupted_run_resumes_without_resending_finished_items(server, tmp_path):
    cache = tmp_path / "c.sqlite"
    with pytest.raises(KeyboardInterrupt):
        run_zero_shot(landmark_dataset(), InterruptAfter(openai_client(server), 5), cache=cache,
                      concurrency=1)
    first = list(server.keys())
    assert len(first) == 5 and len(ResponseCache(cache)) == 5
    result = run_zero_shot(landmark_dataset(), openai_client(server), cache=cache, concurrency=2)
    resumed = server.keys()[5:]
    assert sorted(first + resumed) == [20 + 7 * i for i in range(12)]  # each image asked once
    assert result.counts["from_cache"] == 5
    assert result.metrics["f1_weighted"] == pytest.approx(expected_landmark_scores())


CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from marsbench.catalog import get_card
    from marsbench.sources.samples import ClassificationSample
    from marsbench.vlm import OpenAIChatClient, run_zero_shot

    class ListDataset(list):  # the same 12 samples as landmark_dataset()
        card, split, class_names = get_card("mb-landmark_cls"), "test", {names!r}

    data = ListDataset(
        ClassificationSample(f"lm{{i}}", (np.full((100, 80, 1), 20 + 7 * i, np.uint8),), t)
        for i, t in enumerate({targets!r}))
    client = OpenAIChatClient("vlm-test", base_url=sys.argv[1] + "/v1", timeout=60, max_retries=0)
    run_zero_shot(data, client, cache=sys.argv[2], concurrency=1)
""")


def test_killed_process_resumes_without_resending_finished_items(server, tmp_path):
    server.faults = {20 + 7 * 4: [("hang",)]}  # the 5th sample's first request never returns
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(names=LANDMARKS, targets=[t for t, _ in LANDMARK_ROWS]))
    cache = tmp_path / "c.sqlite"
    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    child = subprocess.Popen([sys.executable, str(script), server.url, str(cache)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):  # up to 60 s for the child to start and reach the hanging request
            if len(server.keys()) >= 5 or child.poll() is not None:
                break
            time.sleep(0.1)
        assert child.poll() is None, child.stdout.read().decode()
        assert len(server.keys()) == 5
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert len(ResponseCache(cache)) == 4  # every finished answer survived the kill
    result = run_zero_shot(landmark_dataset(), openai_client(server), cache=cache)
    assert sorted(server.keys()[5:]) == [20 + 7 * i for i in range(4, 12)]
    assert result.counts["from_cache"] == 4 and result.counts["answered"] == 12


def test_api_key_is_never_written_to_cache_or_store(server, tmp_path, caplog):
    caplog.set_level("INFO")
    result = run_zero_shot(landmark_dataset(3), openai_client(server), cache=tmp_path / "c.sqlite")
    record = zero_shot_record(result)
    ResultsStore(tmp_path / "store.sqlite").put(record)
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in record.to_json() and SECRET not in caplog.text


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        OpenAIChatClient("gpt-4o-mini")
    OpenAIChatClient("llava", base_url="http://127.0.0.1:9/v1")  # local servers need no key
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(RuntimeError, match="GEMINI_API_KEY"):
        GeminiClient("gemini-2.0-flash")


# -- image pairs and presence ----------------------------------------------------------------------


def test_image_pairs_send_before_then_after(server, tmp_path):
    card = get_card("mb-change_cls_hirise")
    samples = [ClassificationSample(f"p{i}", (np.full((30, 30, 1), 100 + 2 * i, np.uint8),
                                               np.full((30, 30, 1), 101 + 2 * i, np.uint8)), i % 2)
               for i in range(4)]
    server.answer_for = lambda imgs: ["no change", "Change.", "change", "no_change"][
        (int(imgs[0].flat[0]) - 100) // 2]
    data = ListDataset(samples, card, ["no_change", "change"])
    result = run_zero_shot(data, openai_client(server), cache=tmp_path / "c.sqlite")
    for req in server.requests:
        before, after = req["images"]
        assert after.flat[0] == before.flat[0] + 1  # before first, then after
        assert req["texts"][-2:] == ["Image 1 (before):", "Image 2 (after):"]
    assert [it.prediction for it in result.items] == [0, 1, 1, 0]
    assert result.metrics["f1_weighted"] == pytest.approx(
        f1_score([0, 1, 0, 1], [0, 1, 1, 0], average="binary"))


def test_presence_on_segmentation_masks(server, tmp_path):
    card = get_card("mb-crater_multi_seg")
    names = list(card.class_names)
    masks = [np.array([[0, 2], [3, 3]]), np.array([[0, 0], [0, 0]]), np.array([[1, 4], [0, 0]])]
    samples = [SegmentationSample(f"s{i}", np.full((40, 40, 1), 50 + i, np.uint8), m)
               for i, m in enumerate(masks)]
    answers = ["Layered and buried craters are present.", "none", "secondary, other"]
    server.answer_for = lambda imgs: answers[int(imgs[0].flat[0]) - 50]
    result = run_zero_shot(ListDataset(samples, card, names), openai_client(server),
                           cache=tmp_path / "c.sqlite")
    assert "background" not in server.requests[0]["texts"][1].split("Answer")[0]
    assert result.prompt.label_names == ["other", "layered", "buried", "secondary"]
    assert [it.target.tolist() for it in result.items] == [[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]]
    assert [it.prediction for it in result.items] == [(2, 3), (), (1, 4)]
    assert result.metrics["f1_weighted"] == pytest.approx(1.0)


# -- Gemini ----------------------------------------------------------------------------------------


def test_gemini_requests_carry_inline_png_parts(server, tmp_path):
    data = landmark_dataset(4)
    result = run_zero_shot(data, gemini_client(server), cache=tmp_path / "c.sqlite",
                           max_side=50, concurrency=2)
    assert len(server.requests) == 4
    for req in server.requests:
        assert req["api"] == "gemini" and req["path"].endswith("/models/gemini-test:generateContent")
        assert req["headers"]["x-goog-api-key"] == SECRET
        assert "expert Martian geologist" in json.dumps(req["body"]["systemInstruction"])
        assert req["mimes"] == ["image/png"]
        (img,) = req["images"]
        assert img.shape == sent_size((100, 80), 50) == (50, 40)
        assert (img == req["key"]).all()
    assert [it.prediction for it in result.items] == [1, 2, 3, 4]
    assert result.usage == {"input_tokens": 400, "output_tokens": 12,
                            "input_tokens_this_run": 400, "output_tokens_this_run": 12}


def test_gemini_retries_rate_limits_server_errors_and_timeouts(server, tmp_path):
    server.faults = {20: [("status", 429)], 27: [("status", 500)], 34: [("sleep", 2.0)]}
    client = gemini_client(server, timeout=0.7)
    result = run_zero_shot(landmark_dataset(3), client, cache=tmp_path / "c.sqlite")
    keys = server.keys()
    assert (keys.count(20), keys.count(27)) == (2, 2) and keys.count(34) >= 2
    assert result.counts["parsed"] == 3
    again = run_zero_shot(landmark_dataset(3), gemini_client(server), cache=tmp_path / "c.sqlite")
    assert len(server.keys()) == len(keys) and again.counts["from_cache"] == 3


# -- results store -----------------------------------------------------------------------------------


def test_record_lands_in_the_results_store_as_zero_shot(server, tmp_path):
    result = run_zero_shot(landmark_dataset(), openai_client(server), cache=tmp_path / "c.sqlite")
    store = ResultsStore(tmp_path / "store.sqlite")
    store.put(zero_shot_record(result))
    (record,) = store.records(regime="zero_shot")
    assert record.spec.model == "openai:vlm-test" and record.task == "classification"
    assert record.metric("f1_weighted") == pytest.approx(expected_landmark_scores())
    assert record.extra["prompt_version"] == "1" and record.extra["provider"] == "openai"
    assert record.extra["counts"]["unparseable"] == 2
    assert record.extra["usage"]["input_tokens"] == 1200
    assert record.extra["unparseable_answers"][0]["answer"] == "I cannot tell from this image."
    table = store.to_table()
    assert set(table["regime"]) == {"zero_shot"} and "f1_weighted" in set(table["metric"])


# -- the command line ------------------------------------------------------------------------------


def test_cli_runs_a_real_dataset_folder_and_stores_the_record(server, tmp_path, shared_data):
    from typer.testing import CliRunner

    from marsbench.cli.main import app
    from marsbench.sources import open_dataset

    server.answer_for = lambda imgs: "Crater."
    folder = shared_data / "mb-landmark_cls-mini"
    store, cache, preds = tmp_path / "store.sqlite", tmp_path / "c.sqlite", tmp_path / "p.jsonl"
    args = ["vlm", "--dataset", str(folder), "--provider", "openai", "--model", "vlm-test",
            "--base-url", server.url + "/v1", "--limit", "6", "--concurrency", "2",
            "--cache", str(cache), "--store", str(store), "--predictions", str(preds),
            "--prompt", str(load_prompt_path("mb-landmark_cls"))]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert len(server.requests) == 6
    assert all(r["images"][0].shape == (227, 227) for r in server.requests)
    targets = [s.target for s in open_dataset(folder, "test")[:6]]
    (record,) = ResultsStore(store).records(regime="zero_shot")
    assert record.metric("f1_weighted") == pytest.approx(
        f1_score(targets, [1] * 6, labels=list(range(8)), average="weighted", zero_division=0))
    assert record.spec.dataset == "mb-landmark_cls-mini" and record.extra["counts"]["parsed"] == 6
    lines = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [x["prediction"] for x in lines] == [1] * 6 and lines[0]["answer"] == "Crater."
    again = CliRunner().invoke(app, args)  # all cached: no request, the record is replaced
    assert again.exit_code == 0 and len(server.requests) == 6
    assert len(ResultsStore(store).records()) == 1


def load_prompt_path(name: str):
    from marsbench.vlm.prompts import prompt_path

    return prompt_path(name)
