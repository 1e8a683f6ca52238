"""The 20 Mars-Bench dataset cards (facts sheet, section 1).

Class names appear here only where their index order is published; the rest are read from each
dataset's ``mapping.json`` or Hugging Face label feature at load time.
"""

from __future__ import annotations

from .card import FEW_SHOT_K, PARTITIONS, DatasetCard, Platform, Task, TaskKind

C, S, D = Task.CLASSIFICATION, Task.SEGMENTATION, Task.DETECTION
ORB, ROV = Platform.ORBITER, Platform.ROVER
MRO, ODY = "Mars Reconnaissance Orbiter", "Mars Odyssey"
MSL, MER = "Mars Science Laboratory (Curiosity)", "Mars Exploration Rovers (Opportunity, Spirit)"
CLS_METRIC, SEG_METRIC, DET_METRIC = "f1_weighted", "iou_reference", "map_50_95"
PARTITIONS_FROM_5 = tuple(p for p in PARTITIONS if p >= 0.05)


def _splits(train: int, val: int, test: int) -> dict[str, int]:
    return {"train": train, "val": val, "test": test}


DOMARS16K_CODES = (
    "ael", "rou", "cli", "aec", "tex", "smo", "fss", "rid", "fse", "sfe", "fsf", "fsg", "sfx",
    "cra", "mix",
)
DOMARS16K_DESCRIPTIONS = {
    "ael": "aeolian bedforms (one of the two aeolian classes)",
    "aec": "aeolian bedforms (the other aeolian class)",
    "rou": "rough terrain", "cli": "cliff", "tex": "textured terrain", "smo": "smooth terrain",
    "fss": "mass wasting", "rid": "ridge", "fse": "slope streaks", "sfe": "mounds",
    "fsf": "channel", "fsg": "gullies", "sfx": "crater field", "cra": "crater",
    "mix": "mixed terrain",
}
SURFACE_CLS_KNOWN = dict(enumerate((
    "apx", "act", "arm", "art", "cct", "cio", "clr", "dls", "dri", "drh", "drp", "drt", "flr",
    "gro", "hor", "inl", "lar", "ltv", "mah", "mct", "mas", "mca",
)))
SURFACE_MULTI_LABEL_CODES = (
    "rah", "cla", "dur", "soi", "roc", "clr", "rab", "div", "rod", "bso", "flr", "art", "pct",
    "arh", "rrf", "sph", "ohw", "ast", "nbs", "rmi", "rtr", "sky", "rpa", "rlf", "sot",
)
LANDMARK_NAMES = (
    "other", "crater", "dark dune", "slope streak", "bright dune", "impact ejecta",
    "swiss cheese", "spider",
)
CRATER_MULTI_NAMES = ("background", "other", "layered", "buried", "secondary")


def _binary_seg(feature: str) -> tuple[str, str]:
    return ("background", feature)


CARDS: tuple[DatasetCard, ...] = (
    # ---- classification -------------------------------------------------------------------
    DatasetCard("mb-atmospheric_dust_cls_edr", C, TaskKind.BINARY, ORB, MRO, "HiRISE EDR", 100, 1,
                2, _splits(9817, 4969, 5214), few_shot=FEW_SHOT_K, partitions=PARTITIONS,
                headline_metric=CLS_METRIC,
                notes="dusty / not dusty; index order read from the data"),
    DatasetCard("mb-atmospheric_dust_cls_rdr", C, TaskKind.BINARY, ORB, MRO, "HiRISE RDR", 100, 1,
                2, _splits(9817, 4969, 5214), few_shot=FEW_SHOT_K, partitions=PARTITIONS,
                headline_metric=CLS_METRIC,
                notes="dusty / not dusty; index order read from the data"),
    DatasetCard("mb-change_cls_ctx", C, TaskKind.IMAGE_PAIR, ORB, MRO, "CTX", 150, 1, 2,
                _splits(36, 10, 10), partitions=PARTITIONS_FROM_5, headline_metric=CLS_METRIC,
                notes="before/after pairs; every reference model scores F1 0.711, so its "
                      "min-max normalisation is degenerate"),
    DatasetCard("mb-change_cls_hirise", C, TaskKind.IMAGE_PAIR, ORB, MRO, "HiRISE", 100, 1, 2,
                _splits(3103, 670, 670), few_shot=FEW_SHOT_K, partitions=PARTITIONS,
                headline_metric=CLS_METRIC, notes="before/after pairs; change / no change"),
    DatasetCard("mb-domars16k", C, TaskKind.MULTICLASS, ORB, MRO, "CTX", 200, 1, 15,
                _splits(11305, 1231, 1014), class_names=DOMARS16K_CODES,
                class_descriptions=DOMARS16K_DESCRIPTIONS, few_shot=FEW_SHOT_K,
                partitions=PARTITIONS, headline_metric=CLS_METRIC,
                notes="test split size transcribed from the paper (?); class order is checked "
                      "against the data and a reordering is refused"),
    DatasetCard("mb-frost_cls", C, TaskKind.BINARY, ORB, MRO, "HiRISE", 250, 1, 2,
                _splits(30124, 11415, 12289), few_shot=FEW_SHOT_K, partitions=PARTITIONS,
                headline_metric=CLS_METRIC,
                notes="frost / no frost; image size transcribed (?)"),
    DatasetCard("mb-landmark_cls", C, TaskKind.MULTICLASS, ORB, MRO, "HiRISE map-projected v3.2",
                227, 1, 8, _splits(6997, 2025, 1793), class_names=LANDMARK_NAMES,
                few_shot=FEW_SHOT_K, partitions=PARTITIONS, headline_metric=CLS_METRIC),
    DatasetCard("mb-surface_cls", C, TaskKind.MULTICLASS, ROV, MSL, "Mastcam + MAHLI", 256, 3, 36,
                _splits(6580, 1293, 1594), known_class_names=SURFACE_CLS_KNOWN,
                few_shot=FEW_SHOT_K, partitions=PARTITIONS, headline_metric=CLS_METRIC,
                notes="names of ids 22-35 are read from the data"),
    DatasetCard("mb-surface_multi_label_cls", C, TaskKind.MULTILABEL, ROV, MER, "Pancam", 1024, 1,
                25, _splits(1762, 443, 739), class_names=SURFACE_MULTI_LABEL_CODES,
                few_shot=FEW_SHOT_K, partitions=PARTITIONS, headline_metric=CLS_METRIC,
                notes="k-shot is per label, so few-shot sizes are not 25k"),
    # ---- segmentation ---------------------------------------------------------------------
    DatasetCard("mb-boulder_seg", S, TaskKind.BINARY, ORB, MRO, "HiRISE", 500, 1, 2,
                _splits(39, 6, 4), class_names=_binary_seg("boulder"),
                partitions=PARTITIONS_FROM_5, headline_metric=SEG_METRIC),
    DatasetCard("mb-conequest_seg", S, TaskKind.BINARY, ORB, MRO, "CTX", 512, 1, 2,
                _splits(2236, 319, 643), class_names=_binary_seg("cone"), partitions=PARTITIONS,
                headline_metric=SEG_METRIC),
    DatasetCard("mb-crater_binary_seg", S, TaskKind.BINARY, ORB, ODY, "THEMIS", 512, 1, 2,
                _splits(3600, 900, 900), class_names=_binary_seg("crater"),
                partitions=PARTITIONS, headline_metric=SEG_METRIC),
    DatasetCard("mb-crater_multi_seg", S, TaskKind.MULTICLASS, ORB, ODY, "THEMIS", 512, 1, 5,
                _splits(3600, 900, 900), class_names=CRATER_MULTI_NAMES, partitions=PARTITIONS,
                headline_metric=SEG_METRIC),
    DatasetCard("mb-mars_seg_mer", S, TaskKind.MULTICLASS, ROV, MER, "Navcam + Pancam", 1024, 1, 7,
                _splits(744, 106, 214), partitions=PARTITIONS, headline_metric=SEG_METRIC,
                notes="terrain class names are read from the data"),
    DatasetCard("mb-mars_seg_msl", S, TaskKind.MULTICLASS, ROV, MSL, "Mastcam", 500, 3, 7,
                _splits(2893, 413, 828), partitions=PARTITIONS, headline_metric=SEG_METRIC,
                notes="terrain class names are read from the data; image/mask pairs in the val "
                      "split are reported to be mismatched"),
    DatasetCard("mb-mmls", S, TaskKind.BINARY, ORB, MRO, "CTX + derived layers", 128, 7, 2,
                _splits(275, 31, 256), class_names=_binary_seg("landslide"),
                partitions=PARTITIONS, headline_metric=SEG_METRIC,
                notes="7-band TIFFs Image<id>.tif / Mask<id>.tif; the reference keeps bands "
                      "[2, 1, 0] as RGB"),
    DatasetCard("mb-s5mars", S, TaskKind.MULTICLASS, ROV, MSL, "Mastcam", 1200, 3, 10,
                _splits(5000, 200, 800), partitions=PARTITIONS, headline_metric=SEG_METRIC,
                notes="the paper counts 10 classes; the HF copy has 9 ids; the data's own "
                      "mapping is trusted and a differing count is reported"),
    # ---- detection ------------------------------------------------------------------------
    DatasetCard("mb-boulder_det", D, TaskKind.MULTICLASS, ORB, MRO, "HiRISE", 500, 1, 1,
                _splits(39, 6, 4), class_names=("boulder",), partitions=PARTITIONS_FROM_5,
                headline_metric=DET_METRIC),
    DatasetCard("mb-conequest_det", D, TaskKind.MULTICLASS, ORB, MRO, "CTX", 512, 1, 1,
                _splits(1158, 167, 333), class_names=("cone",), partitions=PARTITIONS,
                headline_metric=DET_METRIC),
    DatasetCard("mb-dust_devil_det", D, TaskKind.MULTICLASS, ORB, MRO, "CTX", 750, 1, 1,
                _splits(1404, 201, 402), class_names=("dust devil",), partitions=PARTITIONS,
                headline_metric=DET_METRIC, notes="image size about 750 px"),
)
