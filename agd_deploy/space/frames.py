"""The SR and ST frames: where the searched ops sit, which widths are searchable, and the fixed parts.

A frame is described once, as a list of *slots* (block sites). Everything else derives from that list:
the derived net, the blocks a latency table measures (`blocks`), every distinct block of the space
(`all_blocks`) and the expected cost during search. So the table, the predictor and the built net cannot
drift apart."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from .ops import OPS, SR_FLAVOUR, ST_FLAVOUR, EXPAND, Flavour, make_op, width_choices

# Bump when the forward logic of an op or a fixed block changes, and set the changed frames' `frame_version`
# to it: it changes their space_hash (a frame left at its old version keeps its hash and its tables).
# 2: the SR frame adds a global bilinear x4 skip (the net learns a residual over bilinear upsampling).
# 3: the ST frame adds a global identity skip (output = input + last 7x7 conv, no tanh; a fresh net starts at
#    its input); its upsamplers become nearest x2 + 3x3 conv, its 7x7 convs zero-padded, and it drops
#    InstanceNorm (int8 speed: benchmarks/results/st_int8_ops.md); the last upsampler adds the stem's features
#    (a full-resolution path; its width is the stem's).
FRAME_VERSION = 3

Width = str | int  # a width variable's name, or a fixed channel count


@dataclass(frozen=True)
class Slot:
    """One block site of a frame. `position` indexes arch.ops for searched ops; None for fixed blocks."""

    kind: str
    cin: Width
    cout: Width
    h: int
    w: int
    position: int | None = None
    stride: int = 1
    fixed_op: str = ""


@dataclass(frozen=True)
class BlockSpec:
    """A slot with its op and widths resolved: what a latency table entry measures."""

    kind: str
    op: str
    cin: int
    cout: int
    h: int
    w: int
    stride: int = 1

    @property
    def key(self) -> str:
        k = f"{self.kind}:{self.op}:cin{self.cin}:cout{self.cout}:h{self.h}:w{self.w}"
        return k + (f":s{self.stride}" if self.stride != 1 else "")

    @classmethod
    def from_key(cls, key: str) -> "BlockSpec":
        parts = key.split(":")
        kind, op = parts[0], parts[1]
        vals = {}
        for p in parts[2:]:
            name = p.rstrip("0123456789")
            vals[name] = int(p[len(name):])
        return cls(kind, op, vals["cin"], vals["cout"], vals["h"], vals["w"], vals.get("s", 1))


# ---------------------------------------------------------------------------------------------- fixed blocks

class CellSum(nn.Module):
    """SR cell output 0.2*f(x) + x. Alone (as a table measures it) it takes one tensor: 0.2*x + x."""

    def forward(self, x: torch.Tensor, f: torch.Tensor | None = None) -> torch.Tensor:
        return x + 0.2 * (x if f is None else f)


class BodyConv(nn.Module):
    """Trunk conv plus the global residual: conv(y) + feat. Alone it adds its own input."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, y: torch.Tensor, feat: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(y) + (y if feat is None else feat)


class UpConv(nn.Module):
    """Nearest x2 upsampling, 3x3 conv, LeakyReLU(0.2) (ESRGAN's upsampler)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(F.interpolate(x, scale_factor=2, mode="nearest")))


class BilinearSkip(nn.Module):
    """SR global skip: bilinear x4 of the LR input plus the net's output, so a student starts at (and is
    trained as a residual over) bilinear quality. Bilinear, not bicubic: TFLite and CoreML have no bicubic
    resize. Alone (as a table measures it) it takes the LR input only and adds the upsampled image to itself."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
        u = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return u + (u if r is None else r)


class IdentitySkip(nn.Module):
    """ST global skip: the input plus the net's output, so a same-resolution student starts at (and is trained
    as a residual over) its input, the do-nothing baseline of a restoration teacher. No clamp, as in the SR
    frame: outputs are clipped to the value range where images are written or scored. Alone (as a table
    measures it) it adds its input to itself."""

    def forward(self, x: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
        return x + (x if r is None else r)


class UpNearestST(nn.Module):
    """ST upsampler: nearest x2, 3x3 conv, ReLU. Not a transposed conv: ONNX Runtime and LiteRT ran
    ConvTranspose in float in their int8 artifacts, see benchmarks/results/st_int8_ops.md."""

    def __init__(self, cin: int, cout: int, fl: Flavour):
        super().__init__()
        self.conv = fl.conv(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UpNearestAddST(UpNearestST):
    """The last ST upsampler plus the stem's features (a U-Net long skip at full resolution): the only
    full-resolution path of a frame that runs its searched ops at 1/4 size. Without it a student distilled
    from a JPEG-artefact teacher learned nothing (its output was its input: benchmarks/results/st_distill.md).
    Alone (as a table measures it) it adds its output to itself."""

    takes_feat = True

    def forward(self, x: torch.Tensor, feat: torch.Tensor | None = None) -> torch.Tensor:
        y = super().forward(x)
        return y + (y if feat is None else feat)


def _conv7(cin: int, cout: int, fl: Flavour, last: bool = False) -> nn.Sequential:
    """Zero-padded 7x7 conv; the stem: + [norm] + act; `last`: the bare conv, with a small init (0.01x in a
    kaiming flavour, whose activations keep their scale; else 0.1x) so that a fresh net (derived or supernet)
    starts near the identity skip's output. Zero padding, not CycleGAN's reflection: Pad stayed float in ORT's
    int8 and LiteRT's MIRROR_PAD made the int8 7x7 block ~2.4x slower (benchmarks/results/st_int8_ops.md)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 7, padding=3)]
    if last:
        with torch.no_grad():
            layers[0].weight.mul_(0.01 if fl.kaiming else 0.1)
            layers[0].bias.zero_()
    else:
        if fl.kaiming:
            nn.init.kaiming_normal_(layers[0].weight, nonlinearity="relu")
            nn.init.zeros_(layers[0].bias)
        if fl.norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        layers.append(fl.act_layer())
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------- spaces

class Space:
    """A search space: a frame, its op set and its searchable widths."""

    name: str
    scale: int
    value_range: tuple[float, float]
    flavour: Flavour
    n_positions: int
    frame_version: int = FRAME_VERSION  # the FRAME_VERSION this frame last changed at (part of space_hash)
    default_input: tuple[int, int, int, int] = (1, 3, 64, 64)
    min_hw: int = 8
    hw_multiple: int = 1

    def __init__(self) -> None:
        self.ops = OPS

    # -- description -----------------------------------------------------------------------------
    @property
    def width_vars(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def slots(self, h: int, w: int) -> list[Slot]:
        raise NotImplementedError

    def build_block(self, spec: BlockSpec) -> nn.Module:
        """The module a table entry measures; the derived net is made of exactly these."""
        if spec.kind in ("cell", "pos"):
            return make_op(spec.op, spec.cin, spec.cout, self.flavour)
        return self._build_fixed(spec)

    def _build_fixed(self, spec: BlockSpec) -> nn.Module:
        raise NotImplementedError

    def describe(self) -> dict:
        """Everything that defines the space, for hashing: slots, width choices and a sample of each block."""
        h, w = self.default_input[2:]
        slots = [s.__dict__ for s in self.slots(h, w)]
        samples = {}
        for spec in self._sample_specs(h, w):
            samples[spec.key] = repr(self.build_block(spec))
        return {"frame_version": self.frame_version, "name": self.name, "scale": self.scale, "ops": list(self.ops),
                "expand": EXPAND, "flavour": {k: v for k, v in self.flavour.__dict__.items() if k != "kaiming"}, "width_vars": self.width_vars,
                "slots": slots, "samples": samples}

    def _sample_specs(self, h: int, w: int) -> list[BlockSpec]:
        specs, seen = [], set()
        for slot in self.slots(h, w):
            key = (slot.kind, slot.fixed_op)
            if key in seen:
                continue
            seen.add(key)
            a, b = self._choices(slot.cin)[0], self._choices(slot.cout)[-1]
            ops = self.ops if slot.position is not None else (slot.fixed_op,)
            specs += [BlockSpec(slot.kind, op, a, b, slot.h, slot.w, slot.stride) for op in ops]
            if slot.position is not None:  # equal widths take the identity paths
                specs += [BlockSpec(slot.kind, op, b, b, slot.h, slot.w, slot.stride) for op in ops]
        return specs

    @cached_property
    def space_hash(self) -> str:
        blob = json.dumps(self.describe(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def _choices(self, width: Width) -> tuple[int, ...]:
        return (width,) if isinstance(width, int) else self.width_vars[width]

    # -- arch-level helpers -----------------------------------------------------------------------
    def resolve(self, slot: Slot, ops: list[str], widths: dict[str, int]) -> BlockSpec:
        op = ops[slot.position] if slot.position is not None else slot.fixed_op
        cin = slot.cin if isinstance(slot.cin, int) else widths[slot.cin]
        cout = slot.cout if isinstance(slot.cout, int) else widths[slot.cout]
        return BlockSpec(slot.kind, op, cin, cout, slot.h, slot.w, slot.stride)

    def all_blocks(self, h: int, w: int) -> list[BlockSpec]:
        """Every distinct block any arch of this space can contain at this input size (what a LUT holds)."""
        out: dict[str, BlockSpec] = {}
        for slot in self.slots(h, w):
            ops = self.ops if slot.position is not None else (slot.fixed_op,)
            for op in ops:
                for cin in self._choices(slot.cin):
                    for cout in self._choices(slot.cout):
                        spec = BlockSpec(slot.kind, op, cin, cout, slot.h, slot.w, slot.stride)
                        out.setdefault(spec.key, spec)
        return list(out.values())

    def check_input(self, shape: tuple[int, ...] | list[int]) -> tuple[int, int, int, int]:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4 or shape[0] < 1 or shape[1] != 3:
            raise ValueError(f"input shape must be Nx3xHxW, got {'x'.join(map(str, shape))}")
        h, w = shape[2:]
        if h < self.min_hw or w < self.min_hw or h % self.hw_multiple or w % self.hw_multiple:
            raise ValueError(f"the {self.name} space needs H and W >= {self.min_hw} and multiples of "
                             f"{self.hw_multiple}, got {h}x{w}")
        return shape  # type: ignore[return-value]


class SRSpace(Space):
    """ESRGAN-like x4 SR frame: conv_first 3->64; 5 cells x 5 positions (0.2*f(x)+x); trunk conv + global
    residual; two (nearest x2 + conv + LReLU); HR conv + LReLU; conv_last; + bilinear x4 of the input (global
    skip, measured at the LR size). Upsampler and HR widths are searched."""

    name = "sr"
    scale = 4
    value_range = (0.0, 1.0)
    flavour = SR_FLAVOUR
    frame_version = 2
    trunk = 64
    n_cells = 5
    cell_len = 5
    n_positions = 25

    @property
    def width_vars(self) -> dict[str, tuple[int, ...]]:
        w = width_choices(self.trunk)
        names = [f"c{c}p{p}" for c in range(self.n_cells) for p in range(self.cell_len - 1)]
        return {**{n: w for n in names}, "up1": w, "up2": w, "hr": w}

    def slots(self, h: int, w: int) -> list[Slot]:
        t = self.trunk
        s = [Slot("stem", 3, t, h, w, fixed_op="conv3x3")]
        for c in range(self.n_cells):
            for p in range(self.cell_len):
                cin = t if p == 0 else f"c{c}p{p - 1}"
                cout = t if p == self.cell_len - 1 else f"c{c}p{p}"
                s.append(Slot("cell", cin, cout, h, w, position=c * self.cell_len + p))
            s.append(Slot("cellsum", t, t, h, w, fixed_op="add"))
        s += [Slot("body", t, t, h, w, fixed_op="conv3x3add"),
              Slot("up1", t, "up1", h, w, fixed_op="up2conv3x3"),
              Slot("up2", "up1", "up2", 2 * h, 2 * w, fixed_op="up2conv3x3"),
              Slot("hr", "up2", "hr", 4 * h, 4 * w, fixed_op="conv3x3"),
              Slot("last", "hr", 3, 4 * h, 4 * w, fixed_op="conv3x3"),
              Slot("skip", 3, 3, h, w, fixed_op="bilinear4add")]
        return s

    def _build_fixed(self, spec: BlockSpec) -> nn.Module:
        if spec.kind == "stem":
            return nn.Conv2d(spec.cin, spec.cout, 3, 1, 1)
        if spec.kind == "last":  # small init: a fresh net (derived or supernet) starts at the skip's bilinear output
            conv = nn.Conv2d(spec.cin, spec.cout, 3, 1, 1)
            with torch.no_grad():
                conv.weight.mul_(0.1)
                conv.bias.zero_()
            return conv
        if spec.kind == "cellsum":
            return CellSum()
        if spec.kind == "body":
            return BodyConv(spec.cin)
        if spec.kind in ("up1", "up2"):
            return UpConv(spec.cin, spec.cout)
        if spec.kind == "hr":
            return nn.Sequential(nn.Conv2d(spec.cin, spec.cout, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True))
        if spec.kind == "skip":
            return BilinearSkip(self.scale)
        raise ValueError(f"no block kind {spec.kind!r} in the sr space")


class STSpace(Space):
    """CycleGAN-like frame: 7x7 stem, two stride-2 downsamplers (->128->256), 9 searched positions at 256
    channels, two (nearest x2 + 3x3 conv) upsamplers, the second one adding the stem's features (a long skip at
    full resolution), 7x7 conv; ReLU, no normalisation; + the input (global identity skip, no tanh). Stem (=
    second upsampler), first downsampler and first upsampler widths are searched. It differs from
    CycleGAN's generator (nets/cyclegan.py: InstanceNorm, reflection padding, transposed convs, tanh, no skip)
    where int8 speed or a restoration student's baseline asked for it (frame version 3): InstanceNorm, Pad and
    ConvTranspose ran in float in the int8 artifacts (LiteRT's int8 net with them was slower than its fp32),
    and a same-resolution student must start at its input (benchmarks/results/st_int8_ops.md)."""

    name = "st"
    scale = 1
    value_range = (-1.0, 1.0)
    flavour = ST_FLAVOUR
    frame_version = 3
    trunk = 256
    n_positions = 9
    min_hw = 16
    hw_multiple = 4

    @property
    def width_vars(self) -> dict[str, tuple[int, ...]]:
        w256 = width_choices(256)
        return {"stem": width_choices(64), "down1": width_choices(128),
                **{f"p{i}": w256 for i in range(self.n_positions - 1)},
                "up1": width_choices(128)}  # up2's width is the stem's: it adds the stem's features

    def slots(self, h: int, w: int) -> list[Slot]:
        t, n = self.trunk, self.n_positions
        s = [Slot("stem", 3, "stem", h, w, fixed_op="conv7x7"),
             Slot("down1", "stem", "down1", h, w, stride=2, fixed_op="conv3x3"),
             Slot("down2", "down1", t, h // 2, w // 2, stride=2, fixed_op="conv3x3")]
        for i in range(n):
            s.append(Slot("pos", t if i == 0 else f"p{i - 1}", t if i == n - 1 else f"p{i}", h // 4, w // 4, position=i))
        s += [Slot("up1", t, "up1", h // 4, w // 4, fixed_op="up2conv3x3"),
              Slot("up2", "up1", "stem", h // 2, w // 2, fixed_op="up2conv3x3add"),
              Slot("last", "stem", 3, h, w, fixed_op="conv7x7"),
              Slot("skip", 3, 3, h, w, fixed_op="identityadd")]
        return s

    def _build_fixed(self, spec: BlockSpec) -> nn.Module:
        fl = self.flavour
        if spec.kind == "stem":
            return _conv7(spec.cin, spec.cout, fl)
        if spec.kind in ("down1", "down2"):
            return fl.conv(spec.cin, spec.cout, 3, stride=2)
        if spec.kind == "up1":
            return UpNearestST(spec.cin, spec.cout, fl)
        if spec.kind == "up2":
            return UpNearestAddST(spec.cin, spec.cout, fl)
        if spec.kind == "last":
            return _conv7(spec.cin, spec.cout, fl, last=True)
        if spec.kind == "skip":
            return IdentitySkip()
        raise ValueError(f"no block kind {spec.kind!r} in the st space")


SPACES: dict[str, Space] = {"sr": SRSpace(), "st": STSpace()}


def get_space(name: str) -> Space:
    try:
        return SPACES[name]
    except (KeyError, TypeError):  # TypeError: not a name at all (a list or mapping from a user's JSON)
        raise ValueError(f"unknown space {name!r}; spaces are {', '.join(SPACES)}") from None
