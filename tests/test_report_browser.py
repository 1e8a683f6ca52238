"""The HTML report in a real headless Chromium: no console errors, every plot loads, the
screenshot shows a plot. Chromium is driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages ended by NUL on fds 3/4), so no extra package is needed.

Without /usr/bin/chromium the test skips locally (run scripts/install_browser.sh) and FAILS when
the environment variable CI is set.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from marsbench.aggregate import results_table
from marsbench.report import make_report

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,1400", "--remote-debugging-pipe",
]
TIMEOUT = 90.0


def chromium_path() -> str:
    path = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
    if path is None:
        message = "Chromium is missing: run scripts/install_browser.sh to install it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class DevToolsPipe:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, exe: str, user_data_dir: Path):
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # move the child's ends above fd 9 so the shell's "3<&N 4>&M" cannot clobber them
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        args = [*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{child_r} 4>&{child_w}', exe, *args],
            pass_fds=(child_r, child_w), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        os.close(child_r)
        os.close(child_w)
        self.write_fd, self.read_fd = to_browser_w, from_browser_r
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        reply = self._read_until(lambda m: m.get("id") == self.next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_event(self, method: str) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        return self._read_until(lambda m: m.get("method") == method)

    def _read_until(self, wanted) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if wanted(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited: {self.proc.stderr.read().decode()[-2000:]}")
            self.buffer += chunk

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.write_fd, self.read_fd):
            os.close(fd)


def small_results() -> pd.DataFrame:
    """Two models, three datasets, two regimes, partitions and few-shot: every figure kind."""
    rng = np.random.default_rng(0)
    rows = []
    for model, level in (("mars-net", 0.85), ("tiny-cnn", 0.7)):
        for regime, shift in (("feature_extraction", 0.0), ("fine_tuning", 0.03)):
            for dataset in ("mb-domars16k", "mb-landmark_cls", "mb-surface_cls"):
                for variant, drop in (("full", 0.0), ("partition:0.10", 0.15), ("partition:0.50", 0.05),
                                      ("few_shot:5", 0.3), ("few_shot:20", 0.2)):
                    for seed in (0, 1, 42):
                        rows.append(dict(model=model, dataset=dataset, task="classification",
                                         regime=regime, variant=variant, seed=seed, metric="f1_weighted",
                                         value=level + shift - drop + rng.normal(0, 0.01)))
    return results_table(rows)


def test_report_renders_in_headless_chromium(tmp_path):
    exe = chromium_path()
    written = make_report(small_results(), tmp_path / "report", baselines=False, rounds=200)
    html_path = written["html"]
    n_figures = sum(1 for key in written if key.startswith("figure:"))
    assert n_figures == 5  # aggregate, regimes, per dataset, partition curves, few-shot curves
    assert html_path.read_text().count('<img src="data:image/png;base64,') == n_figures

    browser = DevToolsPipe(exe, tmp_path / "chromium-profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": html_path.resolve().as_uri()}, session=session)
        browser.wait_event("Page.loadEventFired")
        images = browser.send("Runtime.evaluate", {
            "expression": "JSON.stringify(Array.from(document.images).map("
                          "i => [i.complete, i.naturalWidth, i.naturalHeight]))",
            "returnByValue": True}, session=session)["result"]["value"]
        images = json.loads(images)
        browser.send("Runtime.evaluate", {"expression": "document.images[0].scrollIntoView()"}, session=session)
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
    finally:
        browser.close()

    errors = [e for e in browser.events
              if e["method"] == "Runtime.exceptionThrown"
              or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    assert len(images) == n_figures
    assert all(complete and width > 100 and height > 100 for complete, width, height in images), images

    (tmp_path / "screenshot.png").write_bytes(base64.b64decode(shot))  # kept for a failing run
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(shot))).convert("RGB")).astype(int)
    assert pixels.shape[1] == 1280 and pixels.shape[0] > 600
    assert pixels.std() > 20  # not a blank page
    # the plots are the only saturated colour on the page (text is black / grey / brown)
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 80).mean() > 0.001


def test_missing_chromium_fails_under_ci_and_skips_locally(monkeypatch):
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="scripts/install_browser.sh"):
        chromium_path()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="scripts/install_browser.sh"):
        chromium_path()
