"""LUT schema, refusal paths, and the predictor (sum, differentiable expectation, exact min/max)."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
import torch

from agd_deploy.profiling import LUT, LUTError, ExpectedLatency, expected_ms, min_max_ms, predict_ms
from agd_deploy.space import Arch, get_space
from agd_deploy.utils import resource_dir


def synthetic_lut(space_name: str, shape=(1, 3, 64, 64), seed: int = 0) -> LUT:
    """A LUT with random but structured entries (cost grows with widths, differs per op)."""
    sp = get_space(space_name)
    rng = random.Random(seed)
    entries = {}
    for b in sp.all_blocks(shape[2], shape[3]):
        v = (b.cin * b.cout * b.h * b.w) / 1e6 * rng.uniform(0.2, 2.0) + rng.uniform(0.0, 0.3)
        entries[b.key] = {"min_ms": v, "p10_ms": v * 1.01, "p50_ms": v * 1.1, "p90_ms": v * 1.3, "n": 20}
    return LUT(target="ort-cpu-fp32", space=sp.name, space_hash=sp.space_hash, input_shape=list(shape),
               threads=1, entries=entries, overhead_ms=0.5)


@pytest.mark.parametrize("space_name", ["sr", "st"])
def test_predict_equals_one_hot_expectation(space_name):
    sp = get_space(space_name)
    lut = synthetic_lut(space_name)
    model = ExpectedLatency(lut, sp)
    rng = random.Random(1)
    for _ in range(20):
        arch = Arch.sample(space_name, rng)
        ops, widths = model.one_hot(arch)
        e = float(model(ops.double(), {k: v.double() for k, v in widths.items()}))
        assert e == pytest.approx(predict_ms(lut, arch), rel=1e-9)
    # the one-shot function agrees
    ops, widths = model.one_hot(arch)
    assert float(expected_ms(lut, sp, ops, widths)) == pytest.approx(predict_ms(lut, arch), rel=1e-5)


def test_expectation_is_differentiable_and_exact_for_mixtures():
    sp = get_space("sr")
    lut = synthetic_lut("sr")
    model = ExpectedLatency(lut, sp)
    torch.manual_seed(0)
    alpha = torch.randn(sp.n_positions, len(sp.ops), dtype=torch.float64, requires_grad=True)
    betas = {k: torch.randn(len(v), dtype=torch.float64, requires_grad=True) for k, v in sp.width_vars.items()}
    e = model(alpha.softmax(-1), {k: b.softmax(-1) for k, b in betas.items()})
    e.backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    assert all(b.grad is not None and b.grad.abs().sum() > 0 for b in betas.values())
    # mixing two archs 50/50 on one position gives the mean of the two predictions
    a = Arch.sample("sr", 3)
    b = Arch("sr", list(a.ops), dict(a.widths))
    b.ops[7] = "residual" if a.ops[7] != "residual" else "skip"
    ops, widths = model.one_hot(a)
    ops_b, _ = model.one_hot(b)
    mix = float(model(((ops + ops_b) / 2).double(), {k: v.double() for k, v in widths.items()}))
    assert mix == pytest.approx((predict_ms(lut, a) + predict_ms(lut, b)) / 2, rel=1e-9)


@pytest.mark.parametrize("space_name", ["sr", "st"])
def test_min_max_bound_random_archs(space_name):
    sp = get_space(space_name)
    lut = synthetic_lut(space_name, seed=5)
    (lo, lo_arch), (hi, hi_arch) = min_max_ms(lut, sp)
    assert predict_ms(lut, lo_arch) == pytest.approx(lo, rel=1e-9)
    assert predict_ms(lut, hi_arch) == pytest.approx(hi, rel=1e-9)
    rng = random.Random(2)
    preds = [predict_ms(lut, Arch.sample(space_name, rng)) for _ in range(200)]
    assert lo <= min(preds) + 1e-9 and max(preds) <= hi + 1e-9
    assert lo < min(preds) and hi > max(preds)  # random archs do not hit the exact extremes
    # extreme archs by construction are bracketed too
    for largest in (False, True):
        assert lo - 1e-9 <= predict_ms(lut, Arch.extreme(space_name, largest)) <= hi + 1e-9


def test_argmin_cannot_be_improved_by_any_single_or_neighbour_change():
    """The DP argmin is optimal against every one-op, one-width and neighbouring-width-pair change."""
    sp = get_space("st")
    lut = synthetic_lut("st", seed=9)
    (lo, lo_arch), _ = min_max_ms(lut, sp)
    # perturbing any single op or width of the argmin never lowers the prediction
    base = predict_ms(lut, lo_arch)
    for i in range(sp.n_positions):
        for op in sp.ops:
            a = Arch("st", list(lo_arch.ops), dict(lo_arch.widths))
            a.ops[i] = op
            assert predict_ms(lut, a) >= base - 1e-9
    for name, ch in sp.width_vars.items():
        for c in ch:
            a = Arch("st", list(lo_arch.ops), dict(lo_arch.widths))
            a.widths[name] = c
            assert predict_ms(lut, a) >= base - 1e-9
    # and pairs of neighbouring widths, exhaustively
    names = list(sp.width_vars)
    for n1, n2 in zip(names, names[1:]):
        for c1, c2 in itertools.product(sp.width_vars[n1], sp.width_vars[n2]):
            a = Arch("st", list(lo_arch.ops), dict(lo_arch.widths))
            a.widths[n1], a.widths[n2] = c1, c2
            assert predict_ms(lut, a) >= base - 1e-9


def test_save_load_roundtrip_and_statistic(tmp_path):
    lut = synthetic_lut("sr")
    p = lut.save(tmp_path / "t.json")
    back = LUT.load(p)
    assert back.to_dict() == lut.to_dict()
    key = next(iter(lut.entries))
    assert back.ms(key) == lut.entries[key]["min_ms"]
    back.statistic = "p50_ms"
    assert back.ms(key) == lut.entries[key]["p50_ms"]
    assert not list(tmp_path.glob(".t.json.*"))  # no temp files left behind


def _write(tmp_path: Path, obj) -> Path:
    p = tmp_path / "bad.json"
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def test_load_refuses_bad_files(tmp_path):
    good = synthetic_lut("sr").to_dict()
    with pytest.raises(LUTError, match="not valid JSON"):
        LUT.load(_write(tmp_path, "{not json"))
    with pytest.raises(LUTError, match="schema"):
        LUT.load(_write(tmp_path, {**good, "schema": 2}))
    d = dict(good)
    del d["entries"]
    with pytest.raises(LUTError, match="lacks key"):
        LUT.load(_write(tmp_path, d))
    with pytest.raises(LUTError, match="cannot read"):
        LUT.load(tmp_path / "nope.json")
    with pytest.raises(LUTError, match="statistic"):
        LUT.load(_write(tmp_path, {**good, "statistic": "mean"}))


def test_check_refuses_mismatches():
    sp = get_space("sr")
    lut = synthetic_lut("sr")
    lut.check(sp, "ort-cpu-fp32", [1, 3, 64, 64])  # ok
    with pytest.raises(LUTError, match="space_hash"):
        LUT.from_dict({**lut.to_dict(), "space_hash": "0000"}).check(sp)
    with pytest.raises(LUTError, match="not st"):
        lut.check(get_space("st"))
    with pytest.raises(LUTError, match="target ort-cpu-fp32, not ort-cpu-int8"):
        lut.check(sp, "ort-cpu-int8")
    with pytest.raises(LUTError, match="1x3x64x64, not 1x3x32x32"):
        lut.check(sp, None, [1, 3, 32, 32])
    with pytest.raises(LUTError, match="no entry"):
        lut.ms("cell:bogus:cin1:cout1:h1:w1")


def test_incomplete_lut_is_refused_by_the_predictor():
    lut = synthetic_lut("sr")
    lut.entries.pop(next(iter(lut.entries)))
    with pytest.raises(LUTError, match="misses 1 block"):
        ExpectedLatency(lut, get_space("sr"))


def test_shipped_luts_match_the_space():
    """A shipped table measured on an older space definition must be re-profiled (space_hash check); every
    shipped table names the device it was measured on, and one in a device folder sits in that device's."""
    from agd_deploy.device import identity_of
    from agd_deploy.profiling.tables import device_folder

    root = resource_dir("latency_tables")
    tables = sorted([*root.glob("*/*.json"), *root.glob("*/*/*.json")])
    assert any(p.parent.parent == root for p in tables) and any(p.parent.parent.parent == root for p in tables)
    for p in tables:
        lut = LUT.load(p)
        sp = get_space(lut.space)
        assert lut.space_hash == sp.space_hash, f"{p} is stale: re-profile it"
        ident = identity_of(lut.device)
        assert ident is not None, f"{p} records no device identity"
        if p.parent.parent == root:
            assert p.parent.name == lut.target
        else:
            assert p.parent.parent.name == lut.target and p.parent.name == device_folder(ident)
        assert p.name == f"{lut.space}-{lut.input_shape[2]}x{lut.input_shape[3]}-t{lut.threads}.json"
        h, w = lut.hw
        assert {b.key for b in sp.all_blocks(h, w)} <= set(lut.entries), f"{p} misses blocks"


def test_every_shipped_table_has_its_device_in_the_tables_readme():
    """A user picks a shipped table by device: latency_tables/README.md names each one's device class and key
    (a table added without its row is a table nobody can tell the origin of without opening it)."""
    from agd_deploy.device import identity_of

    root = resource_dir("latency_tables")
    text = (Path(__file__).resolve().parent.parent / "latency_tables" / "README.md").read_text(encoding="utf-8")
    missing = []
    for p in sorted([*root.glob("*/*.json"), *root.glob("*/*/*.json")]):
        ident = identity_of(LUT.load(p).device)
        if ident.device_key not in text or ident.device_class not in text:
            missing.append(f"{p.relative_to(root)} ({ident.device_class}, {ident.device_key})")
    assert not missing, "shipped tables without a row in latency_tables/README.md:\n  " + "\n  ".join(missing)

def _noisy_copy(lut: LUT, factor: float, jitter: float, noise: float, seed: int) -> LUT:
    rng = random.Random(seed)
    entries = {k: {**e, "min_ms": e["min_ms"] * factor * (1 + rng.uniform(-jitter, jitter))}
               for k, e in lut.entries.items()}
    return LUT.from_dict({**lut.to_dict(), "entries": entries, "profile": {"noise_median_rel_diff": noise}})


def test_compare_tables_tells_noise_from_a_machine_speed_change(tmp_path):
    from agd_deploy.profiling.compare import compare_tables

    base = _noisy_copy(synthetic_lut("sr"), 1.0, 0.0, 0.02, 0)
    same = _noisy_copy(base, 1.0, 0.02, 0.02, 1)  # a second profile: +-2% jitter, ~1% median difference
    rep = compare_tables(base, same, n_nets=20)
    assert rep["agree"] is True and rep["blocks"]["median_rel_diff"] < 0.02
    assert rep["speed_ratio"] == pytest.approx(1.0, abs=0.01)
    slow = _noisy_copy(base, 1.15, 0.02, 0.02, 2)  # the machine ran 15% slower
    rep = compare_tables(base, slow, n_nets=20)
    assert rep["agree"] is False and rep["agree_after_speed_ratio"] is True
    assert rep["speed_ratio"] == pytest.approx(1.15, rel=0.02)
    assert rep["predictions"]["mean_ratio"] == pytest.approx(1.15, rel=0.03)
    other = LUT.from_dict({**base.to_dict(), "target": "ort-cpu-int8"})
    with pytest.raises(LUTError, match="cannot compare"):
        compare_tables(base, other)
