"""Cost models the search sees (and nothing else of the hardware): a latency LUT, or MACs.

One interface: `expected(op_probs, width_probs) -> tensor` (differentiable, for the penalty),
`predict(arch) -> float` (for derive), `extremes()` (exact cheapest and dearest arch of the space), `unit`.
Both wrap the profiling predictor's pre-indexed `SlotCostModel`, so the expectation during search and the
prediction at derive time come from the same per-block numbers."""

from __future__ import annotations

from functools import cached_property

import torch

from ..profiling import LUT, ExpectedLatency, SlotCostModel, predict_ms
from ..space import Arch, BlockSpec, get_space
from ..space.counter import block_macs
from ..space.frames import Space


class CostModel:
    """Base: a per-block cost table plus the slot model that takes expectations over it."""

    name = "cost"
    unit = ""
    model: SlotCostModel

    def __init__(self, space: Space, input_shape: list[int]):
        self.space, self.input_shape = space, list(input_shape)

    def expected(self, op_probs: torch.Tensor, width_probs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.expected(op_probs, width_probs)

    def predict(self, arch: Arch) -> float:
        raise NotImplementedError

    @cached_property
    def _extremes(self) -> tuple[tuple[float, Arch], tuple[float, Arch]]:
        lo, hi = self.model.extreme(False), self.model.extreme(True)
        for _, a in (lo, hi):
            a.input_shape = list(self.input_shape)
        return lo, hi

    def extremes(self) -> tuple[tuple[float, Arch], tuple[float, Arch]]:
        """((min, argmin arch), (max, argmax arch)) over every arch of the space, exactly."""
        return self._extremes


class LatencyCost(CostModel):
    """Expected / predicted latency in ms from a measured LUT (the default cost)."""

    name = "latency"
    unit = "ms"

    def __init__(self, lut: LUT, space: Space | str | None = None):
        space = get_space(space or lut.space) if not isinstance(space, Space) else space
        super().__init__(space, list(lut.input_shape))
        self.lut = lut
        self.model = ExpectedLatency(lut, space)  # checks space/hash and that every block is in the table

    def predict(self, arch: Arch) -> float:
        return predict_ms(self.lut, arch)


_MAC_CACHE: dict[tuple[str, str], float] = {}


def block_gmacs(space: Space, spec: BlockSpec) -> float:
    """GMACs of one block. Counted once at a small size and scaled by pixels (exact: every block's work is
    proportional to its input area), cached per space version."""
    key = (space.space_hash, spec.key)
    if key not in _MAC_CACHE:
        small = 8 * spec.stride
        with torch.device("meta"):  # shapes only: no weight init, no arithmetic
            macs = block_macs(space.build_block(BlockSpec(spec.kind, spec.op, spec.cin, spec.cout, small, small,
                                                          spec.stride)), spec.cin, small, small)
        _MAC_CACHE[key] = macs * (spec.h * spec.w) / (small * small) / 1e9
    return _MAC_CACHE[key]


class FlopsCost(CostModel):
    """Expected / exact MACs (in GMACs) at an input shape: AGD's original FLOPs penalty."""

    name = "flops"
    unit = "gmacs"

    def __init__(self, space: Space | str, input_shape: list[int] | None = None):
        space = get_space(space) if isinstance(space, str) else space
        super().__init__(space, list(input_shape or space.default_input))
        _, _, h, w = space.check_input(self.input_shape)
        self.model = SlotCostModel(space, h, w, lambda spec: block_gmacs(space, spec))

    def predict(self, arch: Arch) -> float:
        return sum(block_gmacs(self.space, b) for b in arch.blocks(self.input_shape))


def linear_fit(x_cost: CostModel, y_cost: CostModel, n: int = 200, seed: int = 0) -> tuple[float, float]:
    """Least-squares y = a + b*x over `n` random archs plus both extremes (e.g. ms per GMAC).
    Used to express a ms budget as the MACs a FLOPs-only search would be given."""
    from ..space import Arch as _Arch

    archs = [_Arch.sample(x_cost.space.name, seed * 100003 + i, x_cost.input_shape) for i in range(n)]
    archs += [x_cost.extremes()[0][1], x_cost.extremes()[1][1]]
    xs = torch.tensor([x_cost.predict(a) for a in archs], dtype=torch.float64)
    ys = torch.tensor([y_cost.predict(a) for a in archs], dtype=torch.float64)
    xm, ym = xs.mean(), ys.mean()
    b = float(((xs - xm) * (ys - ym)).sum() / ((xs - xm) ** 2).sum())
    return float(ym - b * xm), b
