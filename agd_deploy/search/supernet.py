"""The AGD supernet: one net holding every arch of a space, trained by weight sharing.

Each searched position holds all four ops built at the largest widths; its output is the softmax(alpha)
weighted sum of them (first-order DARTS). A width variable's choices share one max-width tensor: a channel
mask keeps its first c channels (the OFA/AGD slicing), picked per forward by a straight-through hard
Gumbel-softmax over beta, so the sampled width is exact in the forward and beta still gets a gradient.
Everything is laid out from `space.slots`, exactly like the derived net (space/derived.py), so a searched
position, its LUT entry and the derived block are the same thing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..space import Arch, BlockSpec, get_space
from ..space.ops import make_op
from ..space.frames import Slot, Space


class MixedOp(nn.Module):
    """All candidate ops of one position at max widths; forward = sum_k w_k * op_k(x)."""

    def __init__(self, space: Space, cin: int, cout: int):
        super().__init__()
        self.ops = nn.ModuleList(make_op(op, cin, cout, space.flavour) for op in space.ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, single: bool = False) -> torch.Tensor:
        if single:  # one-hot weights (GDAS-style path sampling): run only the chosen op, keep its gradient
            k = int(weights.argmax())
            return weights[k] * self.ops[k](x)
        return sum(w * op(x) for w, op in zip(weights, self.ops))


class SuperNet(nn.Module):
    """Weights (`weight_parameters`) and architecture parameters (`alphas` over ops, `betas` over widths)."""

    def __init__(self, space: Space | str):
        super().__init__()
        self.space = get_space(space) if isinstance(space, str) else space
        sp = self.space
        self.slots: list[Slot] = sp.slots(*sp.default_input[2:])
        self.choices = {k: tuple(v) for k, v in sp.width_vars.items()}
        self.var_names = list(self.choices)
        blocks = []
        for s in self.slots:
            cin, cout = self._max(s.cin), self._max(s.cout)
            if s.position is not None:
                blocks.append(MixedOp(sp, cin, cout))
            else:
                blocks.append(sp.build_block(BlockSpec(s.kind, s.fixed_op, cin, cout, s.h, s.w, s.stride)))
        self.blocks = nn.ModuleList(blocks)
        self.alphas = nn.Parameter(torch.zeros(sp.n_positions, len(sp.ops)))
        self.betas = nn.ParameterDict({k: nn.Parameter(torch.zeros(len(v))) for k, v in self.choices.items()})
        for k, v in self.choices.items():  # mask table: row i keeps the first v[i] channels
            m = (torch.arange(max(v))[None, :] < torch.tensor(v)[:, None]).float()
            self.register_buffer(f"mask_{k}", m, persistent=False)

    def _max(self, width) -> int:
        return width if isinstance(width, int) else max(self.choices[width])

    # -- parameter groups -------------------------------------------------------------------------
    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.blocks.parameters())

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas, *self.betas.values()]

    # -- probabilities and width masks ------------------------------------------------------------
    def op_probs(self) -> torch.Tensor:
        return F.softmax(self.alphas, dim=-1)

    def width_probs(self) -> dict[str, torch.Tensor]:
        return {k: F.softmax(b, dim=-1) for k, b in self.betas.items()}

    def width_masks(self, mode: str, tau: float = 1.0) -> dict[str, torch.Tensor]:
        """Channel masks per width variable. mode: 'max' | 'min' | 'sample' (a Gumbel draw, no gradient to
        beta: weight steps) | 'gumbel' (straight-through hard Gumbel-softmax: arch steps)."""
        masks = {}
        for k in self.var_names:
            table = getattr(self, f"mask_{k}")
            if mode == "max":
                masks[k] = table[-1]
            elif mode == "min":
                masks[k] = table[0]
            elif mode in ("sample", "gumbel"):
                beta = self.betas[k] if mode == "gumbel" else self.betas[k].detach()
                masks[k] = F.gumbel_softmax(beta, tau=tau, hard=True) @ table
            else:
                raise ValueError(f"unknown width mode {mode!r}")
        return masks

    # -- forward ----------------------------------------------------------------------------------
    def op_weights(self, mode: str, tau: float = 1.0) -> torch.Tensor:
        """Op weights per position. mode: 'mixture' (softmax(alpha), DARTS) | 'gumbel' (straight-through hard
        Gumbel-softmax: one op per position, GDAS-style, ~4x cheaper); `detach` them for weight steps."""
        if mode == "mixture":
            return self.op_probs()
        if mode == "gumbel":
            return F.gumbel_softmax(self.alphas, tau=tau, hard=True, dim=-1)
        raise ValueError(f"unknown op mode {mode!r}")

    def forward(self, x: torch.Tensor, masks: dict[str, torch.Tensor], op_weights: torch.Tensor | None = None,
                single_path: bool = False):
        """Run the frame with the given width masks and op weights (default: softmax(alpha); `single_path`
        when they are one-hot). The wiring mirrors SRNet/STNet: cells add 0.2*f(x) to their input, the trunk
        conv and the last ST upsampler add the stem's features, the SR skip adds bilinear x4 of the input, the ST
        skip the input itself."""
        w = self.op_probs() if op_weights is None else op_weights
        x0, h, feat, y = x, x, None, None
        for slot, blk in zip(self.slots, self.blocks):
            if slot.kind == "cell":  # SR cell positions chain on y, starting from the cell input h
                y = blk(h if y is None else y, w[slot.position], single_path)
                out = "y"
            elif slot.kind == "cellsum":
                h, y, out = blk(h, y), None, "h"
            elif slot.kind == "body" or getattr(blk, "takes_feat", False):  # SR trunk conv, ST last upsampler
                h, out = blk(h, feat), "h"
            elif slot.kind == "skip":
                h, out = blk(x0, h), "h"
            elif slot.position is not None:  # ST positions: plain chain
                h, out = blk(h, w[slot.position], single_path), "h"
            else:
                h, out = blk(h), "h"
                if slot.kind == "stem":
                    feat = h
            if isinstance(slot.cout, str):
                m = masks[slot.cout].view(1, -1, 1, 1)
                if out == "y":
                    y = y * m
                else:
                    h = h * m
                    if slot.kind == "stem":
                        feat = h
        return h

    # -- derive -----------------------------------------------------------------------------------
    def argmax_arch(self, input_shape: list[int] | None = None) -> Arch:
        """The most likely op per position and width per variable."""
        ops = [self.space.ops[int(i)] for i in self.alphas.argmax(dim=-1)]
        widths = {k: self.choices[k][int(self.betas[k].argmax())] for k in self.var_names}
        return Arch(self.space.name, ops, widths, list(input_shape or self.space.default_input))

    def log_probs(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Log-probabilities of ops and widths (derive's fidelity proxy), detached."""
        with torch.no_grad():
            return (F.log_softmax(self.alphas, -1).clone(),
                    {k: F.log_softmax(b, -1).clone() for k, b in self.betas.items()})
