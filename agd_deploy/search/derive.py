"""Derive: turn the searched distribution into one arch whose predicted cost is under the budget.

Argmax ops and widths first. The argmax of a distribution whose *expectation* met the budget can still be
over it (or well under), so the arch is then projected: greedy moves (one width variable to another choice,
or one position to another op), each scored by cost changed per unit of the search's preference lost
(log-probability drop) -- shrink while over `budget * (1 - margin)`, then, optionally, fill back up while a
move still fits. The margin absorbs measurement noise so the *measured* net lands under the budget."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import AgdError
from ..space import Arch
from .cost import CostModel


class BudgetError(AgdError):
    """A budget no arch of the space can meet (or a nonsensical one)."""


@dataclass
class Move:
    arch: Arch
    value: float
    logp_drop: float


def check_budget(cost: CostModel, budget: float) -> None:
    """Refuse a budget below the cheapest arch's prediction, naming that minimum."""
    (lo, _), (hi, _) = cost.extremes()
    if budget <= 0:
        raise BudgetError(f"budget must be positive, got {budget:g} {cost.unit}")
    if budget < lo:
        raise BudgetError(f"budget {budget:.4g} {cost.unit} is below the smallest arch of the {cost.space.name} "
                          f"space ({lo:.4g} {cost.unit} predicted); the budget must be >= {lo:.4g} {cost.unit}")


def _moves(arch: Arch, cost: CostModel, op_logp: torch.Tensor, width_logp: dict[str, torch.Tensor]):
    """Every one-step change of arch: a width variable to another choice, a position to another op."""
    sp = cost.space
    choices = sp.width_vars
    for k, ch in choices.items():
        cur = ch.index(arch.widths[k])
        for i, c in enumerate(ch):
            if i != cur:
                a = Arch(arch.space, list(arch.ops), {**arch.widths, k: c}, list(arch.input_shape))
                yield Move(a, cost.predict(a), float(width_logp[k][cur] - width_logp[k][i]))
    for p, op in enumerate(arch.ops):
        cur = sp.ops.index(op)
        for i, o in enumerate(sp.ops):
            if i != cur:
                ops = list(arch.ops)
                ops[p] = o
                a = Arch(arch.space, ops, dict(arch.widths), list(arch.input_shape))
                yield Move(a, cost.predict(a), float(op_logp[p][cur] - op_logp[p][i]))


def project(arch: Arch, cost: CostModel, budget: float, margin: float = 0.05, fill: bool = True,
            op_logp: torch.Tensor | None = None, width_logp: dict[str, torch.Tensor] | None = None,
            eps: float = 0.05) -> Arch:
    """Greedy projection of `arch` to predicted cost <= budget*(1-margin) (see module doc).

    `op_logp` [n_positions, n_ops] and `width_logp` {var: [n_choices]} are the search's log-probabilities
    (uniform if not given). Moves with the most cost changed per log-prob lost go first."""
    check_budget(cost, budget)
    sp = cost.space
    if op_logp is None:
        op_logp = torch.zeros(sp.n_positions, len(sp.ops))
    if width_logp is None:
        width_logp = {k: torch.zeros(len(v)) for k, v in sp.width_vars.items()}
    (lo, smallest), _ = cost.extremes()
    target = max(budget * (1.0 - margin), lo)
    value = cost.predict(arch)
    while value > target * (1 + 1e-9):
        best, best_score = None, -1.0
        for m in _moves(arch, cost, op_logp, width_logp):
            saved = value - m.value
            if saved > 0 and saved / (max(m.logp_drop, 0.0) + eps) > best_score:
                best, best_score = m, saved / (max(m.logp_drop, 0.0) + eps)
        if best is None:  # a local minimum of one-step moves above a target near the space's minimum:
            arch, value = Arch(smallest.space, list(smallest.ops), dict(smallest.widths), list(arch.input_shape)), lo
            break  # the exact smallest arch is under any target >= lo (fill grows it back)
        arch, value = best.arch, best.value
    while fill:
        best, best_score = None, -1.0
        for m in _moves(arch, cost, op_logp, width_logp):
            added = m.value - value
            if added > 0 and m.value <= target and added / (max(m.logp_drop, 0.0) + eps) > best_score:
                best, best_score = m, added / (max(m.logp_drop, 0.0) + eps)
        if best is None:
            break
        arch, value = best.arch, best.value
    return arch


@dataclass
class Tried:
    """One derived arch measured on the target: what the table predicted, what the device said."""

    arch: Arch
    predicted_ms: float
    measured_ms: float

    def to_dict(self) -> dict:
        return {"ops": list(self.arch.ops), "widths": dict(self.arch.widths),
                "predicted_ms": round(self.predicted_ms, 4), "measured_ms": round(self.measured_ms, 4)}


def fit_measured(start: Arch, cost: CostModel, budget_ms: float, measure, margin: float = 0.05, fill: bool = True,
                 op_logp: torch.Tensor | None = None, width_logp: dict[str, torch.Tensor] | None = None,
                 tries: int = 3) -> tuple[Arch, list[Tried]]:
    """Project `start` under the budget, measure it, and re-project while the *measured* time is over.

    Why: a table predicts a whole net only within its validation error (a few %), and on one arch that
    error can exceed the derive margin. The device is the truth: an arch is accepted when measured <=
    budget * (1 - margin), the margin being what later runs' noise may add. An arch over that is measured
    once more (the min kept: load only ever slows), then its error, measured / predicted, tightens the next
    projection's budget. `measure(arch) -> ms` is the caller's (the search never imports runtimes). Returns
    the last arch and every try; the last may still be over when `tries` ran out or the space's smallest
    arch is reached (the caller says so)."""
    (lo, smallest), _ = cost.extremes()
    history: list[Tried] = []
    scaled = budget_ms
    for _ in range(max(1, tries)):
        arch = smallest if scaled * (1 - margin) <= lo else project(start, cost, scaled, margin, fill, op_logp,
                                                                     width_logp)
        pred = cost.predict(arch)
        ms = float(measure(arch))
        if ms > budget_ms * (1 - margin):  # over: once more before acting on it (load only ever slows)
            ms = min(ms, float(measure(arch)))
        tried = Tried(arch, pred, ms)
        history.append(tried)
        if tried.measured_ms <= budget_ms * (1 - margin) or arch is smallest:
            break
        scaled = min(scaled, budget_ms * pred / tried.measured_ms)  # the budget in table ms at this arch's error
    return history[-1].arch, history
