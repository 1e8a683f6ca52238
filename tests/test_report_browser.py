"""The HTML report in a real headless Chromium: no console errors, every plot decodes, nothing
overflows the page horizontally, the SYNTHETIC banner is on top, and a full-page screenshot
(kept as report-full.png in the test's tmp folder) shows the plots. Chromium is driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages ended by NUL on fds 3/4), so no extra package is needed.

Without /usr/bin/chromium the test skips locally (run scripts/install_browser.sh) and FAILS when
the environment variable CI is set.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marsbench.report import make_report
from test_report_content import full_records, small_results

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


OVERFLOW_JS = """JSON.stringify((() => {
  const width = document.documentElement.clientWidth, bad = [];
  for (const e of document.querySelectorAll("body *")) {
    const r = e.getBoundingClientRect();
    if (r.width > 0 && (r.right > width + 0.5 || r.left < -0.5)) bad.push(`${e.tagName}.${e.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
  const scrolling = Array.from(document.querySelectorAll(".scroll"))
    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.firstElementChild.className);
  const banner = document.getElementById("synthetic-banner");
  const sections = Array.from(document.querySelectorAll("h3")).map(h => [h.innerText, Math.round(h.getBoundingClientRect().top + window.scrollY)]);
  const swatches = Array.from(document.querySelectorAll(".swatch")).map(e => getComputedStyle(e).backgroundColor);
  return {width, scrollWidth: document.documentElement.scrollWidth, bad, scrolling, sections, swatches,
          banner: banner ? [banner.getBoundingClientRect().top, banner.innerText] : null,
          images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])};
})())"""


def test_report_renders_in_headless_chromium(tmp_path):
    exe = chromium_path()
    table = small_results()
    (tmp_path / "predictions").mkdir()
    written = make_report(table, tmp_path / "report", baselines=False, rounds=200,
                          records=full_records(table, tmp_path / "predictions"))
    html_path = written["html"]
    n_figures = sum(1 for key in written if key.startswith("figure:"))
    # aggregate, performance profiles, probability of improvement, win probability, regimes,
    # per dataset, partition curves and few-shot curves (each raw and as the paper draws them),
    # per-class scores, training curves, reliability diagrams, risk-coverage curves, score
    # against cost
    assert n_figures == 15
    html = html_path.read_text()
    assert html.count('<img src="data:image/png;base64,') == n_figures
    for heading in ("Rankings that survive noise", "Calibration", "Cost per result"):
        assert f"<h3>{heading}</h3>" in html

    browser = DevToolsPipe(exe, tmp_path / "chromium-profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": html_path.resolve().as_uri()}, session=session)
        browser.wait_event("Page.loadEventFired")
        page = json.loads(browser.send("Runtime.evaluate", {"expression": OVERFLOW_JS, "returnByValue": True},
                                       session=session)["result"]["value"])
        size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        full = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}},
            session=session)["data"]
    finally:
        browser.close()

    shot_path = tmp_path / "report-full.png"
    shot_path.write_bytes(base64.b64decode(full))  # look at it: pytest --basetemp=DIR keeps it
    errors = [e for e in browser.events
              if e["method"] == "Runtime.exceptionThrown"
              or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    images = page["images"]
    assert len(images) == n_figures
    assert all(complete and width > 100 and height > 100 for complete, width, height in images), images
    # nothing wider than the page, and no table that needs its horizontal scroll bar
    assert page["bad"] == [] and page["scrollWidth"] <= page["width"], page
    assert page["scrolling"] == [], page
    # the new sections are laid out in report order, their tables carry the models' colours
    heads = dict(page["sections"])
    order = ["Score distributions and probability of improvement", "Rankings that survive noise",
             "Training curves", "Calibration", "Cost per result"]
    assert [heads[h] for h in order] == sorted(heads[h] for h in order), page["sections"]
    assert len(set(page["swatches"])) == 2 and "rgba(0, 0, 0, 0)" not in page["swatches"]
    # the synthetic-data banner is the first thing on the page
    top, text = page["banner"]
    assert top < 40 and "SYNTHETIC DATA" in text and "mb-domars16k" in text

    pixels = np.asarray(Image.open(shot_path).convert("RGB")).astype(int)
    assert pixels.shape[1] == page["width"] and pixels.shape[0] > 4000  # the whole page, not one screen
    assert pixels.std() > 20  # not a blank page
    banner = pixels[:150]
    assert (np.abs(banner - [176, 0, 32]).sum(axis=2) < 40).mean() > 0.2  # a red banner on top
    # the plots are the only saturated colour below the banner (text is black / grey / brown)
    saturation = pixels[200:].max(axis=2) - pixels[200:].min(axis=2)
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
