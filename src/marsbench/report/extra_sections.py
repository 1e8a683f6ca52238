"""The report's optional sections beyond rankings, calibration and cost, registered once for the
HTML and Markdown renderers: (heading, intro, blocks function). A section with no blocks for a
task (no such runs) is left out."""

from __future__ import annotations

from .imbalance import IMBALANCE_INTRO, imbalance_blocks
from .science import SCIENCE_INTRO, science_blocks
from .splits import SPLITS_INTRO, split_blocks

EXTRA_SECTIONS = (
    ("Science metrics: objects and rare classes", SCIENCE_INTRO, science_blocks),
    ("Class imbalance", IMBALANCE_INTRO, imbalance_blocks),
    ("Official vs re-drawn splits", SPLITS_INTRO, split_blocks),
)


def extra_sections(data, task: str) -> list[tuple[str, str, list]]:
    """(heading, intro, blocks) of every registered section that has blocks for ``task``."""
    out = []
    for heading, intro, make in EXTRA_SECTIONS:
        made = make(data, task)
        if made:
            out.append((heading, intro, made))
    return out
