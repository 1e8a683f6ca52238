"""Band adaptation: how a 1- or 3-band Mars image becomes the bands a model was pre-trained on.

Earth-observation models expect Sentinel-2 (12 bands), HLS (6 bands) or RGB inputs; Mars images
have 1 band (grayscale) or 3 (RGB rover cameras). A `BandAdaptation` is a named, recorded
strategy applied in the one preprocessing path (`marsbench.models.preprocess`):

- ``replicate``: a 1-band image is copied into every expected band; a 3-band image puts its red,
  green and blue into the model's red, green and blue bands and its luminance into every other.
- ``visible``: the image goes into the visible (red, green, blue) bands only; every other band
  holds the pre-training mean of that band (a neutral, "nothing observed" value).
- ``adapter``: a learned 1x1 convolution from the image's 3 channels (a grayscale image copied into
  3) to the expected bands, initialised to the ``replicate`` map and trained with the head, also
  in ``feature_extraction`` (it is new, so it sits outside the frozen backbone).

All three are per-pixel linear maps ``model_band = W @ image_bands + b`` on values scaled to
[0, 1] (``uint8 / 255``), followed by the model's per-band mean/std. Any other band count is an
error (`BandMismatchError`), never a silent reshape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

import torch
from torch import nn

from ..errors import MarsbenchError

# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale.
LUMINANCE = (0.299, 0.587, 0.114)
SOURCE_BANDS = (1, 3)  # what a Mars image may have: grayscale or RGB


class BandStrategy(StrEnum):
    REPLICATE = "replicate"
    VISIBLE = "visible"
    ADAPTER = "adapter"


BAND_STRATEGIES = tuple(s.value for s in BandStrategy)


class BandMismatchError(MarsbenchError, ValueError):
    """An image whose bands a model cannot take under the chosen strategy."""


@dataclass(frozen=True)
class Band:
    """One band a model was pre-trained on. ``fill`` is the band's pre-training mean expressed
    in the model's [0, 1] input units (what ``visible`` writes into bands the image lacks)."""

    name: str
    common_name: str
    wavelength_nm: float | None
    fill: float


@dataclass(frozen=True)
class BandSet:
    """The bands a model was pre-trained on, in input order, and what their values mean."""

    sensor: str
    bands: tuple[Band, ...]
    value_range: str  # how raw sensor values became the model's input, in words
    visible: tuple[int, int, int]  # indices of the red, green and blue bands

    def __post_init__(self) -> None:
        if any(not 0 <= i < len(self.bands) for i in self.visible):
            raise ValueError(f"{self.sensor}: visible band indices {self.visible} out of range")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bands)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BandAdaptation:
    """A strategy bound to a model's bands; part of `Preprocessing` (so of cache keys and run
    records). ``mean``/``std`` stay in `Preprocessing`: they are the model's own normalisation."""

    strategy: str
    model_bands: tuple[str, ...]
    visible: tuple[int, int, int]
    fill: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.strategy not in BAND_STRATEGIES:
            raise ValueError(f"unknown band strategy {self.strategy!r}; use one of "
                             f"{', '.join(BAND_STRATEGIES)}")
        if len(self.fill) != len(self.model_bands):
            raise ValueError(f"fill has {len(self.fill)} values for {len(self.model_bands)} bands")

    @classmethod
    def for_bands(cls, bands: BandSet, strategy: str) -> BandAdaptation:
        return cls(str(BandStrategy(strategy)), bands.names, bands.visible,
                   tuple(b.fill for b in bands.bands))

    @property
    def num_bands(self) -> int:
        return len(self.model_bands)

    def check_source(self, x: torch.Tensor) -> torch.Tensor:
        """The image ``(..., C, H, W)`` as this strategy consumes it: C in (1, 3) is kept (the
        adapter takes 3: a grayscale image is copied into 3); anything else is an error."""
        channels = x.shape[-3]
        if channels not in SOURCE_BANDS:
            raise BandMismatchError(
                f"band strategy {self.strategy!r} maps 1-band (grayscale) or 3-band (RGB) images "
                f"to the model's {self.num_bands} bands ({', '.join(self.model_bands)}), but the "
                f"image has {channels} bands; select 1 or 3 of them before preprocessing")
        if self.strategy == BandStrategy.ADAPTER and channels == 1:
            return x.expand(*x.shape[:-3], 3, *x.shape[-2:])
        return x

    def linear_map(self, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W (bands, channels), b (bands,))`` mapping image values in [0, 1] to the model's
        bands in [0, 1] for the fixed strategies (the adapter starts from ``replicate``)."""
        if channels not in SOURCE_BANDS:
            raise BandMismatchError(f"no band map from {channels} image bands; use 1 or 3")
        weight = torch.zeros(self.num_bands, channels)
        bias = torch.zeros(self.num_bands)
        fill_rest = self.strategy == BandStrategy.VISIBLE
        for k in range(self.num_bands):
            if k in self.visible:
                colour = self.visible.index(k)  # 0 red, 1 green, 2 blue
                weight[k, 0 if channels == 1 else colour] = 1.0
            elif fill_rest:
                bias[k] = self.fill[k]
            else:  # replicate (and the adapter's starting point): the image's intensity
                weight[k] = torch.tensor([1.0]) if channels == 1 else torch.tensor(LUMINANCE)
        return weight, bias

    def normalize(self, u: torch.Tensor, mean: tuple[float, ...],
                  std: tuple[float, ...]) -> torch.Tensor:
        """Image values ``u`` in [0, 1] ``(..., C, H, W)`` -> the model input.

        ``replicate``/``visible``: the model's bands ``(..., bands, H, W)``, normalised with the
        model's ``mean``/``std``. ``adapter``: the 3 image channels unchanged (the model's
        `InputAdapter` maps them to normalised bands)."""
        u = self.check_source(u)
        if self.strategy == BandStrategy.ADAPTER:
            return u
        weight, bias = (t.to(u.device) for t in self.linear_map(u.shape[-3]))
        mapped = torch.einsum("kc,...chw->...khw", weight, u) + bias.view(-1, 1, 1)
        m = torch.tensor(mean, dtype=u.dtype, device=u.device).view(-1, 1, 1)
        s = torch.tensor(std, dtype=u.dtype, device=u.device).view(-1, 1, 1)
        return (mapped - m) / s

    def to_dict(self) -> dict:
        return asdict(self)


class InputAdapter(nn.Module):
    """The learned 1x1 convolution of the ``adapter`` strategy: 3 image channels in [0, 1] ->
    the model's normalised bands. Initialised so that it reproduces ``replicate`` exactly."""

    def __init__(self, adaptation: BandAdaptation, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, adaptation.num_bands, kernel_size=1)
        weight, bias = BandAdaptation(BandStrategy.REPLICATE, adaptation.model_bands,
                                      adaptation.visible, adaptation.fill).linear_map(3)
        m, s = torch.tensor(mean), torch.tensor(std)
        with torch.no_grad():
            self.proj.weight.copy_((weight / s[:, None]).view_as(self.proj.weight))
            self.proj.bias.copy_((bias - m) / s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class AdaptedBackbone(nn.Module):
    """``input_adapter`` (trainable in every regime) followed by ``encoder`` (image -> (B, D)).

    The training regime freezes a classifier's ``.backbone`` with ``requires_grad_(False)`` and
    ``eval()``; here that freezes the encoder only: the adapter is new, randomly placed weights
    the run must learn, so it stays trainable, and its parameters are listed by
    `trainable_adapter_parameters` for the optimiser. (A 1x1 convolution has no train/eval
    behaviour, so eval mode does not matter for it.)"""

    def __init__(self, input_adapter: InputAdapter, encoder: nn.Module) -> None:
        super().__init__()
        self.input_adapter = input_adapter
        self.encoder = encoder

    def requires_grad_(self, requires_grad: bool = True) -> AdaptedBackbone:
        self.encoder.requires_grad_(requires_grad)
        self.input_adapter.requires_grad_(True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.input_adapter(x))


def trainable_adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The input-adapter parameters in ``model`` (empty unless band strategy ``adapter``); the
    feature-extraction trainer must optimise them together with the head."""
    return [p for m in model.modules() if isinstance(m, InputAdapter) for p in m.parameters()]
