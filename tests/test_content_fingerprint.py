"""Identities follow content: a data fingerprint changes with any byte of any file a split reads,
whatever its name, size or mtime say; it does not change with the spelling of the folder's path.

Also: the content-hash memo (hits, racy files, corrupt or unwritable memo files, concurrent
processes) and the byte-bounded in-memory feature cache.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest

from marsbench.sources import content_hash, open_dataset
from marsbench.sources.dataset import SPLITS, splits_fingerprint
from marsbench.sources.synth import generate



@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own memo (never the user's cache)."""
    monkeypatch.setenv("MARSBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def memo_now(monkeypatch):
    """Memoise even files written a moment ago (the default waits `RACY_WINDOW_NS`), so tests
    exercise memo hits; tests using it call `next_tick` before editing a hashed file."""
    monkeypatch.setattr(content_hash, "RACY_WINDOW_NS", 0)


def next_tick(folder: Path) -> None:
    """Wait until the filesystem's clock has moved past every timestamp under ``folder`` (the
    racy window would otherwise cover an edit made within the same timestamp tick)."""
    newest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns)
                 for p in folder.rglob("*") if p.is_file())
    probe = folder / ".tick-probe"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        probe.write_bytes(b"")
        if probe.stat().st_mtime_ns > newest:
            probe.unlink()
            return
        time.sleep(0.005)
    pytest.fail("the filesystem clock did not move in 5 s")


def fingerprint(path, **kw) -> str:
    return splits_fingerprint({s: open_dataset(path, s, **kw) for s in SPLITS})


def flip_byte_in_place(path: Path) -> os.stat_result:
    """Change one byte, keeping name and size; returns the stat from before the edit."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with open(path, "r+b") as fh:  # in place: same inode
        fh.write(data)
    assert path.stat().st_size == before.st_size
    return before


# -- a content change reaches the split fingerprint, the feature cache and the sweep -----------

def test_same_size_edit_changes_fingerprint_feature_key_and_flags_the_sweep(tmp_path, memo_now):
    torch = pytest.importorskip("torch")
    from marsbench.protocol import make_plan, parse_experiment
    from marsbench.protocol.plan import data_fingerprint, grid_runs
    from marsbench.runs import ResultsStore, RunRecord
    from marsbench.training.features import cached_features, clear_memory_cache, feature_key

    root = generate("mb-frost_cls", tmp_path / "data")
    exp = parse_experiment(
        "name: fp\ndatasets: [mb-frost_cls]\nmodels: [efficientnet_lite0]\n"
        "regimes: [feature_extraction]\ngrid_defaults: single\ngrid:\n  lr: [1.0e-3]\n"
        f"seeds: [0]\ndata: {{root: {tmp_path / 'data'}}}\n")
    run = grid_runs(exp)[0]
    before = data_fingerprint(run.spec)
    train = open_dataset(root, "train")
    key_before = feature_key(model="m", weights="w", dataset_fingerprint=train.fingerprint(),
                             split="train", preprocessing="p")
    store = ResultsStore(tmp_path / "runs.sqlite")
    store.put(RunRecord.success(run.spec, val_loss=0.5, data_fingerprint=before,
                                metrics={"val": {"loss": 0.5}, "test": {}}))
    assert make_plan(exp, store, check_models=False).stale == []
    clear_memory_cache()
    cached_features(key_before, tmp_path / "features", lambda: torch.ones(2, 3))
    assert cached_features(key_before, tmp_path / "features", lambda: torch.zeros(1))[1]

    next_tick(root)
    flip_byte_in_place(train.entries[0][1][0])  # one training image, same name and size
    after_train = open_dataset(root, "train")
    assert after_train.fingerprint() != train.fingerprint()
    assert open_dataset(root, "val").fingerprint() == open_dataset(root, "val").fingerprint()
    key_after = feature_key(model="m", weights="w", dataset_fingerprint=after_train.fingerprint(),
                            split="train", preprocessing="p")
    assert key_after != key_before
    clear_memory_cache()
    feats, hit = cached_features(key_after, tmp_path / "features", lambda: torch.zeros(2, 3))
    assert not hit and feats.sum() == 0  # recomputed, not the stale features

    assert data_fingerprint(run.spec) != before
    plan = make_plan(exp, store, check_models=False)
    assert [(s.stale.data_changed, s.stale.code_changed) for s in plan.stale] == [(True, False)]


def test_restoring_the_mtime_does_not_hide_an_edit(tmp_path, memo_now):
    """The memo key is (size, mtime, ctime, inode, device): rsync/make trust size + mtime, but a
    restored mtime (os.utime, touch -r, cp -p) still moves ctime, which no user call can set."""
    root = generate("mb-frost_cls", tmp_path / "data")
    first = fingerprint(root)
    image = next((root / "data" / "train").rglob("*.png"))
    next_tick(root)
    old = flip_byte_in_place(image)
    os.utime(image, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert image.stat().st_mtime_ns == old.st_mtime_ns and image.stat().st_size == old.st_size
    assert fingerprint(root) != first


def test_every_file_a_reader_reads_is_in_its_fingerprint(tmp_path):
    data = tmp_path / "data"
    cls = generate("mb-frost_cls", data)
    pair = generate("mb-change_cls_ctx", data)
    seg = generate("mb-boulder_seg", data)
    det = generate("mb-boulder_det", data)
    cases = [  # (dataset, file to edit, open_dataset options, split)
        (cls, cls / "annotation.csv", {}, "val"),
        (cls, cls / "mapping.json", {}, "train"),
        (cls, cls / "few_shot" / "1_shot.csv", {"variant": "few_shot:1"}, "train"),
        (pair, next((pair / "data" / "train").rglob("after/*.png")), {}, "train"),
        (seg, next((seg / "data" / "val" / "masks").iterdir()), {}, "val"),
        (seg, next((seg / "data" / "val" / "images").iterdir()), {}, "val"),
        (det, next((det / "data" / "test" / "pascal_voc").iterdir()), {}, "test"),
        (det, next((det / "data" / "test" / "labels").iterdir()),
         {"annotation_format": "yolo"}, "test"),
        (det, det / "data" / "test" / "coco_annotations.json",
         {"annotation_format": "coco"}, "test"),
    ]
    before = [open_dataset(d, s, **kw).fingerprint() for d, _, kw, s in cases]
    for (d, path, kw, split), old in zip(cases, before):
        assert path.is_file(), path
        data_bytes = path.read_bytes()
        if path.suffix in (".png", ".jpg", ".tif"):
            flip_byte_in_place(path)
        else:  # text stays valid: a trailing newline changes the bytes, not the meaning
            path.write_bytes(data_bytes + b"\n")
        assert open_dataset(d, split, **kw).fingerprint() != old, path
        path.write_bytes(data_bytes)
        assert open_dataset(d, split, **kw).fingerprint() == old, path  # content, not history
    # a YOLO file is not read by the VOC reader: its edit does not change that fingerprint
    voc = open_dataset(det, "test").fingerprint()
    label = next((det / "data" / "test" / "labels").iterdir())
    label.write_text(label.read_text() + "\n")
    assert open_dataset(det, "test").fingerprint() == voc


def test_hf_fingerprint_hashes_the_parquet_bytes(tmp_path):
    pytest.importorskip("datasets")
    from marsbench.sources.hf import shard_content

    root = generate("mb-frost_cls", tmp_path / "hf", "hf")
    data = open_dataset(root, "train")
    assert not hasattr(data, "_fingerprint") or data._fingerprint is None  # lazy
    names = [part.split("\0")[0] for part in data.content()]
    assert names == ["data/train-00000-of-00001.parquet", "mapping.json"]  # relative names
    shard = root / names[0]
    content = shard_content(str(root), [str(shard)], with_mapping=False)
    old = content()
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 1
    shard.write_bytes(bytes(raw))
    assert content() != old


# -- one folder, any spelling of its path ---------------------------------------------------------

@pytest.mark.parametrize("name", ["mb-frost_cls", "mb-boulder_seg", "mb-boulder_det"])
def test_same_folder_through_any_spelling_has_one_fingerprint(tmp_path, monkeypatch, name):
    real = tmp_path / "real"
    root = generate(name, real)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    monkeypatch.chdir(real)
    spellings = [name, str(root), str(link / name), str(root) + os.sep]
    prints = {fingerprint(s) for s in spellings}
    assert len(prints) == 1
    copy = shutil.copytree(root, tmp_path / "elsewhere" / name)  # a copy: new path, new mtimes
    assert fingerprint(copy) in prints
    parts = open_dataset(root, "train").content()
    assert parts and not any(str(tmp_path) in p or p.startswith("/") for p in parts)


def test_open_is_lazy_and_the_fingerprint_is_kept(tmp_path, monkeypatch):
    root = generate("mb-boulder_seg", tmp_path / "data")
    calls = []
    real = content_hash.file_digests
    monkeypatch.setattr(content_hash, "file_digests",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    data = open_dataset(root, "train")
    assert calls == []  # opening hashes nothing
    fp = data.fingerprint()
    assert data.fingerprint() == fp and len(calls) == 1


# -- the memo -------------------------------------------------------------------------------------

def _files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"f{i:04d}.png"
        p.write_bytes(i.to_bytes(4, "little") * 8)
        out.append(p)
    return out


def test_recheck_reads_no_file_when_the_memo_knows_them(tmp_path, monkeypatch, memo_now):
    files = _files(tmp_path / "d", 150)
    stats: dict = {}
    first = content_hash.file_digests(files, stats=stats)
    assert stats == {"files": 150, "memo_hits": 0, "hashed": 150, "memoised": 150}
    assert first[0] == content_hash.file_digest(files[0], memo=False)
    assert len(set(first)) == 150

    def no_reading(path):
        raise AssertionError(f"{path} was read although the memo knows it")

    monkeypatch.setattr(content_hash, "_hash_open_file", no_reading)
    assert content_hash.file_digests(files, stats=stats) == first
    assert stats["memo_hits"] == 150 and stats["hashed"] == 0
    # a path reached through a symlinked folder is the same memo entry
    (tmp_path / "alias").symlink_to(tmp_path / "d", target_is_directory=True)
    assert content_hash.file_digests([tmp_path / "alias" / files[7].name]) == [first[7]]


def test_files_changed_just_now_are_not_memoised(tmp_path):
    """Default racy window: a same-size rewrite within one timestamp tick is still seen."""
    (path,) = _files(tmp_path, 1)
    stats: dict = {}
    first = content_hash.file_digests([path], stats=stats)[0]
    assert stats["memoised"] == 0
    path.write_bytes(bytes(b ^ 1 for b in path.read_bytes()))  # no sleep: maybe the same tick
    assert content_hash.file_digests([path])[0] != first


def test_corrupt_memo_is_replaced_and_used_again(tmp_path, private_cache, memo_now):
    files = _files(tmp_path / "d", 5)
    private_cache.mkdir()
    memo = content_hash.memo_path()
    memo.write_bytes(b"this is not an SQLite database" * 100)
    expected = [content_hash.file_digest(f, memo=False) for f in files]
    with pytest.warns(UserWarning, match="moved it"):
        assert content_hash.file_digests(files) == expected
    stats: dict = {}
    assert content_hash.file_digests(files, stats=stats) == expected
    assert stats["memo_hits"] == 5  # the new memo works
    assert list(private_cache.glob("*.corrupt-*"))  # the bad one is kept aside


def test_unwritable_memo_falls_back_to_hashing(tmp_path, monkeypatch):
    files = _files(tmp_path / "d", 3)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MARSBENCH_CACHE", str(blocker / "cache"))  # cannot be created
    with pytest.warns(UserWarning, match="without it"):
        got = content_hash.file_digests(files)
    assert got == [content_hash.file_digest(f, memo=False) for f in files]


def test_missing_file_is_a_data_error(tmp_path):
    from marsbench.sources.errors import DataError

    with pytest.raises(DataError, match=r"data file missing \(.*gone\.png\)"):
        content_hash.file_digests([tmp_path / "gone.png"])
    assert content_hash.file_digests([tmp_path / "gone.png"], missing_ok=True) == [None]


def _digest_in_child(args):
    cache, paths = args
    os.environ["MARSBENCH_CACHE"] = cache
    content_hash.RACY_WINDOW_NS = 0
    return content_hash.file_digests(paths)


def test_concurrent_processes_share_the_memo(tmp_path, private_cache):
    files = [str(p) for p in _files(tmp_path / "d", 400)]
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        results = list(pool.map(_digest_in_child, [(str(private_cache), files)] * 4))
    expected = [content_hash.file_digest(f, memo=False) for f in files]
    assert all(r == expected for r in results)


# -- the in-memory feature cache is bounded by bytes ----------------------------------------------

def test_feature_memory_cache_evicts_least_recently_used(monkeypatch):
    torch = pytest.importorskip("torch")
    from marsbench.errors import MarsbenchError
    from marsbench.training import features

    features.clear_memory_cache()
    computed = []

    def get(key, budget=None):
        def compute():
            computed.append(key)
            return torch.zeros(100)  # 400 bytes

        return features.cached_features(key, None, compute, memory_bytes=budget)[1]

    monkeypatch.setenv(features.MEMORY_ENV, "1000")
    assert features.memory_budget() == 1000
    assert not get("a") and not get("b")
    assert get("a")  # a is now the most recently used
    assert not get("c")  # 1200 > 1000 bytes: b (least recently used) goes
    assert features.memory_cache_bytes() == 800
    assert get("a") and get("c") and not get("b")
    assert computed == ["a", "b", "c", "b"]
    assert not get("huge", budget=399) and features.memory_cache_bytes() <= 399
    features.clear_memory_cache()
    assert features.memory_cache_bytes() == 0
    monkeypatch.setenv(features.MEMORY_ENV, "2G")
    assert features.memory_budget() == 2 * 2**30
    monkeypatch.setenv(features.MEMORY_ENV, "lots")
    with pytest.raises(MarsbenchError, match="MARSBENCH_FEATURE_MEMORY_BYTES.*: lots; give"):
        features.memory_budget()
