"""Continued self-supervised pretraining of a ViT on unlabeled Mars images (``marsbench pretrain``).

Objective: the masked autoencoder of He et al. 2022 (MAE), as MOMO's ``models/mae.py`` uses it.
Each image is cut into patches; a random 75 % of them (``mask_ratio``) are dropped; the timm
``VisionTransformer`` encoder sees only the visible ones; a light transformer decoder gets the
encoded visible tokens plus a shared learned mask token at every dropped position (fixed 2-D
sin-cos positions) and predicts each masked patch's pixels, normalised per patch (MAE's
``norm_pix_loss``). The loss is the mean squared error over masked patches only.

Why the decoder and masking are written here: ``lightly`` (MIT) has MAE helpers, and it is in
this environment, but only as a dependency of torchgeo (the optional ``eo`` extra); marsbench's
own dependencies hold no permissive MAE implementation, so depending on lightly would break
``marsbench pretrain`` on a plain install. The pieces are small (masking is an argsort of
noise; the decoder is a few timm ``Block``s).

Data: a folder of image files (recursive: png, jpg, tif, ... decoded by
`marsbench.sources.images.decode_image`) or the train split of a Mars-Bench dataset (labels
ignored). Every image goes through marsbench's one preprocessing path for the start model
(resize to its input size, grayscale replicated to 3 channels, its mean/std); training adds a
random resized crop (scale 0.2-1, as MAE) and a horizontal flip, drawn in the main process.

Determinism and resumption: the image order is a stream of seeded per-epoch permutations and
every step's crop, flip and mask come from a generator seeded by (seed, step), so a run stopped
at step N and resumed with ``resume=True`` sees exactly the batches the uninterrupted run saw.
Checkpoints (every ``checkpoint_every`` steps and at the end) live in ``<out>/checkpoint/``:
``state.safetensors`` (``encoder.*`` and ``decoder.*`` tensors), ``optimizer.pt`` (the AdamW
state dict, read back with ``weights_only=True``) and ``state.json`` (step, loss history,
settings), each written atomically, ``state.json`` last; the step is also stored in the
safetensors metadata so a mismatched set is refused.

Output: ``<out>/encoder.safetensors``, the encoder alone with timm's own ``VisionTransformer``
keys (``patch_embed.proj.weight``, ``cls_token``, ``pos_embed``, ``blocks.N...``, ``norm``; no
decoder, no head), which `marsbench.models.classifier.load_checkpoint` maps onto a classifier's
backbone: ``marsbench run --model <start model> --weights <out>/encoder.safetensors``. Beside it
``<out>/pretrain.json`` records the start point, the data and its content fingerprint, the
settings, the loss history and the versions.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import nn
from torch.utils.data import Dataset, Sampler

from ..errors import MarsbenchError, OptionError, in_range

ENCODER_FILE = "encoder.safetensors"
RECORD_FILE = "pretrain.json"
CHECKPOINT_DIR = "checkpoint"
STARTS = ("pretrained", "scratch")
ARCH_KEYS = ("img_size", "patch_size", "embed_dim", "depth", "num_heads")
CROP_SCALE = (0.2, 1.0)  # MAE's RandomResizedCrop scale
HISTORY_POINTS = 2000  # the record keeps at most about this many (step, loss) points
MAX_STEPS = 2**31 - 1  # step counts, checkpoint intervals
MAX_WIDTH = 65536  # embedding and decoder widths
MAX_DEPTH = 1024  # layers, heads, loader workers


class PretrainError(MarsbenchError, RuntimeError):
    """A pretraining input or checkpoint that cannot be used; one line, exit 2."""


# -- settings -------------------------------------------------------------------------------------

@dataclass
class PretrainConfig:
    """Everything a pretraining run needs; see the module doc and `pretrain`."""

    data: str
    out: Path
    model: str = "timm:vit_base_patch16_224"
    start: str = "pretrained"  # pretrained | scratch
    arch: dict[str, int] = field(default_factory=dict)  # timm overrides, scratch only
    dataset: bool = False  # read ``data`` as a Mars-Bench dataset even if it is a folder
    root: Path | None = None
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1.5e-4
    weight_decay: float = 0.05
    warmup_steps: int | None = None  # default: 5 % of steps
    mask_ratio: float = 0.75
    decoder_dim: int = 256
    decoder_depth: int = 4
    decoder_heads: int = 8
    norm_pix_loss: bool = True
    augment: bool = True
    precision: str = "auto"
    device: str = "auto"
    workers: int | None = None
    seed: int = 0
    checkpoint_every: int = 500
    resume: bool = False

    def check(self) -> None:
        from ..runs.options import MAX_SIDE
        from ..runs.spec import MAX_BATCH_SIZE, MAX_SEED

        def flag(name: str) -> str:
            return "--" + name.replace("_", "-")

        for name, low, high, example in (
                ("steps", 1, MAX_STEPS, "1000"), ("batch_size", 1, MAX_BATCH_SIZE, "64"),
                ("decoder_dim", 1, MAX_WIDTH, "256"), ("decoder_depth", 1, MAX_DEPTH, "4"),
                ("decoder_heads", 1, MAX_DEPTH, "8"), ("checkpoint_every", 1, MAX_STEPS, "500"),
                ("seed", 0, MAX_SEED, "0"), ("workers", 0, MAX_DEPTH, "4"),
                ("warmup_steps", 0, self.steps, f"{self.steps // 20} (5 % of --steps)")):
            in_range(getattr(self, name), flag(name), low, high, example=example)
        in_range(self.lr, "--lr", 0, 1, low_open=True, example="1.5e-4")
        in_range(self.weight_decay, "--weight-decay", 0, 1e3, example="0.05")
        arch_range = {"img_size": (MAX_SIDE, "224"), "patch_size": (MAX_SIDE, "16"),
                      "embed_dim": (MAX_WIDTH, "768"), "depth": (MAX_DEPTH, "12"),
                      "num_heads": (MAX_DEPTH, "12")}
        for name, value in self.arch.items():
            high, example = arch_range[name]
            in_range(value, flag(name), 1, high, example=example)
        if not 0.0 < self.mask_ratio < 1.0:
            raise OptionError("--mask-ratio must be between 0 and 1 (exclusive)",
                              where="--mask-ratio", value=self.mask_ratio, fix="MAE uses 0.75")
        if self.start not in STARTS:
            from ..errors import did_you_mean

            raise OptionError("unknown start point", where="--from", value=self.start,
                              fix=did_you_mean(self.start, STARTS))
        if self.arch and self.start != "scratch":
            raise OptionError("architecture flags change the model, so its published weights "
                              "no longer fit", where="--" + next(iter(self.arch)).replace("_", "-"),
                              fix="add --from scratch, or drop the architecture flags")
        for flag, of in (("img_size", "patch_size"), ("embed_dim", "num_heads")):
            if flag in self.arch and of in self.arch:
                check_multiple(self.arch[flag], flag, self.arch[of], of)
        if self.decoder_dim % self.decoder_heads:
            raise OptionError("--decoder-dim must be a multiple of --decoder-heads",
                              where="--decoder-dim", value=self.decoder_dim)

    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else self.steps // 20

    def settings(self) -> dict[str, Any]:
        """What must not change across a resume (the model and the objective)."""
        return {"model": self.model, "start": self.start, "arch": dict(sorted(self.arch.items())),
                "mask_ratio": self.mask_ratio, "decoder_dim": self.decoder_dim,
                "decoder_depth": self.decoder_depth, "decoder_heads": self.decoder_heads,
                "norm_pix_loss": self.norm_pix_loss, "batch_size": self.batch_size,
                "seed": self.seed}


# -- the model ------------------------------------------------------------------------------------

def sincos_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sine-cosine position table ``(h*w, dim)`` (MAE ``get_2d_sincos_pos_embed``)."""
    if dim % 4:
        raise OptionError("--decoder-dim must be a multiple of 4 (2-D sin-cos positions)",
                          where="--decoder-dim", value=dim)
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))

    def one(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    return torch.cat([one(xs), one(ys)], dim=1).float()


class MAEDecoder(nn.Module):
    """MAE's light decoder: embed -> (visible tokens + mask tokens, unshuffled) + positions ->
    transformer blocks -> norm -> per-patch pixel prediction."""

    def __init__(self, *, num_patches: int, grid: tuple[int, int], patch_size: int,
                 in_chans: int, encoder_dim: int, dim: int, depth: int, heads: int,
                 encoder_normed: bool) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        self.num_patches = num_patches
        # MOMO's classifier encoders have no final ``norm`` (fc_norm after pooling instead):
        # normalise the latent here then, as MAE's encoder norm would have
        self.input_norm = nn.Identity() if encoder_normed else nn.LayerNorm(encoder_dim, eps=1e-6)
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_2d(dim, grid)[None], persistent=False)
        self.blocks = nn.Sequential(*[
            Block(dim, heads, mlp_ratio=4.0, qkv_bias=True,
                  norm_layer=functools.partial(nn.LayerNorm, eps=1e-6)) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, patch_size * patch_size * in_chans)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor, num_prefix: int
                ) -> torch.Tensor:
        x = self.embed(self.input_norm(latent))
        prefix, visible = x[:, :num_prefix], x[:, num_prefix:]
        b, kept, d = visible.shape
        masked = self.mask_token.to(visible.dtype).expand(b, self.num_patches - kept, d)
        full = torch.cat([visible, masked], dim=1)
        full = torch.gather(full, 1, ids_restore[..., None].expand(-1, -1, d))
        full = full + self.pos_embed.to(full.dtype)
        x = self.blocks(torch.cat([prefix, full], dim=1))
        return self.pred(self.norm(x))[:, num_prefix:]


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, N, p*p*C)`` in MAE's order (row-major patches, then p, p, C)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)


def check_multiple(value: int, flag: str, of: int, of_flag: str) -> None:
    """``--flag value`` must be a multiple of ``--of-flag of`` (one line naming both, with the
    nearest smaller multiple)."""
    if value % of:
        name, other = "--" + flag.replace("_", "-"), "--" + of_flag.replace("_", "-")
        raise OptionError(f"{name} {value} must be a multiple of {other} {of}", where=name,
                          fix=f"e.g. {name} {max(1, value // of) * of}")


class MAE(nn.Module):
    """A timm ``VisionTransformer`` encoder (``.encoder``) with an MAE decoder (``.decoder``)."""

    def __init__(self, encoder: nn.Module, *, mask_ratio: float = 0.75, decoder_dim: int = 256,
                 decoder_depth: int = 4, decoder_heads: int = 8,
                 norm_pix_loss: bool = True) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        if not isinstance(encoder, VisionTransformer):
            raise PretrainError("MAE pretraining needs a timm VisionTransformer",
                                value=type(encoder).__name__,
                                fix="choose a ViT, e.g. timm:vit_base_patch16_224 or a MOMO model")
        embed = encoder.patch_embed
        self.encoder = encoder
        self.patch_size = int(embed.patch_size[0])
        if embed.patch_size[0] != embed.patch_size[1]:
            raise PretrainError("MAE pretraining needs square patches", value=embed.patch_size)
        for side in embed.img_size:  # the model's own patch size, where no flag gave one
            check_multiple(int(side), "img_size", self.patch_size, "patch_size")
        self.grid = tuple(int(g) for g in embed.grid_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.img_size = tuple(int(s) for s in embed.img_size)
        self.in_chans = int(embed.proj.in_channels)
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.decoder = MAEDecoder(
            num_patches=self.num_patches, grid=self.grid, patch_size=self.patch_size,
            in_chans=self.in_chans, encoder_dim=encoder.embed_dim, dim=decoder_dim,
            depth=decoder_depth, heads=decoder_heads,
            encoder_normed=not isinstance(encoder.norm, nn.Identity))

    def encode(self, x: torch.Tensor, noise: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the patches kept by ``noise`` ``(B, N)`` (the lowest ``1 - mask_ratio``):
        (latent with the prefix tokens first, mask ``(B, N)`` 1 = masked, ids_restore)."""
        vit = self.encoder
        input_norm = getattr(vit, "input_norm", None)  # MOMO's instrument normalisation
        if isinstance(input_norm, nn.Module):
            x = input_norm(x)
        tokens = vit.patch_embed(x)
        if tokens.dim() == 4:  # dynamic_img_size ViTs (MOMO) give NHWC
            tokens = tokens.flatten(1, 2)
        b, n, d = tokens.shape
        npref = vit.num_prefix_tokens
        prefix_pos = None
        if vit.pos_embed is not None:
            pos = vit.pos_embed
            if not vit.no_embed_class:
                prefix_pos, pos = pos[:, :npref], pos[:, npref:]
            tokens = tokens + pos
        keep = max(1, int(n * (1 - self.mask_ratio)))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep]
        tokens = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, d))
        mask = torch.ones(b, n, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        prefix = [t.expand(b, -1, -1) for t in (vit.cls_token, getattr(vit, "reg_token", None))
                  if t is not None]
        if prefix:
            head = torch.cat(prefix, dim=1)
            if prefix_pos is not None:
                head = head + prefix_pos
            tokens = torch.cat([head, tokens], dim=1)
        tokens = vit.norm_pre(vit.pos_drop(tokens))
        tokens = vit.norm(vit.blocks(tokens))
        return tokens, mask, ids_restore

    def loss(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        latent, mask, ids_restore = self.encode(images, noise)
        pred = self.decoder(latent, ids_restore, self.encoder.num_prefix_tokens)
        target = patchify(images, self.patch_size).float()
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()


# -- the start model ------------------------------------------------------------------------------

@dataclass
class StartModel:
    encoder: nn.Module
    spec: Any  # ModelSpec
    preprocessing: Any  # Preprocessing
    weights_tag: str
    loads_as: str | None  # the registry name whose classifier this encoder's checkpoint fits


def build_start(model: str, start: str = "pretrained", arch: dict[str, int] | None = None
                ) -> StartModel:
    """The encoder to pretrain: a registry model's backbone (its published weights with
    ``start="pretrained"``, found locally or refused with the way to get them), or a timm ViT
    built from scratch with ``arch`` overrides (``img_size``, ``patch_size``, ``embed_dim``,
    ``depth``, ``num_heads``)."""
    from ..catalog.card import Task
    from ..models.registry import get_spec

    spec = get_spec(model)
    if spec.task != Task.CLASSIFICATION:
        raise PretrainError("MAE pretraining starts from a classification backbone",
                            value=model, fix="choose a ViT such as timm:vit_base_patch16_224 "
                                             "or a MOMO model (momo_vit_b16)")
    prep = spec.preprocessing
    if arch:
        if not model.startswith("timm:"):
            raise OptionError("architecture flags apply to timm:<name> models only",
                              where="--model", value=model,
                              fix="use e.g. --model timm:vit_tiny_patch16_224 --from scratch")
        import timm

        from ..models.builders import _split_timm

        try:
            net = timm.create_model(model[len("timm:"):], pretrained=False, **arch)
        except TypeError as exc:
            raise OptionError("this timm model does not take the architecture flags",
                              where="--model", value=model, fix=str(exc)) from None
        parts = _split_timm(net, "random")
        if "img_size" in arch:
            prep = dataclasses.replace(prep, input_size=int(arch["img_size"]))
    else:
        parts = spec.builder(start == "pretrained")
    encoder = parts.backbone
    embed = getattr(encoder, "patch_embed", None)
    if embed is not None and getattr(embed, "img_size", None) is not None:
        size = int(embed.img_size[0])
        if size != prep.input_size:
            prep = dataclasses.replace(prep, input_size=size)
    return StartModel(encoder, spec, prep, parts.weights_tag, None if arch else spec.name)


# -- data -----------------------------------------------------------------------------------------

@dataclass
class PretrainData:
    """The images to pretrain on, and what they are (for the record)."""

    items: list  # Path (folder images) or int (index into ``dataset``)
    dataset: Any  # a MarsDataset, or None for a folder
    description: dict[str, Any]


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1


def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden files and folders skipped), sorted."""
    from ..sources.images import is_image_file

    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def combined_digest(digests: Sequence[str]) -> str:
    """One fingerprint for a set of images: blake2b-128 over their sorted content digests (so
    neither file names nor order matter, only which bytes are there)."""
    h = hashlib.blake2b(digest_size=16)
    for d in sorted(digests):
        h.update(d.encode() + b"\n")
    return h.hexdigest()


def open_data(data: str | Path, *, dataset: bool = False, root: Path | None = None
              ) -> PretrainData:
    """A folder of images (recursive), or with ``dataset`` (or a name that is no folder) the
    train split of a Mars-Bench dataset; with every image's content digest."""
    from ..sources.content_hash import DIGEST, file_digests

    text = str(data)
    path = Path(text).expanduser()
    if path.is_dir() and not dataset:
        images = find_images(path)
        if not images:
            from ..sources.images import IMAGE_EXTENSIONS

            raise PretrainError("no image files in this folder", where=path,
                                fix=f"give a folder holding {', '.join(sorted(IMAGE_EXTENSIONS))} "
                                    "files (searched recursively), or a dataset with --dataset")
        digests = file_digests(images)
        return PretrainData(images, None, {
            "kind": "folder", "location": str(path.resolve()), "images": len(images),
            "digests": digests, "fingerprint": combined_digest(digests),
            "fingerprint_method": f"{DIGEST} of each file's bytes, sorted, then {DIGEST} of "
                                  "the list"})
    if not path.exists() and _looks_like_path(text):
        raise OptionError("no folder at this path", where=path,
                          fix="give a folder of images or a Mars-Bench dataset name")
    if path.exists() and not path.is_dir():
        raise OptionError("the data path is a file, not a folder", where=path,
                          fix="give the folder holding the images")
    from ..sources.audit import _image_paths
    from ..sources.open import open_dataset

    ds = open_dataset(text, "train", root=root)
    if len(ds) == 0:
        raise PretrainError("the train split has no images", where=text)
    pairs = _image_paths(ds)
    if all(p is not None for _, p in pairs):
        digests = file_digests([p for _, p in pairs])
        method = f"{DIGEST} of each file's bytes, sorted, then {DIGEST} of the list"
    else:  # hub/parquet: hash the decoded pixels, as `datasets audit` does
        digests = []
        for i in range(len(ds)):
            arr = np.ascontiguousarray(_sample_image(ds, i))
            digests.append(hashlib.blake2b(arr.tobytes() + str(arr.shape).encode(),
                                           digest_size=16).hexdigest())
        method = "blake2b-128 of each decoded image's pixels and shape, sorted, then hashed"
    name = getattr(getattr(ds, "card", None), "name", text)
    return PretrainData(list(range(len(ds))), ds, {
        "kind": "dataset", "dataset": name, "split": "train", "location": text,
        "source": getattr(ds, "source", None), "images": len(ds), "labels": "ignored",
        "digests": digests, "fingerprint": combined_digest(digests),
        "fingerprint_method": method})


def _sample_image(ds, index: int) -> np.ndarray:
    sample = ds.sample(index)
    images = getattr(sample, "images", None)
    if images is not None:
        return images[-1] if isinstance(images, (tuple, list)) else images  # pair: "after"
    return sample.image


class ImageSet(Dataset):
    """Pretraining images as ``uint8`` ``(3, S, S)`` tensors through marsbench's preprocessing
    (resize to the model's input size, grayscale replicated to 3 channels)."""

    def __init__(self, data: PretrainData, prep) -> None:
        self.data, self.prep = data, prep

    def __len__(self) -> int:
        return len(self.data.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        from ..models.preprocess import prepare
        from ..sources.images import decode_image

        item = self.data.items[index]
        image = decode_image(item) if isinstance(item, Path) else _sample_image(
            self.data.dataset, item)
        return prepare(image, self.prep)


class IndexStream(Sampler[int]):
    """Positions ``start .. start+count`` of an endless stream of seeded per-epoch permutations
    of ``range(n)``: a resumed run continues the exact order of the uninterrupted one."""

    def __init__(self, n: int, seed: int, start: int, count: int) -> None:
        self.n, self.seed, self.start, self.count = n, seed, start, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        epoch, perm = -1, None
        for pos in range(self.start, self.start + self.count):
            if pos // self.n != epoch:
                epoch = pos // self.n
                perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(
                    self.seed * 1_000_003 + epoch)).tolist()
            yield perm[pos % self.n]


def augment_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """MAE's augmentation on a ``uint8`` batch: random resized crop (scale 0.2-1, aspect 3/4-4/3)
    back to the same size, and a horizontal flip with probability 1/2."""
    b, _, h, w = x.shape
    out = []
    for i in range(b):
        u = torch.rand(4, generator=gen).tolist()
        area = h * w * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * u[0])
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[1])
        ch = min(h, max(1, round(math.sqrt(area / ratio))))
        cw = min(w, max(1, round(math.sqrt(area * ratio))))
        top = int((h - ch) * u[2])
        left = int((w - cw) * u[3])
        img = TF.resized_crop(x[i], top, left, ch, cw, [h, w], antialias=True)
        if torch.rand(1, generator=gen).item() < 0.5:
            img = TF.horizontal_flip(img)
        out.append(img)
    return torch.stack(out)


# -- checkpoints ----------------------------------------------------------------------------------

def _tensors(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_encoder(encoder: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """The encoder's state dict (timm keys) as safetensors, atomically."""
    from safetensors.torch import save_file

    from ..io import atomic_path

    with atomic_path(path) as tmp:
        save_file(_tensors(encoder.state_dict()), str(tmp), metadata=metadata)
    return path


def save_checkpoint(folder: Path, mae: MAE, opt: torch.optim.Optimizer, state: dict) -> None:
    """``state.safetensors`` + ``optimizer.pt`` + ``state.json`` (last: the commit mark)."""
    from safetensors.torch import save_file

    from ..io import atomic_path, atomic_write_text

    step = str(state["step"])
    with atomic_path(folder / "state.safetensors") as tmp:
        save_file({**_tensors(mae.encoder.state_dict(), "encoder."),
                   **_tensors(mae.decoder.state_dict(), "decoder.")}, str(tmp),
                  metadata={"step": step, "format": "marsbench-mae-v1"})
    with atomic_path(folder / "optimizer.pt") as tmp:
        torch.save({"optimizer": opt.state_dict(), "step": state["step"]}, tmp)
    atomic_write_text(folder / "state.json", json.dumps(state, indent=1) + "\n")


def load_checkpoint(folder: Path, mae: MAE, opt: torch.optim.Optimizer | None = None) -> dict:
    """Restore ``mae`` (and ``opt``) from `save_checkpoint`'s folder; returns its state.json."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    state_file = folder / "state.json"
    if not state_file.is_file():
        raise PretrainError("no checkpoint to resume from", where=folder,
                            fix="run without --resume first (checkpoints are written every "
                                "--checkpoint-every steps)")
    state = json.loads(state_file.read_text())
    tensors_file = folder / "state.safetensors"
    try:
        with safe_open(str(tensors_file), "pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(tensors_file))
        optim = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:  # safetensors raises its own errors too
        raise PretrainError("the checkpoint cannot be read", where=folder,
                            value=f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
                            fix="remove the folder and start again") from None
    step = state.get("step")
    if meta.get("step") != str(step) or optim.get("step") != step:
        raise PretrainError("the checkpoint files are from different steps", where=folder,
                            value=f"state.json {step}, tensors {meta.get('step')}, optimizer "
                                  f"{optim.get('step')}", fix="remove the folder and start again")
    for name, module in (("encoder.", mae.encoder), ("decoder.", mae.decoder)):
        part = {k[len(name):]: v for k, v in tensors.items() if k.startswith(name)}
        try:
            module.load_state_dict(part)
        except RuntimeError as exc:
            raise PretrainError("the checkpoint does not fit this model", where=folder,
                                value=str(exc).splitlines()[0],
                                fix="resume with the same --model and architecture flags") from None
    if opt is not None:
        opt.load_state_dict(optim["optimizer"])
    return state


# -- the run --------------------------------------------------------------------------------------

@dataclass
class PretrainResult:
    out: Path
    encoder_path: Path
    record_path: Path
    step: int
    losses: list[float]  # this invocation's per-step losses
    record: dict


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to 0 at ``total`` (per step)."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    span = max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def _versions() -> dict[str, str]:
    import safetensors
    import timm

    from .. import __version__

    return {"marsbench": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def _thin(history: list[list[float]]) -> list[list[float]]:
    """At most about `HISTORY_POINTS` (step, loss) pairs: means over equal blocks of steps."""
    if len(history) <= HISTORY_POINTS:
        return history
    block = math.ceil(len(history) / HISTORY_POINTS)
    return [[history[i + len(history[i:i + block]) - 1][0],
             round(sum(h[1] for h in history[i:i + block]) / len(history[i:i + block]), 6)]
            for i in range(0, len(history), block)]


Progress = Callable[[int, int, float, float], None]  # (step, total, loss, lr)


def pretrain(cfg: PretrainConfig, progress: Progress | None = None,
             data: PretrainData | None = None, extra: dict | None = None) -> PretrainResult:
    """Run (or resume) MAE pretraining as ``cfg`` says; see the module doc. ``extra`` is
    added to the record (e.g. the contamination check)."""
    from ..io import atomic_write_text
    from .engine import Precision, Stepper, make_loader, to_device
    from .run import pick_device

    cfg.check()
    device = pick_device(cfg.device)
    precision = Precision.resolve(cfg.precision, device)
    out = Path(cfg.out).expanduser()
    ckpt = out / CHECKPOINT_DIR
    if not cfg.resume and (ckpt / "state.json").is_file():
        raise PretrainError("this output folder holds a pretraining checkpoint already",
                            where=out, fix="add --resume to continue it, or choose another --out")
    data = data or open_data(cfg.data, dataset=cfg.dataset, root=cfg.root)
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left alone
        torch.manual_seed(cfg.seed)  # the random init (a scratch encoder, the decoder)
        start_model = build_start(cfg.model, cfg.start, cfg.arch)
        mae = MAE(start_model.encoder, mask_ratio=cfg.mask_ratio, decoder_dim=cfg.decoder_dim,
                  decoder_depth=cfg.decoder_depth, decoder_heads=cfg.decoder_heads,
                  norm_pix_loss=cfg.norm_pix_loss)
    prep = start_model.preprocessing
    if mae.img_size != (prep.input_size, prep.input_size):
        raise PretrainError("the model's patch grid does not match its input size",
                            value=f"{mae.img_size} vs {prep.input_size}")
    mae = mae.to(device)
    # MAE: no weight decay on biases, norms and tokens
    decay = [p for n, p in mae.named_parameters() if p.ndim >= 2 and "token" not in n
             and "pos_embed" not in n]
    no_decay = [p for n, p in mae.named_parameters() if not (p.ndim >= 2 and "token" not in n
                                                               and "pos_embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95))
    history: list[list[float]] = []
    step, resumed_from = 0, None
    if cfg.resume:
        state = load_checkpoint(ckpt, mae, opt)
        if state.get("settings") != cfg.settings():
            old, new = state.get("settings", {}), cfg.settings()
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise PretrainError("--resume with other settings than the checkpoint's",
                                where=ckpt, value=", ".join(f"{k}: {old.get(k)} -> {new.get(k)}"
                                                            for k in diff),
                                fix="resume with the checkpoint's settings, or start a new --out")
        if state.get("data_fingerprint") != data.description["fingerprint"]:
            raise PretrainError("--resume on other images than the checkpoint's", where=ckpt,
                                fix="resume with the same data, or start a new --out")
        step = resumed_from = int(state["step"])
        history = state.get("history", [])
        if step >= cfg.steps:
            raise PretrainError(f"the checkpoint is at step {step} already", where=ckpt,
                                value=f"--steps {cfg.steps}",
                                fix=f"give --steps above {step} to continue it")
    images = ImageSet(data, prep)
    remaining = cfg.steps - step
    loader = make_loader(images, batch_size=cfg.batch_size, device=device, workers=cfg.workers,
                         sampler=IndexStream(len(images), cfg.seed, step * cfg.batch_size,
                                             remaining * cfg.batch_size))
    stepper = Stepper(precision)
    mean = torch.tensor(prep.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(prep.std, device=device).view(1, -1, 1, 1)
    losses: list[float] = []
    base_state = {"settings": cfg.settings(), "data_fingerprint": data.description["fingerprint"],
                  "total_steps": cfg.steps, "lr": cfg.lr, "precision": precision.name}
    mae.train()
    t0 = time.perf_counter()
    for batch in loader:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        if cfg.augment:
            batch = augment_batch(batch, gen)
        noise = torch.rand(batch.shape[0], mae.num_patches, generator=gen)
        x = (to_device(batch, device).float() / 255.0 - mean) / std
        noise = noise.to(device)
        lr = lr_at(step, cfg.steps, cfg.warmup(), cfg.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = stepper.step(opt, lambda: mae.loss(x, noise))
        if not math.isfinite(loss):
            raise PretrainError(f"the loss became {loss} at step {step + 1}",
                                fix="lower --lr, or use --precision fp32")
        step += 1
        losses.append(loss)
        history.append([step, round(loss, 6)])
        if progress is not None:
            progress(step, cfg.steps, loss, lr)
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            save_checkpoint(ckpt, mae, opt, {**base_state, "step": step, "history": history})
    train_s = time.perf_counter() - t0
    save_checkpoint(ckpt, mae, opt, {**base_state, "step": step, "history": history})
    encoder_path = save_encoder(mae.encoder, out / ENCODER_FILE,
                                metadata={"format": "timm-vit-encoder", "step": str(step),
                                          "start_model": cfg.model})
    from ..models.weights import file_sha256

    desc = {k: v for k, v in data.description.items() if k != "digests"}
    record = {
        "kind": "marsbench-pretrain",
        "objective": {"name": "mae", "reference": "He et al. 2022, Masked Autoencoders Are "
                                                  "Scalable Vision Learners",
                      "mask_ratio": cfg.mask_ratio, "decoder_dim": cfg.decoder_dim,
                      "decoder_depth": cfg.decoder_depth, "decoder_heads": cfg.decoder_heads,
                      "norm_pix_loss": cfg.norm_pix_loss, "loss": "MSE on masked patches",
                      "augment": "random resized crop 0.2-1 + horizontal flip"
                                 if cfg.augment else "none"},
        "start": {"model": cfg.model, "from": cfg.start, "weights": start_model.weights_tag,
                  "arch_overrides": dict(cfg.arch)},
        "data": desc,
        "preprocessing": prep.to_dict(),
        "steps": step, "resumed_from": resumed_from, "batch_size": cfg.batch_size,
        "optimizer": {"name": "adamw", "lr": cfg.lr, "betas": [0.9, 0.95],
                      "weight_decay": cfg.weight_decay, "schedule": "linear warmup + cosine",
                      "warmup_steps": cfg.warmup()},
        "precision": precision.name, "device": str(device), "seed": cfg.seed,
        "loss_first": history[0][1] if history else None,
        "loss_last": history[-1][1] if history else None,
        "loss_history": _thin(history),
        "train_seconds_this_invocation": round(train_s, 3),
        "encoder": {"path": str(encoder_path), "sha256": file_sha256(encoder_path),
                    "keys": "timm VisionTransformer state dict (no decoder, no head)",
                    "loads_as": start_model.loads_as,
                    "use": (f"marsbench run --model {start_model.loads_as} --weights "
                            f"{encoder_path} --regime fine_tuning ..." if start_model.loads_as
                            else "the architecture flags make a ViT no registry name builds: "
                                 "load it with marsbench.models.classifier.load_checkpoint into "
                                 "a classifier of that architecture"),
                    "file_model_names": "not supported: the model registry has no file:<path> "
                                        "names; use --weights PATH with the start model"},
        "checkpoint": str(ckpt),
        "versions": _versions(),
        **(extra or {}),
    }
    record_path = out / RECORD_FILE
    atomic_write_text(record_path, json.dumps(record, indent=1) + "\n")
    return PretrainResult(out, encoder_path, record_path, step, losses, record)


# -- contamination check --------------------------------------------------------------------------

def contamination(data: PretrainData, datasets: Sequence[str], *, root: Path | None = None,
                  near_threshold: int = 5) -> list[dict[str, Any]]:
    """Pretraining images found in any split of ``datasets`` (`marsbench.sources.audit`): one
    row per (dataset, split) with ``overlap`` (content digest equal: folder datasets compare file
    bytes, hub copies decoded pixels) and ``near`` (the split's images within
    ``near_threshold`` bits of a pretraining image's 64-bit difference hash, the audit's
    perceptual hash: re-encoded, rescaled or slightly edited copies), with up to 5 examples."""
    from ..sources.audit import collect, dhash

    ours = set(data.description["digests"])
    our_hashes = np.array([dhash(item if data.dataset is None else
                                 _sample_image(data.dataset, item)) for item in data.items],
                          dtype=np.uint64)
    rows = []
    for name in datasets:
        splits, info = collect(name, root=root)
        for split, images in splits.items():
            hits = [im for im in images if im.digest in ours]
            near = [im for im in images if im.digest not in ours
                    and _nearest_bits(im.dhash, our_hashes) <= near_threshold]
            rows.append({"dataset": info["dataset"], "split": split, "images": len(images),
                         "overlap": len({im.digest for im in hits}),
                         "examples": [im.path or im.name for im in hits[:5]],
                         "near": len(near), "near_threshold": near_threshold,
                         "near_examples": [im.path or im.name for im in near[:5]]})
    return rows


def _nearest_bits(value: int, hashes: np.ndarray) -> int:
    """The smallest Hamming distance from ``value`` to any of ``hashes`` (64 bits; 64 if none)."""
    if hashes.size == 0:
        return 64
    return int(np.bitwise_count(hashes ^ np.uint64(value)).min())
