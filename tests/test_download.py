"""Dataset download: cache paths, Zenodo (resume, integrity, safe extraction), HF, offline errors.

Every test talks only to an HTTP server it starts on 127.0.0.1 (``FakeHost``), which emulates
the few Zenodo and Hugging Face Hub endpoints the download code calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import warnings
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from marsbench.catalog import get_card
from marsbench.sources.cache import data_root, find_local, local_path

# The module itself (a package __init__ re-exporting the function would shadow the name).
dl = importlib.import_module("marsbench.sources.download")

pytestmark = pytest.mark.timeout(120)

NAME = "mb-boulder_seg"  # 39 / 6 / 4 images: small enough to build for real
CARD = get_card(NAME)
RECORD_ID = "4242"


# ---- a local HTTP host ------------------------------------------------------------------------


class FakeHost:
    """A threaded HTTP server on 127.0.0.1 serving files (with Range) and JSON routes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.headers: dict[str, dict[str, str]] = {}  # extra response headers per file path
        self.json: dict[str, object] = {}  # path -> JSON value, or callable(query) -> value
        self.drop_first: dict[str, int] = {}  # path -> bytes sent before the next GET is cut
        self.ignore_range = False
        self.log: list[dict] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10  # idle keep-alive connections cannot hold a thread forever

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                host._serve(self, head=False)

            def do_HEAD(self) -> None:
                host._serve(self, head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def requests_to(self, path: str, method: str = "GET") -> list[dict]:
        return [r for r in self.log if r["path"] == path and r["method"] == method]

    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        parts = urlsplit(h.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        self.log.append({"method": h.command, "path": path, "query": query,
                         "headers": dict(h.headers)})
        if path in self.json:
            value = self.json[path]
            body = json.dumps(value(query) if callable(value) else value).encode()
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if not head:
                h.wfile.write(body)
            return
        if path not in self.files:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data, start, status = self.files[path], 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", ""))
        if match and not self.ignore_range:
            start, status = int(match.group(1)), 206
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        body = data[start:]
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for key, value in self.headers.get(path, {}).items():
            h.send_header(key, value)
        h.end_headers()
        if head:
            return
        cut = self.drop_first.pop(path, None) if h.command == "GET" else None
        if cut is not None:  # send part of the body, then drop the connection
            h.wfile.write(body[:cut])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(body)


@pytest.fixture(autouse=True)
def _local_only(monkeypatch):
    """No proxy may intercept 127.0.0.1, and retries do not wait."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("MARSBENCH_DATA", raising=False)
    monkeypatch.setattr(dl, "RETRY_WAIT_S", 0.0)


@pytest.fixture
def host():
    fake = FakeHost()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(timeout=5)


def _png(rng: np.random.Generator, values: int = 256) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, values, (16, 16), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def seg_zip(split_sizes: dict[str, int] | None = None, seed: int = 0) -> bytes:
    """A tiny mb-boulder_seg zip in the Zenodo folder layout (folder ``mb-boulder_seg/``)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for split, n in (split_sizes or CARD.split_sizes).items():
            for i in range(n):
                zf.writestr(f"{NAME}/data/{split}/images/boulder_{i:03d}.png", _png(rng))
                zf.writestr(f"{NAME}/data/{split}/masks/boulder_{i:03d}.png", _png(rng, 2))
    return buf.getvalue()


def publish_on_zenodo(host: FakeHost, archive: bytes, *, md5: str | None = None,
                      size: int | None = None) -> str:
    """Serve ``archive`` as record 4242 of community mars-bench, beside two other records."""
    content = f"/api/records/{RECORD_ID}/files/{NAME}.zip/content"
    host.files[content] = archive
    records = [
        {"id": 1001, "metadata": {"title": "Mars-Bench: boulder detection"},
         "files": [{"key": "mb-boulder_det.zip", "size": 10, "checksum": "md5:00",
                    "links": {"self": f"{host.url}/api/records/1001/files/x/content"}}]},
        {"id": 1002, "metadata": {"title": "Mars-Bench: cone segmentation"},
         "files": [{"key": "mb-conequest_seg.zip", "size": 10, "checksum": "md5:00",
                    "links": {"self": f"{host.url}/api/records/1002/files/y/content"}}]},
        # Titles do not contain the dataset name, so the name search misses and the code must
        # page through the whole community.
        {"id": int(RECORD_ID), "metadata": {"title": "Mars-Bench: boulder segmentation"},
         "files": [{"id": "f1", "key": f"{NAME}.zip", "size": len(archive) if size is None
                    else size,
                    "checksum": f"md5:{md5 or hashlib.md5(archive).hexdigest()}",
                    "links": {"self": f"{host.url}{content}"}}]},
    ]

    def search(query: dict) -> dict:
        if query.get("communities") != ["mars-bench"]:
            return {"hits": {"hits": [], "total": 0}}
        hits = records
        if "q" in query:
            text = query["q"][0].strip('"')
            hits = [r for r in records if text in r["metadata"]["title"]]
        size = min(int(query.get("size", ["10"])[0]), 2)  # small pages: pagination is exercised
        page = int(query.get("page", ["1"])[0])
        return {"hits": {"hits": hits[(page - 1) * size: page * size], "total": len(hits)}}

    host.json["/api/records"] = search
    return f"{host.url}{content}"


@contextlib.contextmanager
def _no_split_warnings():
    """A SplitCountWarning inside the block fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", dl.SplitCountWarning)
        yield


# ---- cache paths ------------------------------------------------------------------------------


def test_data_root_precedence_and_layout(tmp_path, monkeypatch):
    import platformdirs

    default = Path(platformdirs.user_cache_dir("marsbench")) / "datasets"
    assert data_root() == default
    monkeypatch.setenv("MARSBENCH_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"  # explicit root wins
    assert local_path(NAME, "zenodo") == tmp_path / "env" / NAME
    assert local_path(NAME, "folder", tmp_path) == tmp_path / NAME
    assert local_path(NAME, "hf", tmp_path) == tmp_path / "hf" / NAME
    with pytest.raises(ValueError, match="unknown source 'ftp'"):
        local_path(NAME, "ftp", tmp_path)

    assert find_local(NAME, tmp_path) == {}
    (tmp_path / NAME / "data" / "train").mkdir(parents=True)
    (tmp_path / "hf" / NAME / "data").mkdir(parents=True)
    assert find_local(NAME, tmp_path) == {"zenodo": tmp_path / NAME}  # no parquet yet
    (tmp_path / "hf" / NAME / "data" / "train-00000-of-00001.parquet").write_bytes(b"x")
    assert find_local(NAME, tmp_path) == {"zenodo": tmp_path / NAME, "hf": tmp_path / "hf" / NAME}


# ---- Zenodo -------------------------------------------------------------------------------------


def test_zenodo_download_resolves_record_checks_and_extracts(host, tmp_path, monkeypatch):
    archive = seg_zip()
    publish_on_zenodo(host, archive)
    monkeypatch.setenv("MARSBENCH_ZENODO_URL", host.url)

    with _no_split_warnings():
        path = dl.download(NAME, "zenodo", tmp_path, progress=False)

    assert path == tmp_path / NAME
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:  # every member landed, byte for byte
        names = [n for n in zf.namelist() if not n.endswith("/")]
        for member in names:
            assert (tmp_path / member).read_bytes() == zf.read(member)
    report = dl.verify(NAME, path)
    assert report.ok and report.counts == CARD.split_sizes == {"train": 39, "val": 6, "test": 4}
    # Nothing else is left in the root: no temp folder, no archive, no .part.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".downloads", NAME]
    assert _staged(tmp_path) == []
    assert find_local(NAME, tmp_path) == {"zenodo": path}
    # The record was found through the community search, paging past the first page.
    searches = host.requests_to("/api/records")
    assert all(r["query"]["communities"] == ["mars-bench"] for r in searches)
    assert any("q" not in r["query"] and r["query"]["page"] == ["2"] for r in searches)
    # A second call finds the copy and downloads nothing.
    gets = len(host.log)
    assert dl.download(NAME, "zenodo", tmp_path, progress=False) == path
    assert len(host.log) == gets


def test_zenodo_record_given_explicitly_invenio_rdm_shape(host, tmp_path, monkeypatch):
    """--zenodo-record skips the search; the InvenioRDM JSON shape (files.entries) is read."""
    archive = seg_zip()
    content = f"/api/records/777/files/{NAME}.zip/content"
    host.files[content] = archive
    host.json["/api/records/777"] = {"id": "777", "files": {"enabled": True, "entries": {
        f"{NAME}.zip": {"key": f"{NAME}.zip", "size": len(archive),
                        "checksum": f"md5:{hashlib.md5(archive).hexdigest()}",
                        "links": {"self": f"{host.url}/api/records/777/files/{NAME}.zip",
                                  "content": f"{host.url}{content}"}}}}}
    monkeypatch.setenv("MARSBENCH_ZENODO_URL", host.url)
    path = dl.download(NAME, "zenodo", tmp_path, progress=False, zenodo_record="777")
    assert dl.verify(NAME, path).ok
    assert host.requests_to("/api/records") == []  # no search
    assert len(host.requests_to(content)) == 1


def test_interrupted_download_resumes_with_range(host, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "STREAM_CHUNK_BYTES", 1024)  # a drop loses at most one chunk
    archive = seg_zip()
    url = publish_on_zenodo(host, archive)
    path = urlsplit(url).path
    cut = len(archive) // 2
    host.drop_first[path] = cut  # the first GET is cut after half the bytes

    dest = tmp_path / f"{NAME}.zip"
    md5 = f"md5:{hashlib.md5(archive).hexdigest()}"
    out = dl.fetch(url, dest, size=len(archive), checksum=md5, progress=False)

    assert out == dest and dest.read_bytes() == archive
    assert not dest.with_name(dest.name + ".part").exists()
    gets = host.requests_to(path)
    assert len(gets) == 2
    assert "Range" not in gets[0]["headers"]
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", gets[1]["headers"]["Range"]).group(1))
    assert cut - 1024 < resumed_at <= cut  # resumed where the drop happened, not from zero


def test_partial_file_from_an_earlier_run_is_resumed(host, tmp_path, monkeypatch):
    archive = seg_zip()
    publish_on_zenodo(host, archive)
    monkeypatch.setenv("MARSBENCH_ZENODO_URL", host.url)
    part = tmp_path / ".downloads" / f"{NAME}.zip.part"  # as a killed process leaves it
    part.parent.mkdir(parents=True)
    part.write_bytes(archive[:1000])

    path = dl.download(NAME, "zenodo", tmp_path, progress=False)

    gets = host.requests_to(f"/api/records/{RECORD_ID}/files/{NAME}.zip/content")
    assert [g["headers"].get("Range") for g in gets] == ["bytes=1000-"]
    assert dl.verify(NAME, path).ok and not part.exists()


def test_server_ignoring_range_restarts_from_zero(host, tmp_path):
    archive = seg_zip()
    url = publish_on_zenodo(host, archive)
    host.ignore_range = True
    dest = tmp_path / "a.zip"
    dest.with_name("a.zip.part").write_bytes(b"\0" * 500)  # wrong bytes: must not be kept
    dl.fetch(url, dest, size=len(archive), checksum=f"md5:{hashlib.md5(archive).hexdigest()}",
             progress=False)
    assert dest.read_bytes() == archive
    gets = host.requests_to(urlsplit(url).path)
    assert [g["headers"].get("Range") for g in gets] == ["bytes=500-"]  # one pass, no append


def test_checksum_mismatch_deletes_file_and_extracts_nothing(host, tmp_path, monkeypatch):
    archive = seg_zip()
    publish_on_zenodo(host, archive, md5="0" * 32)
    monkeypatch.setenv("MARSBENCH_ZENODO_URL", host.url)
    with pytest.raises(dl.CorruptArchiveError) as err:
        dl.download(NAME, "zenodo", tmp_path, progress=False)
    message = str(err.value)
    assert f"{NAME}.zip" in message and "md5 is" in message and "0" * 32 in message
    assert "deleted" in message and f"marsbench datasets download {NAME} --source zenodo" in message
    assert not (tmp_path / NAME).exists()
    assert _staged(tmp_path) == []


def test_truncated_archive_with_wrong_size_is_rejected(host, tmp_path):
    archive = seg_zip()
    url = publish_on_zenodo(host, archive, size=len(archive) + 10)  # the host promises more
    dest = tmp_path / "a.zip"
    with pytest.raises(dl.DownloadError, match="got .* of .* bytes"):
        dl.fetch(url, dest, size=len(archive) + 10, progress=False)
    assert not dest.exists()


def test_bad_zip_is_a_clear_error_and_deleted(host, tmp_path, monkeypatch):
    not_a_zip = b"this is an HTML error page, not a zip" * 20
    publish_on_zenodo(host, not_a_zip)  # checksum matches what was served
    monkeypatch.setenv("MARSBENCH_ZENODO_URL", host.url)
    with pytest.raises(dl.CorruptArchiveError, match="not a valid zip") as err:
        dl.download(NAME, "zenodo", tmp_path, progress=False)
    assert "rerun" in str(err.value)
    assert not (tmp_path / NAME).exists()
    assert _staged(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".downloads"]  # no temp folder


def _staged(root: Path) -> list[str]:
    """Files left in the download staging folder, lock files aside."""
    return [p.name for p in (root / ".downloads").iterdir() if p.suffix != ".lock"]


def _zip_with(member: zipfile.ZipInfo | str, payload: bytes = b"evil") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{NAME}/data/train/images/ok.png", b"fine")
        zf.writestr(member, payload)
    return buf.getvalue()


def _symlink_member() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(f"{NAME}/data/train/images/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("kind", ["dotdot", "nested_dotdot", "absolute", "symlink", "backslash"])
def test_unsafe_members_are_refused(tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    member = {
        "dotdot": "../evil.txt",
        "nested_dotdot": f"{NAME}/../../outside/evil.txt",
        "absolute": str(outside / "evil.txt"),
        "symlink": _symlink_member(),
        "backslash": "..\\..\\outside\\evil.txt",
    }[kind]
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip_with(member, b"/etc/passwd" if kind == "symlink" else b"evil"))
    name = member.filename if isinstance(member, zipfile.ZipInfo) else member
    with zipfile.ZipFile(archive) as zf:  # the archive really holds the hostile name
        assert name in zf.namelist()

    with pytest.raises(dl.UnsafeArchiveError) as err:
        dl.safe_extract(archive, root, NAME)

    assert repr(name) in str(err.value)
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()
    assert not root.exists() or list(root.iterdir()) == []  # nothing extracted at all


def test_unsafe_archive_through_download_writes_nothing(host, tmp_path, monkeypatch):
    publish_on_zenodo(host, _zip_with("../evil.txt"))
    monkeypatch.setenv("MARSBENCH_ZENODO_URL", host.url)
    root = tmp_path / "root"
    with pytest.raises(dl.UnsafeArchiveError, match=r"'\.\./evil\.txt'"):
        dl.download(NAME, "zenodo", root, progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (root / NAME).exists()
    assert [p.suffix for p in (root / ".downloads").iterdir()] == [".lock"]  # archive deleted


# ---- zip bombs: limits on members, total size and compression ratio ----------------------------


def _zip_members(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buf.getvalue()


def _nothing_extracted(root: Path) -> bool:
    return not root.exists() or not any(p for p in root.rglob("*") if p.is_file())


def test_zip_bomb_member_is_refused_before_writing(tmp_path):
    # ~80 KB on disk, 80 MB once extracted: the ratio (about 1000) gives it away
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(_zip_members({f"{NAME}/data/train/images/a.png": b"\0" * (80 << 20)}))
    assert archive.stat().st_size < 1 << 20
    root = tmp_path / "root"
    with pytest.raises(dl.UnsafeArchiveError,
                       match=r"refusing to extract: member '.*a\.png' expands \d+ -> 83886080 "
                             r"bytes, a ratio over 100 .*MARSBENCH_MAX_COMPRESSION_RATIO") as err:
        dl.safe_extract(archive, root, NAME)
    assert _nothing_extracted(root)
    assert "\n" not in str(err.value)  # one line, as the CLI prints it


def test_many_small_compressible_members_are_refused_as_a_whole(tmp_path, monkeypatch):
    # each member stays under the per-member floor; the archive as a whole is a bomb
    monkeypatch.setattr(dl, "RATIO_FLOOR_BYTES", 1 << 20)
    members = {f"{NAME}/data/train/images/{i}.png": b"\0" * (900 << 10) for i in range(6)}
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(_zip_members(members))
    root = tmp_path / "root"
    with pytest.raises(dl.UnsafeArchiveError, match=r"it expands \d+ -> 5529600 bytes, a ratio"):
        dl.safe_extract(archive, root, NAME)
    assert _nothing_extracted(root)


@pytest.mark.parametrize("env, value, message", [
    ("MARSBENCH_MAX_ARCHIVE_MEMBERS", "3", r"holds 5 members, over the limit of 3"),
    ("MARSBENCH_MAX_EXTRACTED_BYTES", "100", r"would extract 500 bytes, over the limit of 100"),
])
def test_member_count_and_total_size_limits(tmp_path, monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip_members({f"{NAME}/f{i}.txt": bytes(range(100)) for i in range(5)}))
    root = tmp_path / "root"
    with pytest.raises(dl.UnsafeArchiveError, match=message + rf".*{env}"):
        dl.safe_extract(archive, root, NAME)
    assert _nothing_extracted(root)
    monkeypatch.delenv(env)
    assert (dl.safe_extract(archive, root, NAME) / "f4.txt").read_bytes() == bytes(range(100))


def test_member_larger_than_its_declared_size_is_not_written_past_it(tmp_path):
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = bytearray(_zip_members({f"{NAME}/big.bin": payload}))
    # the central directory and the local header both claim 10 bytes
    for sig, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        at = data.index(sig)
        data[at + offset:at + offset + 4] = (10).to_bytes(4, "little")
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(data))
    root = tmp_path / "root"
    with pytest.raises(dl.DownloadError, match=r"liar\.zip"):
        dl.safe_extract(archive, root, NAME)
    assert _nothing_extracted(root)


def test_zip_bomb_through_download_deletes_the_archive(host, tmp_path, monkeypatch):
    publish_on_zenodo(host, _zip_members({f"{NAME}/data/a.png": b"\0" * (40 << 20)}))
    monkeypatch.setenv("MARSBENCH_ZENODO_URL", host.url)
    root = tmp_path / "root"
    with pytest.raises(dl.UnsafeArchiveError, match="ratio over 100"):
        dl.download(NAME, "zenodo", root, progress=False)
    assert not (root / NAME).exists()
    assert [p.suffix for p in (root / ".downloads").iterdir()] == [".lock"]  # archive deleted


def test_connection_refused_is_an_offline_error_naming_url_and_target(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MARSBENCH_ZENODO_URL", url)
    with pytest.raises(dl.DatasetUnavailableError) as err:
        dl.download(NAME, "zenodo", tmp_path, progress=False)
    message = str(err.value)
    assert url in message and f"{NAME}.zip" in message
    assert str(tmp_path / NAME) in message  # where to put it
    assert f"marsbench datasets download {NAME} --source zenodo" in message
    assert not (tmp_path / NAME).exists()


def test_connection_refused_during_fetch_names_the_file_url(host, tmp_path, monkeypatch):
    """The API answers but the file host is down: the message names the file's URL."""
    archive = seg_zip()
    publish_on_zenodo(host, archive)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/files/{NAME}.zip"
    host.json["/api/records/9"] = {"id": 9, "files": [
        {"key": f"{NAME}.zip", "size": len(archive), "links": {"self": dead}}]}
    monkeypatch.setenv("MARSBENCH_ZENODO_URL", host.url)
    with pytest.raises(dl.DatasetUnavailableError) as err:
        dl.download(NAME, "zenodo", tmp_path, progress=False, zenodo_record="9")
    assert dead in str(err.value) and str(tmp_path / NAME) in str(err.value)


def test_split_count_mismatch_is_reported_and_data_kept(host, tmp_path, monkeypatch):
    publish_on_zenodo(host, seg_zip({"train": 39, "val": 4, "test": 4}))
    monkeypatch.setenv("MARSBENCH_ZENODO_URL", host.url)
    with pytest.warns(dl.SplitCountWarning) as record:
        path = dl.download(NAME, "zenodo", tmp_path, progress=False)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1
    assert "'val'" in messages[0] and "4 items" in messages[0] and "expects 6" in messages[0]
    assert str(path) in messages[0]
    assert len(list((path / "data" / "val" / "images").iterdir())) == 4  # data kept


def test_missing_dataset_file_in_community(host, tmp_path, monkeypatch):
    host.json["/api/records"] = {"hits": {"hits": [], "total": 0}}
    monkeypatch.setenv("MARSBENCH_ZENODO_URL", host.url)
    with pytest.raises(dl.DownloadError, match=r"no file named mb-boulder_seg\.zip.*--zenodo-record"):
        dl.download(NAME, "zenodo", tmp_path, progress=False)


# ---- per-split counts (independent of the readers) --------------------------------------------


def test_verify_counts_change_pairs_once(tmp_path):
    card = get_card("mb-change_cls_ctx")  # 36 / 10 / 10 before/after pairs
    rows = ["file_id,feature_name,label,split"]
    for split, n in card.split_sizes.items():
        for i in range(n):
            for when in ("before", "after"):
                rows.append(f"{split}/change/{when}/p{i}.png,change,1,{split}")
    folder = tmp_path / card.name
    folder.mkdir()
    (folder / "annotation.csv").write_text("\n".join(rows) + "\n")
    report = dl.verify(card.name, folder)
    assert report.ok, report.problems
    assert report.counts == {"train": 36, "val": 10, "test": 10}

    (folder / "annotation.csv").write_text("\n".join(rows[:-2]) + "\n")  # one test pair less
    problems = dl.verify(card.name, folder).problems
    assert problems == [f"{card.name}: split 'test' in {folder} has 9 items, the card expects 10"]


def test_verify_reports_missing_folder(tmp_path):
    report = dl.verify(NAME, tmp_path / "nowhere")
    assert not report.ok and any("does not exist" in p for p in report.problems)


# ---- Hugging Face -------------------------------------------------------------------------------


def _parquet_shard(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    table = pa.table({
        "image": [{"bytes": _png(rng), "path": f"{i}.png"} for i in range(n)],
        "mask": [{"bytes": _png(rng, 2), "path": None} for _ in range(n)],
    })
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def publish_on_hub(host: FakeHost) -> dict[str, bytes]:
    """Emulate the Hub endpoints snapshot_download calls for dataset Mirali33/mb-boulder_seg."""
    sha = "a" * 40
    repo = CARD.hf_repo
    files = {f"data/{split}-00000-of-00001.parquet": _parquet_shard(n, i)
             for i, (split, n) in enumerate(CARD.split_sizes.items())}
    files["mapping.json"] = json.dumps({"0": "background", "1": "boulder"}).encode()
    host.json[f"/api/datasets/{repo}/revision/main"] = {
        "id": repo, "sha": sha, "private": False,
        "siblings": [{"rfilename": f} for f in files]}
    host.json[f"/api/datasets/{repo}/tree/{sha}"] = [
        {"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
        for f, b in files.items()]
    for f, b in files.items():
        path = f"/datasets/{repo}/resolve/{sha}/{f}"
        host.files[path] = b
        host.headers[path] = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha1(b).hexdigest()}"'}
    return files


def test_hf_download_through_huggingface_hub(host, tmp_path, monkeypatch):
    files = publish_on_hub(host)
    monkeypatch.setenv("HF_ENDPOINT", host.url)
    with _no_split_warnings():
        path = dl.download(NAME, "hf", tmp_path, progress=False)
    assert path == tmp_path / "hf" / NAME
    for name, data in files.items():
        assert (path / name).read_bytes() == data
    assert dl.verify(NAME, path).counts == CARD.split_sizes
    assert find_local(NAME, tmp_path) == {"hf": path}
    assert host.requests_to(f"/api/datasets/{CARD.hf_repo}/revision/main")
    # the real `datasets` library reads the copy back with the same rows
    import datasets

    ds = datasets.load_dataset("parquet", data_files={
        "val": str(path / "data" / "val-00000-of-00001.parquet")},
        cache_dir=str(tmp_path / "ds-cache"))
    assert ds["val"].num_rows == 6


def test_hf_unreachable_endpoint_is_an_offline_error(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    with pytest.raises(dl.DatasetUnavailableError) as err:
        dl.download(NAME, "hf", tmp_path, progress=False)
    message = str(err.value)
    assert f"{url}/datasets/{CARD.hf_repo}" in message
    assert str(tmp_path / "hf" / NAME) in message
    assert f"marsbench datasets download {NAME} --source hf" in message


def test_hf_offline_mode_error_message(tmp_path):
    """HF_HUB_OFFLINE=1 is read by huggingface_hub at import: run a fresh interpreter."""
    code = (
        "import sys\n"
        "from marsbench.sources.download import download, DatasetUnavailableError\n"
        "try:\n"
        f"    download({NAME!r}, 'hf', progress=False)\n"
        "except DatasetUnavailableError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MARSBENCH_DATA": str(tmp_path),
           "HF_HOME": str(tmp_path / "hf-home")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=90)
    assert proc.returncode == 3, proc.stderr
    message = proc.stdout
    assert CARD.hf_repo in message and "HF_HUB_OFFLINE" in message
    assert str(tmp_path / "hf" / NAME) in message
    assert f"marsbench datasets download {NAME} --source hf" in message
    assert not (tmp_path / "hf" / NAME / "data").exists()
