"""Training-set variants: the full set, few-shot k images per class, or a fraction p."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Variant:
    """``full``, ``few_shot:<k>`` or ``partition:<p>``. Only the train split changes."""

    kind: Literal["full", "few_shot", "partition"] = "full"
    value: float | int | None = None

    @classmethod
    def parse(cls, text: "str | Variant | None") -> "Variant":
        if text is None or isinstance(text, Variant):
            return text or cls()
        text = text.strip()
        if text in ("", "full", "default", "partition:1", "partition:1.0", "partition:1.00"):
            return cls()
        m = re.fullmatch(r"(few_shot|few-shot|fewshot):(\d+)", text)
        if m:
            return cls("few_shot", int(m.group(2)))
        m = re.fullmatch(r"partition:(0?\.\d+|\d+(\.\d+)?)", text)
        if m and 0 < float(m.group(1)) < 1:
            return cls("partition", round(float(m.group(1)), 4))
        raise ValueError(
            f"bad variant {text!r}: use 'full', 'few_shot:<k>' (e.g. few_shot:5) or "
            "'partition:<p>' with 0 < p < 1 (e.g. partition:0.10)"
        )

    @property
    def is_full(self) -> bool:
        return self.kind == "full"

    def __str__(self) -> str:
        if self.kind == "full":
            return "full"
        if self.kind == "few_shot":
            return f"few_shot:{self.value}"
        return f"partition:{self.value:.2f}"

    # Names of the published files / splits -------------------------------------------------
    @property
    def folder_csv(self) -> str:
        """Path of the variant CSV inside a Zenodo dataset folder."""
        if self.kind == "few_shot":
            return f"few_shot/{self.value}_shot.csv"
        if self.kind == "partition":
            return f"partitions/{self.value:.2f}x_partition.csv"
        return "annotation.csv"

    @property
    def hf_splits(self) -> tuple[str, ...]:
        """Candidate names of the train split in a Hugging Face repo, preferred first."""
        if self.kind == "few_shot":
            return (f"few_shot_train_{self.value}_shot",)
        if self.kind == "partition":
            p = f"{self.value:.2f}x_partition"
            return (f"partition_train_{p}", p)
        return ("train",)
