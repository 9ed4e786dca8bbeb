"""The supernet, cost models, lambda controller and derive: real modules, numbers that can be wrong."""

import math

import pytest
import torch

from agd_deploy.profiling import LUT
from agd_deploy.search import (BudgetError, FlopsCost, LambdaController, LatencyCost, SuperNet, check_budget,
                               project)
from agd_deploy.search.cost import block_gmacs
from agd_deploy.space import Arch, build, count, get_space


def synthetic_lut(space="sr", shape=(1, 3, 64, 64), target="ort-cpu-int8", dws_penalty=3.0) -> LUT:
    """A schema-1 table over every block of the space: ms = 0.01 + 4*GMACs (dwsblock 3x slower per MAC)."""
    sp = get_space(space)
    entries = {}
    for b in sp.all_blocks(shape[2], shape[3]):
        ms = 0.01 + 4.0 * block_gmacs(sp, b) * (dws_penalty if b.op == "dwsblock" else 1.0)
        entries[b.key] = {"min_ms": ms, "p10_ms": ms, "p50_ms": ms, "p90_ms": ms, "n": 1}
    return LUT(target, space, sp.space_hash, list(shape), 1, entries, overhead_ms=0.2)


def _derived_blocks(net):
    """The derived net's blocks in slot order (the order SuperNet.blocks uses)."""
    if hasattr(net, "cells"):
        out = [net.stem]
        for cell in net.cells:
            out += list(cell) + [net.cellsum]
        return out + [net.body, net.up1, net.up2, net.hr, net.last, net.skip]
    return [net.stem, net.down1, net.down2, *net.positions, net.up1, net.up2, net.last, net.skip]


@pytest.mark.parametrize("space,shape", [("sr", (1, 3, 16, 16)), ("st", (1, 3, 32, 32))])
def test_supernet_one_hot_at_max_width_is_the_derived_net(space, shape):
    """With one-hot op weights and full widths the supernet computes exactly the derived net (same wiring)."""
    torch.manual_seed(0)
    sp = get_space(space)
    sup = SuperNet(space).eval()
    ops = [sp.ops[i % len(sp.ops)] for i in range(sp.n_positions)]
    arch = Arch(space, ops, {k: max(v) for k, v in sp.width_vars.items()}, list(shape))
    derived = build(arch).eval()
    for slot, sblk, dblk in zip(sup.slots, sup.blocks, _derived_blocks(derived)):
        src = sblk.ops[sp.ops.index(ops[slot.position])] if slot.position is not None else sblk
        dblk.load_state_dict(src.state_dict())
    w = torch.zeros(sp.n_positions, len(sp.ops))
    for i, op in enumerate(ops):
        w[i, sp.ops.index(op)] = 1
    x = torch.rand(*shape) * 2 - (1 if space == "st" else 0)
    with torch.no_grad():
        ref = derived(x)
        assert torch.allclose(sup(x, sup.width_masks("max"), w), ref, atol=1e-5)
        assert torch.allclose(sup(x, sup.width_masks("max"), w, single_path=True), ref, atol=1e-5)
    assert ref.shape[-1] == shape[-1] * sp.scale
    assert len(_derived_blocks(derived)) == len(sup.slots)


def test_fresh_st_supernet_starts_at_its_input():
    """The ST identity skip with the last conv's small init: an untrained supernet returns about its input."""
    torch.manual_seed(0)
    sup = SuperNet("st").eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        y = sup(x, sup.width_masks("max"))
    assert 0 < float((y - x).abs().mean()) < 0.1  # 0.05 here; a net without the skip is ~0.5 off


def test_width_masks_and_gradients():
    torch.manual_seed(0)
    sup = SuperNet("sr")
    lo = sup.width_masks("min")
    assert lo["up1"].sum() == 24 and lo["up1"][:24].eq(1).all() and lo["up1"][24:].eq(0).all()
    hard = sup.width_masks("gumbel", tau=1.0)
    assert all(m.sum().item() in sup.choices[k] for k, m in hard.items())  # an exact channel count
    x = torch.rand(2, 3, 8, 8)
    y = sup(x, hard, sup.op_weights("gumbel"), single_path=True)
    y.abs().mean().backward()
    assert sup.betas["hr"].grad is not None and sup.betas["hr"].grad.abs().sum() > 0
    assert sup.alphas.grad is not None and sup.alphas.grad.abs().sum() > 0
    sup.zero_grad()
    sup(x, sup.width_masks("sample")).abs().mean().backward()  # weight step: no gradient to betas
    assert sup.betas["hr"].grad is None or sup.betas["hr"].grad.abs().sum() == 0


def test_argmax_arch_follows_the_parameters():
    sup = SuperNet("sr")
    with torch.no_grad():
        sup.alphas[3, get_space("sr").ops.index("dwsblock")] = 5
        sup.betas["up2"][1] = 5
    a = sup.argmax_arch([1, 3, 64, 64])
    assert a.ops[3] == "dwsblock" and a.widths["up2"] == get_space("sr").width_vars["up2"][1]
    a.validate()


def test_flops_cost_matches_the_counter_and_is_exact_at_the_extremes():
    fc = FlopsCost("sr", [1, 3, 64, 64])
    for seed in range(3):
        a = Arch.sample("sr", seed)
        assert math.isclose(fc.predict(a), count(build(a), [1, 3, 64, 64]).gmacs, rel_tol=1e-9)
        ops, widths = fc.model.one_hot(a)
        assert math.isclose(float(fc.expected(ops.double(), {k: v.double() for k, v in widths.items()})),
                            fc.predict(a), rel_tol=1e-9)
    (lo, amin), (hi, amax) = fc.extremes()
    samples = [fc.predict(Arch.sample("sr", s)) for s in range(50)]
    assert lo <= min(samples) and hi >= max(samples)
    assert math.isclose(lo, count(build(amin), [1, 3, 64, 64]).gmacs, rel_tol=1e-9)
    assert math.isclose(hi, count(build(Arch.extreme("sr", True)), [1, 3, 64, 64]).gmacs, rel_tol=1e-9)


def test_latency_cost_expectation_is_differentiable():
    lc = LatencyCost(synthetic_lut())
    sup = SuperNet("sr")
    e = lc.expected(sup.op_probs().double(), {k: p.double() for k, p in sup.width_probs().items()})
    e.backward()
    (lo, _), (hi, _) = lc.extremes()
    assert lo < float(e) < hi
    # skip is the cheapest op everywhere: the gradient pushes its alpha up (negative gradient) vs residual
    sp = get_space("sr")
    assert (sup.alphas.grad[:, sp.ops.index("skip")] < sup.alphas.grad[:, sp.ops.index("residual")]).all()


def test_lambda_controller_band():
    c = LambdaController(lam=1.0, low=0.85, high=1.0, every=1, lam_min=0.25, lam_max=4.0)
    assert c.update(11, 10) == 2.0 and c.update(11, 10) == 4.0 and c.update(11, 10) == 4.0  # clamped
    assert c.update(9.5, 10) == 4.0          # in the band: unchanged
    assert c.update(5, 10) == 2.0            # well under: halve
    c2 = LambdaController(every=3)
    assert [c2.update(20, 10) for _ in range(3)] == [1.0, 1.0, 2.0]
    c3 = LambdaController()
    c3.load_state_dict(c.state_dict())
    assert c3.lam == c.lam and c3.every == c.every


def test_project_meets_the_budget_with_margin_and_fills_it():
    lc = LatencyCost(synthetic_lut())
    (lo, _), (hi, _) = lc.extremes()
    big = Arch.extreme("sr", True)
    for frac in (0.1, 0.3, 0.5, 0.7):
        budget = lo + frac * (hi - lo)
        a = project(big, lc, budget, margin=0.05)
        p = lc.predict(a)
        assert p <= budget * 0.95 + 1e-9
        assert p >= budget * 0.85, (frac, p, budget)  # filled, not crushed
    small = Arch.extreme("sr", False)
    budget = lo + 0.5 * (hi - lo)
    grown = project(small, lc, budget, margin=0.05, fill=True)
    assert budget * 0.85 <= lc.predict(grown) <= budget * 0.95 + 1e-9
    assert lc.predict(project(small, lc, budget, margin=0.05, fill=False)) == lc.predict(small)


def test_project_prefers_what_the_search_prefers():
    lc = LatencyCost(synthetic_lut())
    sp = get_space("sr")
    big = Arch.extreme("sr", True)
    (lo, _), (hi, _) = lc.extremes()
    op_logp = torch.full((sp.n_positions, len(sp.ops)), -3.0)
    op_logp[:, sp.ops.index("residual")] = 0.0  # the search is sure about residual ops
    width_logp = {k: torch.zeros(len(v)) for k, v in sp.width_vars.items()}  # indifferent to widths
    a = project(big, lc, lo + 0.6 * (hi - lo), 0.05, fill=False, op_logp=op_logp, width_logp=width_logp)
    assert a.ops.count("residual") > sp.n_positions // 2
    assert any(a.widths[k] < max(v) for k, v in sp.width_vars.items())


def test_budget_below_minimum_is_refused_naming_it():
    lc = LatencyCost(synthetic_lut())
    (lo, _), _ = lc.extremes()
    with pytest.raises(BudgetError, match=f"{lo:.4g} ms"):
        check_budget(lc, lo * 0.9)
    with pytest.raises(BudgetError):
        project(Arch.extreme("sr", True), lc, lo * 0.5)


def _device(lc, slower: float, bursts: list[float] | None = None):
    """A stand-in for a target measured on a machine: the table's prediction times `slower`, the first
    calls inflated by `bursts` (a shared host's load); records each call."""
    calls = []

    def measure(arch):
        k = bursts.pop(0) if bursts else 1.0
        calls.append(lc.predict(arch) * slower * k)
        return calls[-1]
    measure.calls = calls
    return measure


def test_fit_measured_keeps_an_arch_that_measures_under_the_budget():
    from agd_deploy.search.derive import fit_measured

    lc = LatencyCost(synthetic_lut())
    (lo, _), (hi, _) = lc.extremes()
    budget = lo + 0.4 * (hi - lo)
    dev = _device(lc, 1.0)
    arch, tries = fit_measured(Arch.extreme("sr", True), lc, budget, dev, margin=0.05)
    assert len(tries) == 1 and len(dev.calls) == 1
    assert arch == project(Arch.extreme("sr", True), lc, budget, 0.05)  # the plain derive's arch, kept
    assert tries[0].measured_ms <= budget * 0.95 + 1e-9


def test_fit_measured_tightens_by_the_measured_error_until_under():
    from agd_deploy.search.derive import fit_measured

    lc = LatencyCost(synthetic_lut())
    (lo, _), (hi, _) = lc.extremes()
    budget = lo + 0.4 * (hi - lo)
    dev = _device(lc, 1.12)  # this machine is 12% slower than its table on every arch
    arch, tries = fit_measured(Arch.extreme("sr", True), lc, budget, dev, margin=0.05)
    assert tries[0].measured_ms > budget * 0.95  # the table's arch was over here
    assert tries[-1].arch == arch and tries[-1].measured_ms <= budget * 0.95 + 1e-9
    assert len(tries) == 2  # one correction by the measured ratio suffices for a uniform error
    assert tries[1].predicted_ms <= budget * 0.95 / 1.12 + 1e-6
    assert tries[1].measured_ms >= budget * 0.85  # tightened, not crushed


def test_fit_measured_measures_an_over_arch_twice_and_keeps_the_min():
    from agd_deploy.search.derive import fit_measured

    lc = LatencyCost(synthetic_lut())
    (lo, _), (hi, _) = lc.extremes()
    budget = lo + 0.4 * (hi - lo)
    dev = _device(lc, 1.0, bursts=[1.3])  # the first measurement fell in a burst of load
    arch, tries = fit_measured(Arch.extreme("sr", True), lc, budget, dev, margin=0.05)
    assert len(dev.calls) == 2 and len(tries) == 1
    assert tries[0].measured_ms == min(dev.calls)


def test_fit_measured_stops_at_the_smallest_arch_and_reports_it_over():
    from agd_deploy.search.derive import fit_measured

    lc = LatencyCost(synthetic_lut())
    (lo, _), (hi, _) = lc.extremes()
    budget = lo * 1.1
    dev = _device(lc, 3.0)  # no arch of the space can meet this budget here
    arch, tries = fit_measured(Arch.extreme("sr", True), lc, budget, dev, margin=0.05, tries=5)
    assert 1 < len(tries) <= 5
    assert math.isclose(lc.predict(arch), lo, rel_tol=1e-9)
    assert tries[-1].measured_ms > budget


def test_project_near_the_minimum_falls_back_to_the_smallest_arch():
    """Greedy one-step moves can stall above a target close to the space's minimum; the exact smallest arch
    is under any target >= it, so derive never refuses a budget that check_budget accepted."""
    lc = LatencyCost(synthetic_lut())
    (lo, _), _ = lc.extremes()
    for budget in (lo, lo * 1.02, lo * 1.06):
        a = project(Arch.extreme("sr", True), lc, budget, margin=0.05)
        assert lc.predict(a) <= max(budget * 0.95, lo) * (1 + 1e-9)
