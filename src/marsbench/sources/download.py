"""Download Mars-Bench datasets from the Hugging Face Hub or Zenodo into the local cache.

``download(name, source)`` is the entry point; ``verify(name, path)`` counts items per split.

Hugging Face goes through ``huggingface_hub.snapshot_download`` (resume, locking and offline
mode are the library's), after one cheap probe of the Hub (`marsbench.sources.hf.hub_unreachable`:
none with ``HF_HUB_OFFLINE=1`` / ``MARSBENCH_OFFLINE=1``), so an offline machine fails in
about a second instead of after the library's retries. Zenodo has no such client library, so this module does the few steps
itself: find ``<name>.zip`` in the "mars-bench" community through the REST API, stream it with
HTTP Range resume, check size and checksum, and extract it safely (a temp folder, then one
rename). Every failure names the dataset, the URL or file, and what to do next.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shutil
import stat
import tempfile
import time
import warnings
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import requests
from rich.progress import Progress

from ..catalog import DatasetCard, Task, get_card
from ..catalog.card import ZENODO_COMMUNITY
from ..errors import MarsbenchError
from ..runs.fingerprint import exact_int
from .cache import data_root, downloads_dir, is_present, local_path, normalize_source

ZENODO_URL_ENV = "MARSBENCH_ZENODO_URL"
ZENODO_DEFAULT_URL = "https://zenodo.org"
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0
MAX_ATTEMPTS = 5  # connection drops tolerated per file before giving up (progress is kept)
RETRY_WAIT_S = 1.0  # base of the linear back-off between attempts
SEARCH_PAGE_SIZE = 25  # Zenodo caps anonymous search pages at 25 records
MAX_SEARCH_PAGES = 40
CHUNK_BYTES = 1 << 20  # read size when hashing
STREAM_CHUNK_BYTES = 1 << 16  # bytes lost at most when a connection drops mid-chunk
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
# Archive limits (zip bombs): each can be raised through its environment variable.
MAX_ARCHIVE_MEMBERS = 500_000  # the largest Mars-Bench archive holds some tens of thousands
MAX_EXTRACTED_BYTES = 500 * 2**30  # 500 GiB
MAX_COMPRESSION_RATIO = 100  # images barely compress; a 300 KB -> 300 MB zip is a bomb
RATIO_FLOOR_BYTES = 32 * 2**20  # the ratio is only held against members / archives above this
ARCHIVE_LIMIT_ENV = {"members": "MARSBENCH_MAX_ARCHIVE_MEMBERS",
                     "bytes": "MARSBENCH_MAX_EXTRACTED_BYTES",
                     "ratio": "MARSBENCH_MAX_COMPRESSION_RATIO"}


class DownloadError(MarsbenchError, RuntimeError):
    """A download could not complete; the message says why and what to do."""


class DatasetUnavailableError(DownloadError):
    """The host cannot be reached (offline, blocked, down): says what to fetch and where to put it."""


class CorruptArchiveError(DownloadError):
    """The downloaded file failed its size/checksum check or is not a readable zip (it was deleted)."""


class UnsafeArchiveError(DownloadError):
    """An archive member would land outside the target folder (absolute path, '..', symlink)."""


class SplitCountWarning(UserWarning):
    """A downloaded dataset's per-split counts differ from its card."""


# ---- public entry point --------------------------------------------------------------------


def download(
    name: str,
    source: str = "hf",
    root: str | Path | None = None,
    *,
    progress: bool = True,
    zenodo_record: str | None = None,
    force: bool = False,
) -> Path:
    """Download dataset ``name`` from ``source`` ("hf" or "zenodo") and return its local path.

    The data goes to ``local_path(name, source, root)``. An existing copy is kept unless
    ``force``. After the download, per-split counts are compared with the card and each
    mismatch is issued as a ``SplitCountWarning`` (the data is kept).
    """
    card = get_card(name)
    source = normalize_source(source)
    root_dir = data_root(root)
    if source == "hf":
        path = download_hf(card, root_dir, progress=progress, force=force)
    else:
        path = download_zenodo(card, root_dir, record=zenodo_record, progress=progress,
                               force=force)
    report = verify(card, path)
    for problem in report.problems:
        warnings.warn(problem, SplitCountWarning, stacklevel=2)
    return path


def _retry_command(name: str, source: str) -> str:
    return f"`marsbench datasets download {name} --source {source}`"


# ---- Hugging Face --------------------------------------------------------------------------


def download_hf(card: DatasetCard, root: Path, *, progress: bool = True,
                force: bool = False) -> Path:
    """Mirror the hub repo ``Mirali33/<name>`` into ``<root>/hf/<name>`` (no login needed)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    target = local_path(card.name, "hf", root)
    if is_present(card.name, "hf", root) and not force:
        return target
    # HF_ENDPOINT is read again here so a change after import is honoured as well.
    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    repo_url = f"{endpoint}/datasets/{card.hf_repo}"
    from .hf import hub_unreachable

    why = hub_unreachable()  # one probe per process (none at all with HF_HUB_OFFLINE=1):
    if why is not None:  # the library would retry for minutes before giving up
        raise DatasetUnavailableError(_hf_offline_message(card, repo_url, target, why))
    bars_were_disabled = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    try:
        # cache_dir only receives the library's small ref files; keeping it under our root
        # means everything marsbench downloads lives under the data root.
        snapshot_download(repo_id=card.hf_repo, repo_type="dataset", local_dir=target,
                          cache_dir=root / "hf" / ".hub-cache", endpoint=endpoint,
                          force_download=force)
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise DownloadError(
            f"{card.name}: the Hugging Face repo {card.hf_repo} was not found or is not public "
            f"at {repo_url} ({type(exc).__name__}). Check HF_ENDPOINT and the dataset name."
        ) from exc
    except _hf_network_errors() as exc:
        # Offline mode, DNS failure, refused connection or Hub down with nothing cached.
        raise DatasetUnavailableError(_hf_offline_message(card, repo_url, target, exc)) from exc
    except HfHubHTTPError as exc:
        raise DownloadError(
            f"{card.name}: downloading {repo_url} failed: {exc}. "
            f"Rerun {_retry_command(card.name, 'hf')} to retry (finished files are kept)."
        ) from exc
    finally:
        if not progress and not bars_were_disabled:
            enable_progress_bars()
    if not is_present(card.name, "hf", root):
        raise DownloadError(
            f"{card.name}: {repo_url} was downloaded to {target} but holds no data/*.parquet "
            "shards; this is not the Mars-Bench Hugging Face layout."
        )
    return target


def _hf_network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the Hub cannot be reached", whichever HTTP client the library uses."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    errors: list[type[BaseException]] = [LocalEntryNotFoundError, ConnectionError, TimeoutError,
                                         requests.ConnectionError, requests.Timeout]
    for module in ("httpx2", "httpx"):  # huggingface_hub >= 1.0 talks HTTP through httpx(2)
        try:
            errors.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _hf_offline_message(card: DatasetCard, repo_url: str, target: Path,
                        exc: BaseException | str) -> str:
    why = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return (
        f"{card.name}: cannot download from the Hugging Face Hub ({why}). "
        f"Either the machine is offline, HF_HUB_OFFLINE is set, or {repo_url} is unreachable. "
        f"To fix it: on a machine with network, download the dataset repo {card.hf_repo} "
        f"({repo_url}, e.g. `hf download {card.hf_repo} --repo-type dataset "
        f"--local-dir {target}`) and copy it so that {target}/data/<split>-*.parquet exist; or "
        f"unset HF_HUB_OFFLINE and rerun {_retry_command(card.name, 'hf')}, which retries and "
        "keeps files already downloaded."
    )


# ---- Zenodo: locating the file --------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file of a Zenodo record, as its API describes it."""

    url: str
    key: str
    size: int | None = None
    checksum: str | None = None  # "md5:<hex>" as Zenodo publishes it
    record_id: str | None = None


def zenodo_base_url() -> str:
    """The Zenodo host: ``$MARSBENCH_ZENODO_URL`` or https://zenodo.org."""
    return (os.environ.get(ZENODO_URL_ENV) or ZENODO_DEFAULT_URL).rstrip("/")


def _session() -> requests.Session:
    from .. import __version__ as version

    session = requests.Session()
    session.headers["User-Agent"] = f"marsbench/{version}"
    session.headers["Accept"] = "application/json"
    return session


def _get_json(session: requests.Session, url: str, params: dict | None = None) -> dict:
    resp = session.get(url, params=params, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    if resp.status_code >= 400:
        advice = {404: "not found", 429: "rate limit reached; wait a minute and rerun"}.get(
            resp.status_code, "the server refused the request; rerun later")
        raise DownloadError(f"{resp.url}: HTTP {resp.status_code} {resp.reason} ({advice})")
    try:
        return resp.json()
    except ValueError as exc:
        raise DownloadError(f"{resp.url}: the answer is not JSON; is {ZENODO_URL_ENV} pointing "
                            "at a Zenodo server?") from exc


def _record_files(record: dict, base_url: str) -> list[RemoteFile]:
    """The files of a record JSON, in either the legacy or the InvenioRDM serialization."""
    files = record.get("files") or []
    if isinstance(files, dict):  # InvenioRDM: {"enabled": ..., "entries": {key: {...}}}
        files = list((files.get("entries") or {}).values())
    record_id = str(record.get("id") or record.get("recid") or "") or None
    out = []
    for entry in files:
        key = entry.get("key") or entry.get("filename")
        if not key:
            continue
        links = entry.get("links") or {}
        url = links.get("content") or links.get("download") or links.get("self")
        if not url and record_id:
            url = f"{base_url}/api/records/{record_id}/files/{key}/content"
        checksum = entry.get("checksum")
        if checksum and ":" not in checksum:
            checksum = f"md5:{checksum}"
        size = entry.get("size", entry.get("filesize"))
        out.append(RemoteFile(url=url, key=key, size=int(size) if size is not None else None,
                              checksum=checksum, record_id=record_id))
    return out


def resolve_zenodo_file(name: str, record: str | None = None, *,
                        base_url: str | None = None,
                        session: requests.Session | None = None) -> RemoteFile:
    """Find ``<name>.zip``: in ``record`` if given, else among the "mars-bench" community records.

    Raises ``requests.ConnectionError``/``Timeout`` when the host is unreachable.
    """
    base = (base_url or zenodo_base_url()).rstrip("/")
    session = session or _session()
    key = f"{name}.zip"
    if record:
        data = _get_json(session, f"{base}/api/records/{record}")
        for remote in _record_files(data, base):
            if remote.key == key:
                return remote
        raise DownloadError(f"Zenodo record {record} ({base}/records/{record}) has no file "
                            f"named {key}; check the record id.")
    # A text search for the name first (one request), then every page of the community.
    for query in (f'"{name}"', None):
        page = 1
        seen = 0
        while page <= MAX_SEARCH_PAGES:
            params = {"communities": ZENODO_COMMUNITY, "size": SEARCH_PAGE_SIZE, "page": page}
            if query:
                params["q"] = query
            data = _get_json(session, f"{base}/api/records", params=params)
            hits = (data.get("hits") or {}).get("hits") or []
            for hit in hits:
                for remote in _record_files(hit, base):
                    if remote.key == key:
                        return remote
            seen += len(hits)
            total = (data.get("hits") or {}).get("total")
            if isinstance(total, dict):  # some servers report {"value": n}
                total = total.get("value")
            if not hits or (isinstance(total, int) and seen >= total):
                break
            page += 1
    raise DownloadError(
        f"no file named {key} in the Zenodo community {ZENODO_COMMUNITY!r} "
        f"({base}/communities/{ZENODO_COMMUNITY}); pass the record id with --zenodo-record ID."
    )


# ---- Zenodo: resumable, checked transfer -----------------------------------------------------


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def check_integrity(path: Path, size: int | None, checksum: str | None) -> str | None:
    """The problem with ``path`` against the published size and checksum, or None if it matches."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"size is {actual} bytes, the host publishes {size}"
    if checksum:
        algorithm, _, expected = checksum.partition(":")
        got = _file_digest(path, algorithm.lower())
        if got.lower() != expected.lower():
            return f"{algorithm} is {got}, the host publishes {expected}"
    return None


def _progress_bar(enabled: bool) -> Progress:
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled)


def _content_range_start(resp: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def fetch(url: str, dest: Path, *, size: int | None = None, checksum: str | None = None,
          progress: bool = True, session: requests.Session | None = None,
          rerun_hint: str = "rerun the command") -> Path:
    """Stream ``url`` to ``dest`` through ``dest.part``, resuming with HTTP Range.

    A ``.part`` left by an earlier run is resumed; a server that ignores Range restarts the
    file. Connection drops are retried up to ``MAX_ATTEMPTS`` times. The finished file is
    checked against ``size``/``checksum``; a mismatch deletes it and raises
    ``CorruptArchiveError``. A host that refuses the first connection raises
    ``requests.ConnectionError`` for the caller to explain.
    """
    session = session or _session()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (size or checksum) and check_integrity(dest, size, checksum) is None:
        return dest
    part = dest.with_name(dest.name + ".part")
    failures = 0
    with _progress_bar(progress) as bar:
        task = bar.add_task(dest.name, total=size)
        while True:
            offset = part.stat().st_size if part.exists() else 0
            if size is not None and offset > size:
                part.unlink()
                offset = 0
            if size is not None and offset == size:
                break
            headers = {"Range": f"bytes={offset}-", "Accept": "*/*"} if offset else {
                "Accept": "*/*"}
            try:
                resp = session.get(url, headers=headers, stream=True,
                                   timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
            except (requests.ConnectionError, requests.Timeout):
                failures += 1
                if (offset == 0 and failures == 1) or failures >= MAX_ATTEMPTS:
                    raise  # refused at once: the caller turns it into an offline error
                time.sleep(RETRY_WAIT_S * failures)
                continue
            with resp:
                if resp.status_code == 416:  # our .part is not a prefix the server accepts
                    part.unlink(missing_ok=True)
                    failures += 1
                    if failures >= MAX_ATTEMPTS:
                        raise DownloadError(f"{url}: the server rejects every byte range")
                    continue
                if resp.status_code >= 400:
                    raise DownloadError(f"{url}: HTTP {resp.status_code} {resp.reason}; "
                                        f"{rerun_hint} to retry")
                resumed = resp.status_code == 206
                if resumed and _content_range_start(resp) != offset:  # not the bytes we asked
                    part.unlink(missing_ok=True)
                    failures += 1
                    if failures >= MAX_ATTEMPTS:
                        raise DownloadError(f"{url}: the server answers with wrong byte ranges")
                    continue
                if not resumed:
                    offset = 0  # the server ignored Range and sends the whole file: start over
                if size is None and resp.headers.get("Content-Length"):
                    bar.update(task, total=offset + int(resp.headers["Content-Length"]))
                bar.update(task, completed=offset)
                try:
                    with part.open("ab" if resumed else "wb") as fh:
                        for chunk in resp.iter_content(STREAM_CHUNK_BYTES):
                            fh.write(chunk)
                            bar.advance(task, len(chunk))
                except (requests.ConnectionError, requests.Timeout,
                        requests.exceptions.ChunkedEncodingError) as exc:
                    failures += 1
                    if failures >= MAX_ATTEMPTS:
                        kept = part.stat().st_size if part.exists() else 0
                        raise DownloadError(
                            f"{url}: the connection dropped {failures} times ({exc}); "
                            f"{kept} bytes are kept in {part}: {rerun_hint} to resume."
                        ) from exc
                    time.sleep(RETRY_WAIT_S * failures)
                    continue
            got = part.stat().st_size
            if size is None or got == size:
                break
            failures += 1  # body ended early without an error (no Content-Length)
            if failures >= MAX_ATTEMPTS:
                raise DownloadError(f"{url}: got {got} of {size} bytes after {failures} "
                                    f"attempts; {rerun_hint} to resume.")
    problem = check_integrity(part, size, checksum)
    if problem:
        part.unlink()
        raise CorruptArchiveError(f"{dest.name} from {url} is corrupted: {problem}. The bad "
                                  f"file was deleted; {rerun_hint} to download it again.")
    part.replace(dest)
    return dest


# ---- Zenodo: safe extraction -----------------------------------------------------------------


def unsafe_member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why extracting this member would be unsafe, or None.

    Written by hand: ``zipfile`` has no extraction filter and silently rewrites such names
    instead of refusing them, which would hide a malicious or broken archive.
    """
    name = info.filename
    posix = PurePosixPath(name.replace("\\", "/"))
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if posix.is_absolute() or PureWindowsPath(name).drive or PureWindowsPath(name).root:
        return "has an absolute path"
    if ".." in posix.parts:
        return "contains '..' and would extract outside the target folder"
    if not [p for p in posix.parts if p not in (".", "/")]:
        return "has an empty name"
    return None


def _limit(kind: str, default: int) -> int:
    text = os.environ.get(ARCHIVE_LIMIT_ENV[kind], "").strip()
    value = (exact_int(text) or -1) if text else default  # "inf", "nan", "x": refused below
    if value < 1:
        raise DownloadError(f"{ARCHIVE_LIMIT_ENV[kind]} must be a positive number, not {text!r}")
    return value


def archive_problem(archive: Path, infos: list[zipfile.ZipInfo]) -> str | None:
    """Why the archive's declared sizes look like a zip bomb, or None (read before extracting).

    Limits: member count, total uncompressed size, and compression ratio (per member and over
    the whole archive, once past `RATIO_FLOOR_BYTES`); see the ``MARSBENCH_MAX_*`` variables.
    """
    members = _limit("members", MAX_ARCHIVE_MEMBERS)
    max_bytes = _limit("bytes", MAX_EXTRACTED_BYTES)
    ratio = _limit("ratio", MAX_COMPRESSION_RATIO)
    if len(infos) > members:
        return (f"it holds {len(infos)} members, over the limit of {members} "
                f"(raise {ARCHIVE_LIMIT_ENV['members']} if it is genuine)")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        return (f"it would extract {total} bytes, over the limit of {max_bytes} "
                f"(raise {ARCHIVE_LIMIT_ENV['bytes']} if it is genuine)")
    for i in infos:
        if i.file_size > RATIO_FLOOR_BYTES and i.file_size > ratio * max(i.compress_size, 1):
            return (f"member {i.filename!r} expands {i.compress_size} -> {i.file_size} bytes, "
                    f"a ratio over {ratio} (raise {ARCHIVE_LIMIT_ENV['ratio']} if it is genuine)")
    packed = max(archive.stat().st_size, sum(i.compress_size for i in infos), 1)
    if total > RATIO_FLOOR_BYTES and total > ratio * packed:
        return (f"it expands {packed} -> {total} bytes, a ratio over {ratio} "
                f"(raise {ARCHIVE_LIMIT_ENV['ratio']} if it is genuine)")
    return None


def _extract_members(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], dest: Path,
                     archive: Path) -> None:
    """Write every member under ``dest``, counting bytes: no member may exceed its declared
    size (the central directory could lie) nor the archive its declared total."""
    budget = sum(i.file_size for i in infos)
    for info in infos:
        target = dest / info.filename
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with zf.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(STREAM_CHUNK_BYTES):
                written += len(chunk)
                budget -= len(chunk)
                if written > info.file_size or budget < 0:
                    raise UnsafeArchiveError(f"{archive}: refusing to extract member "
                                             f"{info.filename!r}: it expands past its declared "
                                             f"size of {info.file_size} bytes")
                out.write(chunk)


def safe_extract(archive: Path, root: Path, folder_name: str, *, force: bool = False) -> Path:
    """Extract ``archive`` so that the dataset ends up at ``root/folder_name``.

    All members are checked before anything is written. Extraction goes to a temporary folder
    inside ``root`` that is renamed into place at the end, so a failure leaves no half dataset.
    """
    target = root / folder_name
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            bad = [(i.filename, p) for i in infos if (p := unsafe_member_problem(i))]
            if bad:
                listing = "; ".join(f"member {n!r} {p}" for n, p in bad[:10])
                raise UnsafeArchiveError(f"{archive}: refusing to extract: {listing}. Nothing "
                                         "was written; the archive is not trustworthy.")
            bomb = archive_problem(archive, infos)
            if bomb:
                raise UnsafeArchiveError(f"{archive}: refusing to extract: {bomb}. Nothing was "
                                         "written.")
            root.mkdir(parents=True, exist_ok=True)
            needed, free = sum(i.file_size for i in infos), shutil.disk_usage(root).free
            if needed > free:
                raise DownloadError(f"{archive}: extracting needs {needed} bytes but {root} has "
                                    f"{free} free; free some space or pass another --root")
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder_name}.extracting-", dir=root))
            try:
                tmp_resolved = tmp.resolve()
                for info in zf.infolist():  # second guard, after path resolution
                    if not (tmp / info.filename).resolve().is_relative_to(tmp_resolved):
                        raise UnsafeArchiveError(f"{archive}: refusing to extract member "
                                                 f"{info.filename!r}: it resolves outside "
                                                 f"{target}")
                _extract_members(zf, infos, tmp, archive)
                source = _dataset_folder(tmp, folder_name)
                if target.exists():
                    if not force:
                        raise DownloadError(f"{target} already exists; remove it or pass "
                                            "force=True to replace it")
                    shutil.rmtree(target)
                os.replace(source, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except DownloadError:
        raise
    except zipfile.BadZipFile as exc:
        raise CorruptArchiveError(f"{archive} is not a valid zip archive ({exc})") from exc
    except (zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        # a damaged stream, an unsupported compression method, an encrypted member
        raise CorruptArchiveError(f"{archive} cannot be extracted ({type(exc).__name__}: "
                                  f"{exc})") from exc
    return target


def _dataset_folder(extracted: Path, folder_name: str) -> Path:
    """The extracted dataset: ``<folder_name>/``, the only top folder, or the top itself."""
    if (extracted / folder_name).is_dir():
        return extracted / folder_name
    top = [p for p in extracted.iterdir() if p.name != "__MACOSX"]
    if len(top) == 1 and top[0].is_dir():
        return top[0]
    return extracted


# ---- Zenodo: the whole ladder ----------------------------------------------------------------


def download_zenodo(card: DatasetCard, root: Path, *, record: str | None = None,
                    progress: bool = True, force: bool = False) -> Path:
    """Fetch ``<name>.zip`` from Zenodo and extract it to ``<root>/<name>``.

    A file lock serialises concurrent downloads of the same dataset (another process waits,
    then finds the finished copy).
    """
    from filelock import FileLock

    target = local_path(card.name, "zenodo", root)
    if is_present(card.name, "zenodo", root) and not force:
        return target
    staging = downloads_dir(root)
    staging.mkdir(parents=True, exist_ok=True)
    with FileLock(str(staging / f"{card.name}.lock")):
        if is_present(card.name, "zenodo", root) and not force:
            return target
        return _download_zenodo_locked(card, root, target, record, progress, force)


def _download_zenodo_locked(card: DatasetCard, root: Path, target: Path, record: str | None,
                            progress: bool, force: bool) -> Path:
    base = zenodo_base_url()
    record = record or card.zenodo_record
    session = _session()
    hint = f"rerun {_retry_command(card.name, 'zenodo')}"
    where = (f"{base}/records/{record}" if record
             else f"{base}/communities/{ZENODO_COMMUNITY}")
    try:
        remote = resolve_zenodo_file(card.name, record, base_url=base, session=session)
        where = remote.url
        archive = fetch(remote.url, downloads_dir(root) / remote.key, size=remote.size,
                        checksum=remote.checksum, progress=progress, session=session,
                        rerun_hint=hint)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise DatasetUnavailableError(_zenodo_offline_message(card, where, target, exc)) from exc
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()  # an empty folder left by hand is not a copy worth keeping
    try:
        path = safe_extract(archive, root, card.name, force=force)
    except CorruptArchiveError as exc:
        archive.unlink(missing_ok=True)
        raise CorruptArchiveError(f"{exc}. The bad file was deleted; {hint} to download it "
                                  "again.") from exc
    except UnsafeArchiveError:
        archive.unlink(missing_ok=True)
        raise
    archive.unlink(missing_ok=True)
    return path


def _zenodo_offline_message(card: DatasetCard, where: str, target: Path,
                            exc: BaseException) -> str:
    return (
        f"{card.name}: cannot reach Zenodo at {where} ({type(exc).__name__}: {exc}). The "
        f"machine may be offline. To fix it: on a machine with network, download "
        f"{card.name}.zip from {where} (Zenodo community {ZENODO_COMMUNITY!r}) and extract it "
        f"into {target.parent} so that the folder {target} holds data/<split>/...; or rerun "
        f"{_retry_command(card.name, 'zenodo')} when online (a partial download is resumed)."
    )


# ---- counts per split --------------------------------------------------------------------


_SHARD = re.compile(r"^(?P<split>.+?)(?:-\d{5}-of-\d{5})?\.parquet$")


@dataclass
class SplitCountReport:
    """Items found per split in a local copy, next to what the card expects."""

    name: str
    path: Path
    counts: dict[str, int]
    expected: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = []
        for split, want in self.expected.items():
            got = self.counts.get(split, 0)
            if got != want:
                out.append(f"{self.name}: split {split!r} in {self.path} has {got} items, the "
                           f"card expects {want}")
        return out + list(self.notes)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(name: str | DatasetCard, path: str | Path) -> SplitCountReport:
    """Count the items per split of a local copy (HF shards or folder layout) against the card.

    Counting is plain file/row counting, independent of the readers: rows of ``annotation.csv``
    for classification (before/after pairs count once), image files for segmentation and
    detection, parquet row counts for the HF layout.
    """
    card = name if isinstance(name, DatasetCard) else get_card(name)
    path = Path(path)
    notes: list[str] = []
    if not path.is_dir():
        counts: dict[str, int] = {}
        notes.append(f"{card.name}: {path} does not exist or is not a folder")
    else:
        try:
            if (path / "data").is_dir() and any((path / "data").glob("*.parquet")):
                counts = _count_parquet_rows(path / "data")
            elif card.task is Task.CLASSIFICATION and (path / "annotation.csv").is_file():
                counts = _count_annotation_rows(path / "annotation.csv", pairs=card.image_pair)
            else:
                counts = _count_image_files(path / "data")
        except Exception as exc:  # noqa: BLE001 - a damaged file: say so, `datasets check` details it
            counts = {}
            notes.append(f"{card.name}: could not count the splits ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())}); run `marsbench datasets check`")
    return SplitCountReport(card.name, path, counts, dict(card.split_sizes), notes)


def _count_parquet_rows(folder: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    counts: Counter[str] = Counter()
    for shard in sorted(folder.glob("*.parquet")):
        match = _SHARD.match(shard.name)
        if match:
            counts[match["split"]] += pq.ParquetFile(shard).metadata.num_rows
    return dict(counts)


def _count_annotation_rows(csv_path: Path, *, pairs: bool) -> dict[str, int]:
    import pandas as pd

    table = pd.read_csv(csv_path, usecols=["file_id", "split"], dtype=str)
    if pairs:  # a pair is one sample whether the CSV lists its "before", "after" or both
        table = table.assign(file_id=table["file_id"].str.replace("after", "before"))
        table = table.drop_duplicates(["file_id", "split"])
    return {str(k): int(v) for k, v in table["split"].value_counts().items()}


def _count_image_files(data_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if not data_dir.is_dir():
        return counts
    for split_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        images = split_dir / "images"
        files = images.iterdir() if images.is_dir() else split_dir.rglob("*")
        counts[split_dir.name] = sum(1 for f in files
                                     if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    return counts
