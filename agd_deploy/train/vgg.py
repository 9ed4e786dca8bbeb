"""A perceptual/style loss from a user-supplied VGG19 state_dict (no downloads).

`VGG19Features` is laid out like torchvision's `vgg19().features` (same Sequential indices), so its
`features.N.weight` keys load as they are. The perceptual term compares conv5_4 features before the activation
(ESRGAN); the style term compares Gram matrices of relu1_1..relu5_1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AgdError

_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
PERCEPTUAL_LAYER = 34  # conv5_4, before its ReLU
STYLE_LAYERS = (1, 6, 11, 20, 29)  # relu1_1 .. relu5_1
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class VGG19Features(nn.Module):
    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
                c = v
        self.features = nn.Sequential(*layers)

    def taps(self, x: torch.Tensor, wanted: set[int]) -> dict[int, torch.Tensor]:
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[i] = x
            if i >= max(wanted):
                break
        return out


def load_vgg19(path: str) -> VGG19Features:
    from ..teachers.checkpoints import read_state_dict

    sd = read_state_dict(path)
    sd = {k if k.startswith("features.") else f"features.{k}": v for k, v in sd.items()
          if k.startswith("features.") or k.split(".")[0].isdigit()}
    net = VGG19Features()
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise AgdError(f"{path}: not a torchvision-layout VGG19 state_dict ({str(e).splitlines()[0][:150]})") from None
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def _gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


class PerceptualLoss(nn.Module):
    """weight_p * L1(conv5_4) + weight_s * L1(Gram of relu1_1..relu5_1); inputs in [0,1] RGB."""

    def __init__(self, vgg: VGG19Features, perceptual_weight: float = 1.0, style_weight: float = 0.0):
        super().__init__()
        self.vgg, self.pw, self.sw = vgg, perceptual_weight, style_weight

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        wanted = ({PERCEPTUAL_LAYER} if self.pw else set()) | (set(STYLE_LAYERS) if self.sw else set())
        if not wanted:
            return x.new_zeros(())
        fx = self.vgg.taps((x - _MEAN) / _STD, wanted)
        with torch.no_grad():
            ft = self.vgg.taps((target - _MEAN) / _STD, wanted)
        loss = x.new_zeros(())
        if self.pw:
            loss = loss + self.pw * F.l1_loss(fx[PERCEPTUAL_LAYER], ft[PERCEPTUAL_LAYER])
        if self.sw:
            loss = loss + self.sw * sum(F.l1_loss(_gram(fx[i]), _gram(ft[i])) for i in STYLE_LAYERS)
        return loss
