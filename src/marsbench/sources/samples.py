"""The canonical sample of each task: what every reader returns, whatever the format it read.

Images stay as decoded arrays (``uint8`` for ordinary photographs, the file's own dtype for
multi-band TIFFs such as MMLS) until a model's preprocessing turns them into tensors. Arrays are
always ``(H, W, C)``; a grayscale image has ``C == 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class ClassificationSample:
    """One image (or a before/after pair) and its label.

    ``images`` holds one array, or two for change-detection pairs (``before``, ``after``).
    ``target`` is a class index for single-label tasks and a multi-hot ``int8`` vector of length
    ``num_classes`` for multi-label tasks.
    """

    sample_id: str
    images: tuple[np.ndarray, ...]
    target: int | np.ndarray

    @property
    def image(self) -> np.ndarray:
        """The single image; for a pair, the ``after`` image."""
        return self.images[-1]

    @property
    def is_pair(self) -> bool:
        return len(self.images) == 2


@dataclass(frozen=True, eq=False)
class SegmentationSample:
    """An image and its class-index mask (``(H, W)``, ``int64``; an ignore value may appear)."""

    sample_id: str
    image: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True, eq=False)
class DetectionSample:
    """An image and its boxes.

    ``boxes`` is ``(N, 4)`` ``float32`` in absolute pixels, ``x_min, y_min, x_max, y_max``;
    ``labels`` is ``(N,)`` ``int64`` with class ids ``1..K`` (0 is reserved for background, as in
    torchvision detectors). ``N == 0`` is a negative image.
    """

    sample_id: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray

    @property
    def is_negative(self) -> bool:
        return len(self.boxes) == 0


Sample = ClassificationSample | SegmentationSample | DetectionSample
