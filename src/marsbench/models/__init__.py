"""Models: a registry of specs, a uniform backbone + head classifier, and the one preprocessing
path. ``marsbench models list`` shows what is registered; ``timm:<name>`` adds any timm model."""

from __future__ import annotations

from . import zoo as _zoo  # noqa: F401 - registers the built-in specs
from . import earth_observation as _earth_observation  # noqa: F401 - SatMAE, CROMA, Prithvi
from . import momo as _momo  # noqa: F401 - MOMO Mars orbital ViTs (docs/momo.md)
from . import file_models as _file_models  # noqa: F401 - file:<path> (marsbench pretrain)
from . import segmentation as _segmentation  # noqa: F401 - U-Net, DeepLabV3+, SegFormer, DPT
from . import detection as _detection  # noqa: F401 - Faster R-CNN, RetinaNet, SSD, YOLO11
from .classifier import ClassifierModel, build_classifier, load_checkpoint, num_outputs_for
from .preprocess import (
    CLASSIFICATION_AUGMENT,
    AugmentConfig,
    BatchPreprocessor,
    Preprocessing,
    augment,
    normalize,
    prepare,
    preprocess,
    preprocess_batch,
    to_uint8_tensor,
)
from .registry import (
    UnknownModelError,
    get_spec,
    list_specs,
    register,
    register_prefix,
    registered_prefixes,
)
from .spec import BackboneParts, ModelSpec, Regime, WeightSource
from .weights import (
    OFFLINE_ENV,
    LoadReport,
    WeightsLoadError,
    WeightsUnavailableError,
    read_state_dict,
)

__all__ = [
    "CLASSIFICATION_AUGMENT", "OFFLINE_ENV", "AugmentConfig", "BackboneParts",
    "BatchPreprocessor", "ClassifierModel", "LoadReport", "ModelSpec", "Preprocessing", "Regime",
    "UnknownModelError", "WeightSource", "WeightsLoadError", "WeightsUnavailableError", "augment",
    "build_classifier", "get_spec", "list_specs", "load_checkpoint", "normalize",
    "num_outputs_for", "prepare", "preprocess", "preprocess_batch", "read_state_dict",
    "register", "register_prefix", "registered_prefixes", "to_uint8_tensor",
]
