"""Readers: every public format in, one canonical sample type per task out."""

from .dataset import SPLITS, MarsDataset
from .errors import DataError, VariantUnavailableError
from .open import open_dataset, resolve
from .samples import ClassificationSample, DetectionSample, Sample, SegmentationSample

__all__ = [
    "SPLITS", "ClassificationSample", "DataError", "DetectionSample", "MarsDataset", "Sample",
    "SegmentationSample", "VariantUnavailableError", "open_dataset", "resolve",
]
