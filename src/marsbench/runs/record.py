"""`RunRecord`: what one run produced, with everything needed to trust and aggregate it."""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any

from .fingerprint import code_fingerprint, git_commit, package_versions
from .spec import RunSpec

STATUSES = ("ok", "failed")
TIMING_KEYS = ("feature_extraction_s", "training_s", "total_s")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """The result of running ``spec``.

    ``metrics`` is ``{"val": {...}, "test": {...}}`` as the metric functions return them (numbers
    plus nested dicts such as ``per_class_f1``). ``val_loss`` is the best validation loss (the one
    early stopping selected ``best_epoch`` by). ``timings`` has ``feature_extraction_s``,
    ``training_s`` and ``total_s``. ``task`` is the dataset's task (classification, segmentation,
    detection); when not given it is read from the catalog card.

    Build records with `RunRecord.success` / `RunRecord.failure`, which also stamp the versions,
    code fingerprint and git commit of this process; the plain constructor stamps nothing (it is
    what `from_dict` uses to read stored records back unchanged).
    """

    spec: RunSpec
    status: str = "ok"
    task: str | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    best_epoch: int | None = None
    epochs_run: int | None = None
    val_loss: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    git_commit: str | None = None
    code_fingerprint: str | None = None
    data_fingerprint: str | None = None
    device: str | None = None
    error: str | None = None
    created_at: str = field(default_factory=utc_now)
    predictions_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    spec_key: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.spec, RunSpec):
            raise TypeError(f"RunRecord.spec must be a RunSpec, got {type(self.spec).__name__}")
        if self.status not in STATUSES:
            raise ValueError(f"RunRecord.status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "failed" and not self.error:
            raise ValueError(f"failed run {self.spec.describe()} needs its error text")
        if not self.spec_key:
            self.spec_key = self.spec.key
        if self.task is None:
            self.task = self.spec.task
        bad = [s for s, m in self.metrics.items() if not isinstance(m, Mapping)]
        if bad:
            raise TypeError(f"RunRecord.metrics must map split -> dict of metrics; bad: {bad}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def metric(self, name: str, split: str = "test") -> Any:
        """One metric, e.g. ``record.metric("f1_weighted")``; KeyError names what exists."""
        try:
            return self.metrics[split][name]
        except KeyError:
            have = {s: sorted(m) for s, m in self.metrics.items()}
            raise KeyError(f"no metric {name!r} on split {split!r} of run {self.spec_key[:12]}; "
                           f"recorded: {have}") from None

    # -- construction with provenance -------------------------------------------------------
    @classmethod
    def success(cls, spec: RunSpec, **values: Any) -> RunRecord:
        """A finished run, stamped with this process's versions, code fingerprint and commit."""
        return cls(spec=spec, status="ok", **{**_provenance(), **values})

    @classmethod
    def failure(cls, spec: RunSpec, error: BaseException | str, **values: Any) -> RunRecord:
        """A run that raised: ``error`` (an exception keeps its traceback) is stored as text."""
        if isinstance(error, BaseException):
            error = "".join(traceback.format_exception(error)).rstrip()
        return cls(spec=spec, status="failed", error=str(error), **{**_provenance(), **values})

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.name != "spec"}
        out["spec"] = self.spec.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown RunRecord fields {unknown}; known fields: {sorted(known)}")
        values = dict(data)
        values["spec"] = RunSpec.from_dict(values["spec"], task=values.get("task"))
        return cls(**values)

    def to_json(self, **kwargs: Any) -> str:
        """JSON text (NaN/inf kept as JSON's NaN/Infinity extension, which `from_json` reads)."""
        return json.dumps(self.to_dict(), sort_keys=True, **kwargs)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        return cls.from_dict(json.loads(text))


def _provenance() -> dict[str, Any]:
    return {"versions": package_versions(), "code_fingerprint": code_fingerprint(),
            "git_commit": git_commit()}


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays, paths and tuples converted; keys made text."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalar or array
        return _jsonable(value.tolist())
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"RunRecord value {value!r} ({type(value).__name__}) cannot be stored as JSON")
