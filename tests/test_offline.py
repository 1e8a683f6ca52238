"""Offline behaviour of the Hugging Face paths: fail at once, with one line saying what to do.

No timing assertions: what makes it fast is asserted instead. The Hub is probed once per process
(`marsbench.sources.hf.hub_unreachable`), no Hub client (which retries for minutes) is called
once the Hub is known unreachable, and ``HF_HUB_OFFLINE=1`` / ``MARSBENCH_OFFLINE=1`` make no
network attempt at all. A copy in the HF layout at ``<root>/<name>`` opens without ``--source``.
"""

from __future__ import annotations

import shutil
import socket
import threading

import huggingface_hub
import huggingface_hub.constants
import pytest
from typer.testing import CliRunner

from marsbench.catalog import get_card
from marsbench.cli.main import app
from marsbench.sources import download as dl
from marsbench.sources import hf, open_dataset
from marsbench.sources.cache import find_copies
from marsbench.sources.errors import DataError
from marsbench.sources.open import resolve

NAME = "mb-boulder_det"
CARD = get_card(NAME)
runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_probe(monkeypatch):
    """Each test starts with no probe answer kept and no offline switch set."""
    for var in ("HF_HUB_OFFLINE", "MARSBENCH_OFFLINE", "HF_ENDPOINT", "MARSBENCH_DATA",
                "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hf.reset_hub_probe()
    yield
    hf.reset_hub_probe()


def _forbid_hub_clients(monkeypatch) -> list[str]:
    """Every huggingface_hub entry point marsbench uses raises if called (they retry)."""
    called: list[str] = []

    def refuse(what):
        def fn(*args, **kwargs):
            called.append(what)
            raise AssertionError(f"{what} called although the Hub is known to be unreachable")
        return fn

    for name in ("list_repo_files", "hf_hub_download", "snapshot_download"):
        monkeypatch.setattr(huggingface_hub, name, refuse(name))
    monkeypatch.setattr(huggingface_hub.HfApi, "__init__", refuse("HfApi()"))
    return called


def _record_network(monkeypatch) -> list[str]:
    """Any attempt at the network (name lookup, connect, the probe) is recorded and refused."""
    attempts: list[str] = []

    def refuse(what):
        def fn(*args, **kwargs):
            attempts.append(what)
            raise OSError(f"{what}: no network in this test")
        return fn

    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(hf, "probe_hub", refuse("probe_hub"))
    return attempts


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


# ---- one probe, no retrying client --------------------------------------------------------------


def test_unreachable_hub_is_probed_once_and_no_hub_client_is_called(tmp_path, monkeypatch):
    probes: list[tuple[str, float]] = []

    def probe(endpoint, timeout):
        probes.append((endpoint, timeout))
        return "connection refused"

    monkeypatch.setattr(hf, "probe_hub", probe)
    called = _forbid_hub_clients(monkeypatch)

    with pytest.raises(DataError) as err:
        open_dataset(CARD.hf_repo)
    message = str(err.value)
    assert "\n" not in message
    assert CARD.hf_repo in message and "connection refused" in message
    assert f"marsbench datasets download {NAME} --source hf" in message
    with pytest.raises(DataError):  # source hf, no local copy: the hub repo, same answer
        open_dataset(NAME, "val", root=tmp_path, source="hf")
    with pytest.raises(dl.DatasetUnavailableError) as err:
        dl.download(NAME, "hf", tmp_path, progress=False)
    assert f"marsbench datasets download {NAME} --source hf" in str(err.value)
    result = runner.invoke(app, ["datasets", "check", NAME, "--source", "hf",
                                 "--root", str(tmp_path)])
    assert result.exit_code == 2
    line = _error_line(result)
    assert line.startswith("error: ") and f"marsbench datasets download {NAME}" in line

    assert probes == [("https://huggingface.co", hf.HUB_PROBE_TIMEOUT_S)]  # once per process
    assert called == []
    assert not (tmp_path / "hf" / NAME).exists()


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "MARSBENCH_OFFLINE"])
def test_offline_switch_makes_no_network_attempt(tmp_path, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    attempts = _record_network(monkeypatch)
    called = _forbid_hub_clients(monkeypatch)

    assert hf.hub_unreachable() == f"{variable}=1 is set"
    with pytest.raises(DataError) as err:
        open_dataset(CARD.hf_repo)
    assert f"{variable}=1" in str(err.value)
    assert f"marsbench datasets download {NAME} --source hf" in str(err.value)
    with pytest.raises(dl.DatasetUnavailableError) as err:
        dl.download(NAME, "hf", tmp_path, progress=False)
    assert str(tmp_path / "hf" / NAME) in str(err.value)
    result = runner.invoke(app, ["datasets", "check", NAME, "--source", "hf",
                                 "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{variable}=1" in _error_line(result)

    assert attempts == [] and called == []


def test_hub_offline_value_read_by_the_library_counts(monkeypatch):
    """huggingface_hub reads HF_HUB_OFFLINE at import; its value is honoured as well."""
    attempts = _record_network(monkeypatch)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert hf.hub_unreachable() == "HF_HUB_OFFLINE=1 is set"
    assert attempts == []


# ---- the probe itself -------------------------------------------------------------------------


def test_probe_against_a_closed_port_says_refused_and_is_kept(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    real, calls = hf.probe_hub, []
    monkeypatch.setattr(hf, "probe_hub", lambda *a: calls.append(a) or real(*a))
    why = hf.hub_unreachable()
    assert why == f"{url} cannot be reached (connection refused)"
    assert hf.hub_unreachable() == why
    with pytest.raises(DataError, match="connection refused"):
        hf.require_hub(CARD.hf_repo)
    assert len(calls) == 1


def test_probe_of_a_host_that_never_answers_gives_up(monkeypatch):
    """A connection that is accepted but never answered: the probe returns (bounded by its
    timeout, here 0.2 s through MARSBENCH_HUB_TIMEOUT) and says so."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepted by the kernel, never read nor answered
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv(hf.HUB_PROBE_TIMEOUT_ENV, "0.2")
        why = hf.hub_unreachable()
        assert why is not None and "no answer within 0.2 s" in why
    finally:
        server.close()


def test_probe_of_an_answering_host_lets_the_hub_be_used(monkeypatch):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)  # any HTTP answer: the Hub is reachable
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert hf.hub_unreachable() is None
        hf.require_hub(CARD.hf_repo)  # no error
    finally:
        server.shutdown()
        server.server_close()


# ---- an HF-layout copy at <root>/<name> -------------------------------------------------------


@pytest.fixture
def hf_copy_at_root(tmp_path):
    """A synthetic HF-layout copy (data/<split>-*.parquet) moved to <root>/<name>."""
    from marsbench.sources.synth import generate

    written = generate(NAME, tmp_path / "generated", "hf")
    assert sorted(p.name for p in (written / "data").glob("train-*.parquet"))
    root = tmp_path / "root"
    root.mkdir()
    shutil.move(str(written), str(root / NAME))
    return root


def test_hf_layout_copy_at_root_name_opens_with_source_auto(hf_copy_at_root, monkeypatch):
    root = hf_copy_at_root
    attempts = _record_network(monkeypatch)  # a local copy needs no network at all
    _forbid_hub_clients(monkeypatch)
    assert find_copies(NAME, root) == {"hf": root / NAME}
    card, source, location = resolve(NAME, root=root)
    assert (card.name, source, location) == (NAME, "hf", str(root / NAME))
    sizes = {}
    for split in ("train", "val", "test"):
        ds = open_dataset(NAME, split, root=root)
        assert ds.source == "hf" and ds.card.synthetic
        sizes[split] = len(ds)
        ds[0]
    assert all(sizes.values())
    assert len(open_dataset(NAME, "train", root=root, source="hf")) == sizes["train"]
    result = runner.invoke(app, ["datasets", "check", NAME, "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert f"{NAME} (hf, {root / NAME})" in result.output  # the path whole, on one line
    assert attempts == []


def test_hf_layout_copy_at_root_name_is_not_read_as_a_folder(hf_copy_at_root):
    with pytest.raises(DataError) as err:
        open_dataset(NAME, root=hf_copy_at_root, source="folder")
    assert "no local copy in the folder layout" in str(err.value)
    assert str(hf_copy_at_root / NAME) in str(err.value)  # names the copy there is


def test_both_places_hold_hf_copies_the_download_location_wins(hf_copy_at_root):
    root = hf_copy_at_root
    shutil.copytree(root / NAME, root / "hf" / NAME)
    assert find_copies(NAME, root) == {"hf": root / "hf" / NAME}
    assert resolve(NAME, root=root)[2] == str(root / "hf" / NAME)


def test_a_folder_layout_copy_still_comes_first(tmp_path, hf_copy_at_root):
    from marsbench.sources.synth import generate

    root = hf_copy_at_root
    shutil.move(str(root / NAME), str(root / "hf" / NAME))
    generate(NAME, root, "folder")
    assert find_copies(NAME, root) == {"folder": root / NAME, "hf": root / "hf" / NAME}
    assert resolve(NAME, root=root)[1] == "folder"
    assert resolve(NAME, root=root, source="hf")[2] == str(root / "hf" / NAME)


def test_nothing_local_names_both_places(tmp_path):
    with pytest.raises(DataError) as err:
        open_dataset(NAME, root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / NAME) in message and str(tmp_path / "hf" / NAME) in message
    assert f"marsbench datasets download {NAME}" in message


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "soon", "99999"])
def test_a_bad_hub_probe_timeout_is_refused_naming_the_variable(monkeypatch, text):
    """It was silently replaced by the default: a setting is used or refused, never ignored."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv(hf.HUB_PROBE_TIMEOUT_ENV, text)
    hf.reset_hub_probe()
    with pytest.raises(ValueError, match=rf"^{hf.HUB_PROBE_TIMEOUT_ENV} must be a number of "
                                         rf"seconds above 0 and at most 3600 \(environment\)"):
        hf.hub_unreachable()
    hf.reset_hub_probe()
