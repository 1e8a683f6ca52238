"""Protocol profiles: ``marsbench`` (our defaults) and ``paper`` (the reference's semantics).

A profile is a recorded part of every run (`RunSpec.profile`). ``paper`` reproduces what the
reference implementation (github.com/kerner-lab/Mars-Bench, the code behind the published
numbers) does where that changes results; every difference is a row of docs/fidelity.md with the
reference's file and line. Torch-free: the trainers read `LoopSettings`, the preprocessing
reads `InputSettings`, the spec reads `paper_option_defaults`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoopSettings:
    """The training loop's semantics under a profile."""

    cosine_t_max: int | None  # None: the run's max_epochs
    cosine_eta_min: float
    plateau_patience: int
    step_size: int | None  # None: max(1, max_epochs // 3)
    min_delta: float  # early stopping: an improvement must beat the best by more than this
    restore_best: bool  # test the best validation checkpoint (else the last epoch's weights)
    cuda_auto_precision: str  # what precision=auto means on CUDA
    frozen_backbone_train_mode: bool  # frozen layers still use batch statistics / dropout
    reference_dice: bool  # generalised Dice with the reference's clamp (docs/fidelity.md row 14)


LOOP_SETTINGS = {
    "marsbench": LoopSettings(cosine_t_max=None, cosine_eta_min=0.0, plateau_patience=2,
                              step_size=None, min_delta=0.0, restore_best=True,
                              cuda_auto_precision="bf16", frozen_backbone_train_mode=False,
                              reference_dice=False),
    # reference: configs/training/dev.yaml (t_max 100, eta_min 1e-6, plateau patience 5,
    # step 10 / 0.1, precision 16-mixed), configs/callbacks/default.yaml (min_delta 0.01),
    # training/execution.py (trainer.test without ckpt_path: the last epoch's weights), no
    # .eval() on frozen backbones (BatchNorm batch statistics, dropout active), class volumes
    # clamped at 1e-5 in its generalised Dice (BaseSegmentationModel.py)
    "paper": LoopSettings(cosine_t_max=100, cosine_eta_min=1e-6, plateau_patience=5,
                          step_size=10, min_delta=0.01, restore_best=False,
                          cuda_auto_precision="fp16", frozen_backbone_train_mode=True,
                          reference_dice=True),
}


def loop_settings(profile: str) -> LoopSettings:
    return LOOP_SETTINGS[profile]


@dataclass(frozen=True)
class InputSettings:
    """How images are fed to a model under a profile (`models.preprocess.for_profile`)."""

    antialias: bool  # antialiased bilinear resizing (else cv2 INTER_LINEAR's plain bilinear)
    imagenet_stats: bool  # every 3-channel model normalised with ImageNet mean/std


INPUT_SETTINGS = {
    "marsbench": InputSettings(antialias=True, imagenet_stats=False),
    # reference: cv2 resize without antialiasing, configs/transforms/default.yaml's ImageNet
    # mean/std for every model (docs/fidelity.md rows 16-17)
    "paper": InputSettings(antialias=False, imagenet_stats=True),
}


def input_settings(profile: str) -> InputSettings:
    return INPUT_SETTINGS[profile]


def paper_option_defaults(task: str, regime: str) -> dict:
    """Options the paper profile sets where the run does not: the reference augments in
    feature extraction (so no cached features), resizes segmentation and detection inputs to
    224 px (masks nearest), and drops detection images without boxes in every split."""
    out: dict = {}
    if regime == "feature_extraction" and task in ("classification", "segmentation"):
        out["fe_path"] = "online"
    if task in ("segmentation", "detection"):
        out |= {"input_policy": "reference", "input_size": 224}
    if task == "detection":
        out["drop_negatives"] = True
    return out
