"""Latency prediction from a LUT: for one arch (a sum of entries), as a differentiable expectation over
op/width probabilities (the search's cost), and the exact min/max over the whole space.

Prediction = overhead_ms + sum of the entries of the arch's blocks (`space.slots` in forward order).
The expectation factorises per slot because a slot's cost depends only on its own op, input width and
output width: E = sum_slots sum_{op,cin,cout} p(op) p(cin) p(cout) LUT[op,cin,cout]."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..space import Arch, BlockSpec
from ..space.frames import Space
from .lut import LUT, LUTError


def predict_ms(lut: LUT, arch: Arch) -> float:
    """Predicted latency (ms) of one arch's whole net."""
    return lut.overhead_ms + sum(lut.ms(b.key) for b in arch.blocks(lut.input_shape))


class SlotCostModel:
    """Per-slot cost tensors of a space at one input size, pre-indexed so an expectation is one einsum.

    `cost(spec) -> float` gives any per-block cost (LUT milliseconds, MACs...). Layout: T[s, op, i, j] is
    the cost of slot s with op index `op` and the i-th / j-th choice of its input / output width. Fixed ops
    sit at op index 0 and fixed widths at choice 0, and read one-hot rows, so every slot is handled alike."""

    def __init__(self, space: Space, h: int, w: int, cost: Callable[[BlockSpec], float], offset: float = 0.0):
        self.space, self.offset = space, float(offset)
        self.slots = space.slots(h, w)
        self.var_names = list(space.width_vars)
        self.choices = {k: tuple(v) for k, v in space.width_vars.items()}
        self.k = max(len(v) for v in self.choices.values())
        n_ops, fixed_w, fixed_op = len(space.ops), len(self.var_names), space.n_positions
        table = np.zeros((len(self.slots), n_ops, self.k, self.k), dtype=np.float64)
        op_idx, cin_idx, cout_idx = [], [], []
        for s, slot in enumerate(self.slots):
            ops = space.ops if slot.position is not None else (slot.fixed_op,)
            cins = self._opts(slot.cin)
            couts = self._opts(slot.cout)
            for o, op in enumerate(ops):
                for i, cin in enumerate(cins):
                    for j, cout in enumerate(couts):
                        table[s, o, i, j] = cost(BlockSpec(slot.kind, op, cin, cout, slot.h, slot.w, slot.stride))
            op_idx.append(slot.position if slot.position is not None else fixed_op)
            cin_idx.append(self.var_names.index(slot.cin) if isinstance(slot.cin, str) else fixed_w)
            cout_idx.append(self.var_names.index(slot.cout) if isinstance(slot.cout, str) else fixed_w)
        self.table = torch.tensor(table, dtype=torch.float64)
        self.op_idx = torch.tensor(op_idx)
        self.cin_idx = torch.tensor(cin_idx)
        self.cout_idx = torch.tensor(cout_idx)
        self._np_table = table

    def _opts(self, width) -> tuple[int, ...]:
        return (width,) if isinstance(width, int) else self.choices[width]

    def expected(self, op_probs: torch.Tensor, width_probs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Differentiable expected cost. op_probs [n_positions, n_ops]; width_probs {var: [n_choices]}."""
        n_ops = len(self.space.ops)
        if tuple(op_probs.shape) != (self.space.n_positions, n_ops):
            raise ValueError(f"op_probs must be [{self.space.n_positions}, {n_ops}], got {list(op_probs.shape)}")
        dtype, dev = op_probs.dtype, op_probs.device
        one_op = torch.zeros(1, n_ops, dtype=dtype, device=dev)
        one_op[0, 0] = 1
        ops = torch.cat([op_probs, one_op])  # last row: fixed op
        rows = []
        for name in self.var_names:
            if name not in width_probs:
                raise ValueError(f"width_probs lacks width variable {name!r}")
            p = width_probs[name].to(dtype=dtype, device=dev).reshape(-1)
            if p.numel() != len(self.choices[name]):
                raise ValueError(f"width_probs[{name!r}] has {p.numel()} entries, expected {len(self.choices[name])}")
            rows.append(torch.nn.functional.pad(p, (0, self.k - p.numel())))
        one_w = torch.zeros(self.k, dtype=dtype, device=dev)
        one_w[0] = 1
        widths = torch.stack(rows + [one_w])  # last row: fixed width
        t = self.table.to(dtype=dtype, device=dev)
        per_slot = torch.einsum("so,si,sj,soij->s", ops[self.op_idx.to(dev)], widths[self.cin_idx.to(dev)],
                                widths[self.cout_idx.to(dev)], t)
        return per_slot.sum() + self.offset

    def one_hot(self, arch: Arch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The probabilities that put all mass on `arch` (for tests and derive)."""
        ops = torch.zeros(self.space.n_positions, len(self.space.ops))
        for i, op in enumerate(arch.ops):
            ops[i, self.space.ops.index(op)] = 1
        widths = {}
        for name, ch in self.choices.items():
            p = torch.zeros(len(ch))
            p[ch.index(arch.widths[name])] = 1
            widths[name] = p
        return ops, widths

    # -- exact extremes by variable elimination ------------------------------------------------
    def extreme(self, largest: bool) -> tuple[float, Arch]:
        """Exact min (or max) of the cost over every arch of the space, and an arch attaining it.

        Each slot is a factor over at most two width variables (its cin and cout) after choosing its best
        op per width pair; the factors form chains (a slot's cin is the previous slot's cout), so min-sum
        variable elimination is exact and tiny."""
        pick = np.max if largest else np.min
        arg = np.argmax if largest else np.argmin
        const = self.offset
        factors: list[tuple[tuple[str, ...], np.ndarray]] = []
        for s, slot in enumerate(self.slots):
            n_op = len(self.space.ops) if slot.position is not None else 1
            ni, nj = len(self._opts(slot.cin)), len(self._opts(slot.cout))
            best = pick(self._np_table[s, :n_op, :ni, :nj], axis=0)  # [ni, nj]: best op per width pair
            if isinstance(slot.cin, str) and slot.cin == slot.cout:
                factors.append(((slot.cin,), np.diagonal(best).copy()))
            elif isinstance(slot.cin, str) and isinstance(slot.cout, str):
                factors.append(((slot.cin, slot.cout), best))
            elif isinstance(slot.cin, str):
                factors.append(((slot.cin,), best[:, 0]))
            elif isinstance(slot.cout, str):
                factors.append(((slot.cout,), best[0, :]))
            else:
                const += float(best[0, 0])
        trail = []  # (var, other vars, arg table) in elimination order
        remaining = [v for v in self.var_names if any(v in f[0] for f in factors)]
        while remaining:
            # eliminate the variable with the fewest neighbours (chains: always <= 2)
            def n_neighbours(v):
                return len({u for vs, _ in factors if v in vs for u in vs} - {v})
            v = min(remaining, key=n_neighbours)
            remaining.remove(v)
            touching = [f for f in factors if v in f[0]]
            factors = [f for f in factors if v not in f[0]]
            others = sorted({u for vs, _ in touching for u in vs} - {v}, key=self.var_names.index)
            scope = others + [v]
            total = np.zeros([len(self.choices[u]) for u in scope])
            for vs, tab in touching:
                total = total + _broadcast(tab, vs, scope, self.choices)
            trail.append((v, others, arg(total, axis=-1)))
            reduced = pick(total, axis=-1)
            if others:
                factors.append((tuple(others), reduced))
            else:
                const += float(reduced)
        for vs, tab in factors:  # leftovers without variables
            const += float(tab)
        idx: dict[str, int] = {}
        for v, others, argtab in reversed(trail):
            idx[v] = int(argtab[tuple(idx[u] for u in others)])
        widths = {v: self.choices[v][idx.get(v, 0)] for v in self.var_names}
        ops = [self.space.ops[0]] * self.space.n_positions
        for s, slot in enumerate(self.slots):
            if slot.position is None:
                continue
            i = self._opts(slot.cin).index(slot.cin if isinstance(slot.cin, int) else widths[slot.cin])
            j = self._opts(slot.cout).index(slot.cout if isinstance(slot.cout, int) else widths[slot.cout])
            ops[slot.position] = self.space.ops[int(arg(self._np_table[s, :, i, j]))]
        arch = Arch(self.space.name, ops, widths)
        return self.value(arch), arch

    def value(self, arch: Arch) -> float:
        """The cost of one arch, from the pre-indexed table (equals the LUT sum)."""
        ops, widths = self.one_hot(arch)
        return float(self.expected(ops.double(), {k: v.double() for k, v in widths.items()}))


def _broadcast(tab: np.ndarray, vs: tuple[str, ...], scope: list[str], choices) -> np.ndarray:
    """Lay a factor over `vs` out on the axes of `scope` (size-1 axes elsewhere) for broadcasting sums."""
    order = sorted(vs, key=scope.index)
    t = np.transpose(tab, [vs.index(u) for u in order])
    shape = [len(choices[u]) if u in vs else 1 for u in scope]
    return t.reshape(shape)


class ExpectedLatency(SlotCostModel):
    """E[latency] in ms from a LUT, differentiable in the op and width probabilities."""

    def __init__(self, lut: LUT, space: Space):
        lut.check(space)
        h, w = lut.hw
        missing = [b.key for b in space.all_blocks(h, w) if b.key not in lut.entries]
        if missing:
            raise LUTError(f"latency table {lut.path or ''} misses {len(missing)} block(s) of the {space.name} "
                           f"space, e.g. {missing[0]}; re-profile the target")
        super().__init__(space, h, w, lambda spec: lut.ms(spec.key), offset=lut.overhead_ms)
        self.lut = lut

    def __call__(self, op_probs: torch.Tensor, width_probs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.expected(op_probs, width_probs)


def expected_ms(lut: LUT, space: Space, op_probs: torch.Tensor, width_probs: dict[str, torch.Tensor]) -> torch.Tensor:
    """One-shot differentiable expectation. In a loop, build `ExpectedLatency(lut, space)` once and call it."""
    return ExpectedLatency(lut, space)(op_probs, width_probs)


def min_max_ms(lut: LUT, space: Space) -> tuple[tuple[float, Arch], tuple[float, Arch]]:
    """((min_ms, argmin arch), (max_ms, argmax arch)) of the predicted latency over all archs."""
    model = ExpectedLatency(lut, space)
    lo, hi = model.extreme(False), model.extreme(True)
    shape = list(lut.input_shape)
    lo[1].input_shape, hi[1].input_shape = shape, list(shape)
    return lo, hi
