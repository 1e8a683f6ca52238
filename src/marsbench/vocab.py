"""Every fixed vocabulary of marsbench, defined once (and importable without torch).

Modules that accept one of these names import it from here; `marsbench.runs.options` validates
run options against them, the experiment-file parser and the CLI help list them.
"""

from __future__ import annotations

TASKS = ("classification", "segmentation", "detection")

# The paper's three training regimes; the probes (classification, on cached frozen features,
# each its own regime so it is never pooled with feature_extraction); zero_shot for models scored
# without training (VLMs).
PAPER_REGIMES = ("scratch", "feature_extraction", "fine_tuning")
PROBE_REGIMES = ("knn", "linear_probe", "mlp_probe", "few_shot_episodes")
TRAINING_REGIMES = (*PAPER_REGIMES, *PROBE_REGIMES)  # what an experiment file may list
REGIMES = (*TRAINING_REGIMES, "zero_shot")
PRETRAINED_REGIMES = ("feature_extraction", "fine_tuning", *PROBE_REGIMES)  # load weights
FROZEN_REGIMES = ("feature_extraction", *PROBE_REGIMES)  # the backbone never trains

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "plateau", "step")

# Losses per task, and the spellings accepted for them (normalised to the canonical name).
LOSSES = {
    "classification": ("auto", "ce", "bce"),
    "segmentation": ("auto", "ce", "dice", "combined"),
    "detection": ("auto",),  # the detectors' own losses
}
LOSS_ALIASES = {"gdice": "dice", "ce+dice": "combined", "ce_dice": "combined",
                "cross_entropy": "ce"}

# Where a run reads its data from (`open_dataset(source=...)`).
DATA_SOURCES = ("auto", "folder", "hf")
# Where `marsbench datasets download` fetches a dataset from, and the local copies it keeps.
DOWNLOAD_SOURCES = ("hf", "zenodo")

PROFILES = ("marsbench", "paper")  # our defaults | the reference implementation's semantics
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: bf16 autocast on CUDA, fp32 on the CPU
FE_PATHS = ("cached", "online")  # feature_extraction: backbone once (no augmentation) or per step
SEGMENTATION_INPUT_POLICIES = ("native", "tile", "reference")
DETECTION_INPUT_POLICIES = ("native", "tile", "reference")
DICE_WEIGHTINGS = ("square", "simple", "uniform")  # MONAI GeneralizedDiceLoss w_type
BAND_STRATEGIES = ("replicate", "visible", "adapter")  # Earth-observation models' band adaptation
ANNOTATION_FORMATS = ("voc", "coco", "yolo")  # detection annotations; voc as the reference

# Class-imbalance strategies (classification run option `imbalance`; issue: the paper's open
# question 2). none | loss re-weighting | sampling | logit adjustment | focal loss.
IMBALANCE_STRATEGIES = ("none", "inverse_frequency", "effective_number", "balanced_sampler",
                        "oversample", "undersample", "logit_adjustment", "focal")
# How train/val/test are drawn (`RunSpec.split`): the official files, or re-drawn so that no
# observation (or region, or latitude band) is in two splits. Parametrised kinds take text after
# a colon: region:<name>, latitude_band:<lo>:<hi>.
SPLIT_SCHEMES = ("official", "observation_disjoint", "region", "latitude_band")
# How an experiment file explores its grid: every point, or n seeded draws (random / Optuna TPE).
SEARCH_KINDS = ("grid", "random", "tpe")

LOGGERS = ("none", "tensorboard", "mlflow", "wandb")  # optional experiment loggers (extras)
