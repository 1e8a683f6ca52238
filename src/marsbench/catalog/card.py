"""`DatasetCard`: the declarative description of one Mars-Bench dataset."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum

from .variant import Variant


class Task(StrEnum):
    CLASSIFICATION = "classification"
    SEGMENTATION = "segmentation"
    DETECTION = "detection"


class TaskKind(StrEnum):
    """Finer than `Task`: decides the loss, the metric and the canonical target."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"
    IMAGE_PAIR = "image_pair"  # binary change detection on a before/after pair


class Platform(StrEnum):
    ORBITER = "orbiter"
    ROVER = "rover"
    UNKNOWN = "unknown"


HF_ORG = "Mirali33"
ZENODO_COMMUNITY = "mars-bench"
PAPER_CITATION = (
    "Purohit, M., Gajera, B., Malaviya, V., Mehta, I., Kasodekar, K., Adler, J., Lu, S., "
    "Rebbapragada, U., Kerner, H. (2025). Mars-Bench: A Benchmark for Evaluating Foundation "
    "Models for Mars Science Tasks. NeurIPS 2025 Datasets and Benchmarks. arXiv:2510.24010"
)
FEW_SHOT_K = (1, 2, 5, 10, 15, 20)
PARTITIONS = (0.01, 0.02, 0.05, 0.10, 0.20, 0.25, 0.50)


@dataclass(frozen=True)
class DatasetCard:
    """Everything known about a dataset before reading it.

    ``class_names`` is given only where the published order is known for certain; otherwise it
    is ``None`` and the names are read from the data (``mapping.json`` or the HF label feature).
    ``known_class_names`` holds the ids whose names are known when the full list is not.
    """

    name: str
    task: Task
    kind: TaskKind
    platform: Platform
    mission: str
    instrument: str
    image_size: int
    bands: int
    num_classes: int
    split_sizes: dict[str, int]
    class_names: tuple[str, ...] | None = None
    known_class_names: dict[int, str] = field(default_factory=dict)
    class_descriptions: dict[str, str] = field(default_factory=dict)
    few_shot: tuple[int, ...] = ()
    partitions: tuple[float, ...] = ()
    headline_metric: str = ""
    ignore_index: int | None = None
    license: str = "CC-BY-4.0"
    zenodo_record: str | None = None  # None: resolved by file name within the Zenodo community
    notes: str = ""
    citation: str = PAPER_CITATION
    synthetic: bool = False

    @property
    def hf_repo(self) -> str:
        return f"{HF_ORG}/{self.name}"

    @property
    def multilabel(self) -> bool:
        return self.kind is TaskKind.MULTILABEL

    @property
    def image_pair(self) -> bool:
        return self.kind is TaskKind.IMAGE_PAIR

    @property
    def binary(self) -> bool:
        return self.kind in (TaskKind.BINARY, TaskKind.IMAGE_PAIR)

    def variants(self) -> list[str]:
        """Every variant name this dataset publishes, in `Variant.parse` syntax."""
        names = ["full"]
        names += [f"few_shot:{k}" for k in self.few_shot]
        names += [str(Variant("partition", p)) for p in self.partitions]
        return names

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("task", "kind", "platform"):
            out[key] = str(out[key])
        out["hf_repo"] = self.hf_repo
        out["class_names"] = list(self.class_names) if self.class_names else None
        out["known_class_names"] = {str(k): v for k, v in self.known_class_names.items()}
        out["few_shot"] = list(self.few_shot)
        out["partitions"] = list(self.partitions)
        out["splits"] = dict(self.split_sizes)
        out["variants"] = self.variants()
        return out
