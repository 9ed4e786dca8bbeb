"""Tables per device: lookup by device key, `agd profile check` verdicts, the gate before search/measure/demo,
few-shot transfer, and the ISA-aware int8 lowering. Checks and transfers time real nets on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agd_deploy.device import describe_device, identify, identity_of, parse_cpuinfo
from agd_deploy.errors import AgdError
from agd_deploy.profiling import tables
from agd_deploy.profiling.check import check_table, gate, judge, reference_archs_of, rescaled
from agd_deploy.profiling.lut import LUT
from agd_deploy.profiling.predictor import predict_ms
from agd_deploy.quant.onnx import OrtInt8Config
from agd_deploy.runtimes.base import device_fingerprint
from agd_deploy.utils import resource_dir

from cli_helpers import run_cli

FIX = Path(__file__).parent / "fixtures" / "cpuinfo"
ZEN1 = parse_cpuinfo((FIX / "amd-epyc-zen1-2c.cpuinfo").read_text())
ZEN4 = parse_cpuinfo((FIX / "amd-epyc-zen4-2c.cpuinfo").read_text())
N1 = parse_cpuinfo((FIX / "arm-neoverse-n1-4c.cpuinfo").read_text())
SHIPPED = resource_dir("latency_tables") / "ort-cpu-int8" / "sr-64x64-t1.json"  # measured on the Zen 1 VM


def _copy(lut: LUT, path: Path, device=None, ref_factors=None, table_noise=None) -> Path:
    d = lut.to_dict()
    if device is not None:
        d["device"] = device
    if ref_factors is not None:
        refs = d["profile"]["reference_nets"]
        d["profile"] = dict(d["profile"], reference_nets=[dict(r, measured_ms=r["measured_ms"] * f)
                                                          for r, f in zip(refs, ref_factors)])
    if table_noise is not None:
        d["profile"] = dict(d["profile"], noise_median_rel_diff=table_noise)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d))
    return path


# ---------------------------------------------------------------------------------------------- lookup

def test_lookup_picks_the_table_of_the_device_and_not_an_edited_one(tmp_path, monkeypatch):
    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path))
    src = LUT.load(SHIPPED)
    assert identity_of(src.device).device_key == ZEN1.device_key  # the shipped table says which CPU it is from
    mine = _copy(src, tables.user_path("ort-cpu-int8", "sr", [1, 3, 64, 64], 1, N1), device=N1.to_dict())
    found = tables.find("ort-cpu-int8", "sr", [1, 3, 64, 64], identity=N1)
    assert found.path == mine and found.this_device and found.root == "user"
    # the same file with its device fields edited to another CPU is no longer this device's table
    _copy(src, mine, device=ZEN4.to_dict())
    assert tables.find("ort-cpu-int8", "sr", [1, 3, 64, 64], identity=N1, this_device_only=True) is None
    other = tables.find("ort-cpu-int8", "sr", [1, 3, 64, 64], identity=N1)
    assert other is not None and not other.this_device
    # several devices' tables of one target coexist; each device finds its own
    z1 = tables.find("ort-cpu-int8", "sr", [1, 3, 64, 64], identity=ZEN1)
    assert z1.path == SHIPPED and z1.this_device and z1.root == "shipped"
    assert tables.find("ort-cpu-int8", "sr", [1, 3, 64, 64], identity=ZEN4).path == mine


def test_demo_does_not_reuse_a_table_whose_device_was_edited(tmp_path, monkeypatch):
    from agd_deploy.demo import DemoConfig, pick_table

    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path))
    p = _copy(LUT.load(SHIPPED), tables.user_path("ort-cpu-int8", "sr", [1, 3, 64, 64], 1, N1), device=N1.to_dict())
    assert pick_table(DemoConfig(), identity=N1).path == p
    _copy(LUT.load(p), p, device=ZEN4.to_dict())
    picked = pick_table(DemoConfig(), identity=N1)
    assert picked is not None and not picked.this_device  # so the demo checks, transfers or profiles it


def test_old_table_without_identity_is_an_unknown_device(tmp_path, monkeypatch):
    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path))
    old = {"cpu": "AMD EPYC", "cores": 2, "usable_cores": 2, "host": "vm", "os": "Linux", "machine": "x86_64",
           "gpu": None}
    p = _copy(LUT.load(SHIPPED), tmp_path / "latency_tables" / "ort-cpu-int8" / "sr-64x64-t1.json", device=old)
    assert identity_of(LUT.load(p).device) is None
    f = next(c for c in tables.candidates("ort-cpu-int8", "sr", [1, 3, 64, 64], identity=ZEN1) if c.path == p)
    assert f.device is None and not f.this_device
    assert "unknown device" in describe_device(old)


# ---------------------------------------------------------------------------------------------- verdicts

def test_judge_tells_fits_rescaled_and_stale():
    assert judge(np.array([1.01, 0.99, 1.02]), 0.005, 0.005)[0] == "fits"
    v, ratio, spread, _, _ = judge(np.array([0.50, 0.51, 0.49]), 0.005, 0.005)
    assert v == "rescaled-fits" and ratio == pytest.approx(0.50) and spread < 0.03
    assert judge(np.array([0.25, 0.31, 0.24]), 0.005, 0.005)[0] == "stale"
    # a noisier check allows more, but never more than 8%
    assert judge(np.array([1.0, 1.06]), 0.035, 0.0)[0] == "fits"          # tolerance 7%
    assert judge(np.array([1.0, 1.06]), 0.01, 0.0)[0] == "rescaled-fits"  # tolerance 3%: one factor fits
    assert judge(np.array([0.9, 1.0, 1.12]), 0.2, 0.2)[0] == "stale"       # 12% off after the factor > 8%


def test_rescaled_copy_predicts_times_the_factor():
    from agd_deploy.profiling.check import CheckResult
    from agd_deploy.space import sample_archs

    lut = LUT.load(SHIPPED)
    res = CheckResult("rescaled-fits", 0.5, 0.01, 0.5, 0.01, 0.05, 1.0, 3, str(SHIPPED), lut.device,
                      ZEN4.to_dict(), False)
    new = rescaled(lut, res, ZEN4)
    for a in sample_archs("sr", 5, seed=2):
        assert predict_ms(new, a) == pytest.approx(0.5 * predict_ms(lut, a), rel=1e-4)
    assert identity_of(new.device).device_key == ZEN4.device_key
    assert new.extra["provenance"]["kind"] == "rescaled" and new.extra["provenance"]["from_device"] == lut.device
    with pytest.raises(AgdError, match="stale"):
        rescaled(lut, CheckResult("stale", 0.3, 0.2, 0.7, 0.01, 0.05, 1.0, 3, "", None, {}, False))


@pytest.mark.slow  # real timing of every reference net, twice (check + gate): over a minute on 2 cores
def test_check_of_a_table_whose_nets_moved_apart_is_stale_and_gated(tmp_path, monkeypatch, capsys):
    """Real timing: the table's reference nets re-timed here. Scaling them by 0.3x..3x makes the table stale on
    any machine; the gate then refuses it in one line naming both devices, unless allowed (loudly)."""
    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path / "cache"))
    lut = LUT.load(SHIPPED)
    n = len(reference_archs_of(lut))
    moved = LUT.load(_copy(lut, tmp_path / "moved.json", device=ZEN4.to_dict(),
                           ref_factors=[0.3 if i % 2 else 3.0 for i in range(n)]))
    res = check_table(moved, budget_s=5, progress=False)  # at least 6 rounds whatever the budget
    assert res.verdict == "stale" and len(res.nets) == n and res.rounds >= 2
    assert res.rounds <= 12 and res.seconds > 0 and not res.same_device  # rounds, not wall time: loaded CIs vary
    assert res.table_device["device_key"] == ZEN4.device_key
    assert res.this_device["device_key"] == identify().device_key
    with pytest.raises(AgdError) as e:
        gate(moved, budget_s=5, progress=False, log=lambda m: None)
    msg = str(e.value)
    assert "\n" not in msg and "stale" in msg and ZEN4.device_class in msg and identify().device_class in msg
    used, r2 = gate(moved, allow_other_device=True, budget_s=5, progress=False, log=print)
    assert used is moved and r2.verdict == "stale" and "WARNING" in capsys.readouterr().out
    # the CLI: exit 1, JSON with the verdict and both identities
    code, out, _ = run_cli(capsys, "profile", "check", "--table", tmp_path / "moved.json", "--seconds", "5",
                           "--json")
    rep = json.loads(out)
    assert code == 1 and rep["verdict"] == "stale" and rep["table_device"]["device_key"] == ZEN4.device_key


def test_check_of_this_devices_table_is_not_run(tmp_path, monkeypatch):
    """A table of this device (same key and runtime versions) passes the gate untouched, without timing."""
    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path))
    d = LUT.load(SHIPPED).to_dict()
    from agd_deploy.runtimes.targets import runtime_for

    d.update(device=device_fingerprint(), runtime=dict(d["runtime"], **runtime_for("ort-cpu-int8").versions()))
    lut = LUT.from_dict(d)
    used, res = gate(lut, progress=False, log=lambda m: pytest.fail(f"checked: {m}"))
    assert used is lut and res is None


def test_check_without_reference_nets_is_stale_with_a_reason(tmp_path):
    d = LUT.load(SHIPPED).to_dict()
    d["profile"] = {}
    res = check_table(LUT.from_dict(d), progress=False)
    assert res.verdict == "stale" and "reference nets" in res.reason


def test_check_of_a_missing_table_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "profile", "check", "--table", tmp_path / "nope.json")
    assert code != 0 and "Traceback" not in err


# ---------------------------------------------------------------------------------------------- transfer

def test_probe_choice_beats_random_nets_in_determinant():
    from agd_deploy.profiling.transfer import choose_probes, design_row, probe_pool

    lut = LUT.load(SHIPPED)
    refs = [a for a, _ in reference_archs_of(lut)]

    def logdet(archs):
        rows = np.array([design_row(lut, a) / predict_ms(lut, a) for a in refs + archs])
        return np.linalg.slogdet(rows.T @ rows + 1e-3 * np.eye(rows.shape[1]))[1]

    chosen = choose_probes(lut, 5, fixed=refs)
    pool = probe_pool("sr", [1, 3, 64, 64])
    rng = np.random.default_rng(0)
    randoms = [logdet([pool[i] for i in rng.choice(len(pool), 5, replace=False)]) for _ in range(20)]
    assert len(chosen) == 5 and logdet(chosen) > max(randoms)


def test_transfer_fits_probes_and_writes_a_table_of_this_device(tmp_path, monkeypatch):
    from agd_deploy.profiling.transfer import CLASSES, design_row, fit, transfer

    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path))
    src = LUT.load(SHIPPED)
    before = json.dumps(src.to_dict(), sort_keys=True)
    res = transfer(src, probes=3, rounds=2, progress=False)
    assert json.dumps(src.to_dict(), sort_keys=True) == before  # the source table is not touched
    new = res.table
    prov = new.extra["provenance"]
    assert prov["kind"] == "transferred" and prov["probes"] == 3 and set(prov["scales"]) == set(CLASSES)
    assert identity_of(new.device).device_key == identify().device_key
    n_refs = len(reference_archs_of(src))
    assert len(res.residuals) == n_refs + 3
    # the table predicts exactly the fitted model a + sum_c s_c X_c (entries, overhead and fixed blocks agree)
    from agd_deploy.space import Arch

    for r, a in zip(res.residuals[n_refs:], prov["probe_archs"]):
        arch = Arch("sr", a["ops"], a["widths"], [1, 3, 64, 64])
        assert predict_ms(new, arch) == pytest.approx(r["predicted_ms"], rel=1e-3)
    # its reference nets are the ones timed here, so the new table can itself be checked later
    assert [r["measured_ms"] for r in new.extra["profile"]["reference_nets"]] == \
        [r["measured_ms"] for r in res.residuals[:n_refs]]
    # the fit recovers known class scales from exact data
    archs = [a for a, _ in reference_archs_of(src)] + [Arch("sr", a["ops"], a["widths"], [1, 3, 64, 64])
                                                       for a in prov["probe_archs"]]
    rows = np.array([design_row(src, a) for a in archs])
    truth = np.array([5.0, 0.3, 0.3, 0.3, 0.3, 0.3])
    coef, g = fit(rows, rows @ truth)
    assert coef == pytest.approx(truth, rel=0.02) and g == pytest.approx(0.3, rel=0.05)


# ---------------------------------------------------------------------------------------------- ISA-aware int8

def test_int8_lowering_follows_the_isa():
    assert OrtInt8Config.for_device(ZEN4).reduce_range is False          # VNNI: full 8-bit s8 weights
    assert OrtInt8Config.for_device(ZEN1).reduce_range is True           # AVX2 without VNNI: 7-bit weights
    assert OrtInt8Config.for_device(N1).reduce_range is False            # Arm dotprod
    assert OrtInt8Config.for_device(None).reduce_range is True           # unknown: the safe lowering
    u8u8 = OrtInt8Config.for_device(ZEN1, without_dot="u8u8")
    assert (u8u8.weight, u8u8.reduce_range) == ("uint8", False)
    assert OrtInt8Config.for_device(ZEN4, without_dot="u8u8").weight == "int8"
    with pytest.raises(AgdError):
        OrtInt8Config.for_device(ZEN1, without_dot="u4")
    with pytest.raises(AgdError, match="unknown field"):
        OrtInt8Config.from_dict({"reduce_rang": True})


def test_profile_records_the_lowering_and_export_follows_the_table():
    from agd_deploy.export.profile import Profile, resolve_int8
    from agd_deploy.profiling.profile import ProfileConfig, table_lowering

    cfg = ProfileConfig(target="ort-cpu-int8")
    assert cfg.int8 == OrtInt8Config.for_device(identify()).to_dict()
    assert ProfileConfig(target="ort-cpu-fp32").int8 is None
    # the shipped Zen 1 table records its 7-bit lowering; export of an arch searched with it follows it
    zen1_low = table_lowering(LUT.load(SHIPPED))
    assert zen1_low["reduce_range"] is True
    def wr(prof, low, ident):
        c = resolve_int8(prof, low, ident)[0]
        return c.weight, c.reduce_range

    assert wr(Profile(), zen1_low, ZEN4) == ("int8", True)
    assert wr(Profile(), None, ZEN4) == ("int8", False)       # no table: the device's ISA
    assert wr(Profile(onnx_int8={"reduce_range": False}), zen1_low, ZEN1) == ("int8", False)  # explicit wins
    assert wr(Profile(without_dot="u8u8"), None, ZEN1) == ("uint8", False)
    assert wr(Profile(onnx_int8={"weight": "int8"}, without_dot="u8u8"), None, ZEN1) == ("int8", True)


def test_default_profile_output_is_the_users_device_folder(tmp_path, monkeypatch):
    from agd_deploy.profiling.profile import ProfileConfig, profile
    from agd_deploy.space import get_space

    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path))
    keys = [b.key for b in get_space("sr").all_blocks(64, 64) if b.key.startswith("cell:skip")][:2]
    res = profile(ProfileConfig(target="ort-cpu-fp32", rounds=2, ref_nets=0, only=keys), progress=False)
    assert res.table == tables.user_path("ort-cpu-fp32", "sr", [1, 3, 64, 64], 1)
    assert str(res.table).startswith(str(tmp_path)) and tables.device_folder(identify()) in str(res.table)
    assert identity_of(LUT.load(res.table).device).device_key == identify().device_key


def test_gate_adopts_a_fitting_table_once(tmp_path, monkeypatch):
    """A table of another device whose reference nets run here as it says: the gate checks it once, saves a
    copy marked as this device's (with this machine's runtime versions), and passes that copy without a check."""
    monkeypatch.setenv("AGD_CACHE_DIR", str(tmp_path))
    src = LUT.load(SHIPPED)
    here = check_table(src, progress=False)  # the reference nets' times on this machine
    # a check's noise counts its sessions too: the larger of even vs odd rounds and first vs last passes
    assert set(here.noise_parts) == {"interleaved", "passes"} and here.noise == max(here.noise_parts.values())
    # the copy's reference times are that check's, so the copy's noise is that check's
    fit_here = LUT.load(_copy(src, tmp_path / "other.json", device=ZEN4.to_dict(),
                              ref_factors=[n["ratio"] for n in here.nets], table_noise=here.noise))
    from agd_deploy.profiling.check import TOL_MAX

    try:
        used, res = gate(fit_here, progress=False, log=lambda m: None)
    except AgdError as e:
        if "own noise" in str(e):  # the host changed speed while timing (these VMs do): no verdict to test
            pytest.skip(f"machine too noisy to compare two checks now: {e}")
        if "not one factor" in str(e):  # did this machine change between the two checks? Ask it a third time
            again = check_table(src, progress=False)
            drift = max(abs(a["ratio"] / b["ratio"] - 1) for a, b in zip(again.nets, here.nets))
            if drift > TOL_MAX:
                pytest.skip(f"this machine's reference nets moved {drift:.0%} between two checks minutes apart "
                            f"(host contention): no verdict to test")
        raise
    if res.noise > TOL_MAX / 2 or here.noise > TOL_MAX / 2:
        pytest.skip(f"machine too noisy to compare two checks now (noise {here.noise:.1%}, {res.noise:.1%})")
    assert res is not None and res.usable, res.reason
    assert identity_of(used.device).device_key == identify().device_key and used.path.is_file()
    assert used.extra["provenance"]["from_device"]["device_key"] == ZEN4.device_key
    again, res2 = gate(LUT.load(used.path), progress=False, log=lambda m: pytest.fail(f"checked again: {m}"))
    assert res2 is None and again.path == used.path
    found = tables.find("ort-cpu-int8", "sr", [1, 3, 64, 64], this_device_only=True)
    assert found is not None and found.path == used.path  # the next lookup finds the adopted copy first


def test_allow_other_device_uses_an_uncheckable_table_loudly(capsys):
    d = LUT.load(SHIPPED).to_dict()
    d["profile"], d["device"] = {}, ZEN4.to_dict()
    lut = LUT.from_dict(d)
    with pytest.raises(AgdError, match="stale on this machine.*reference nets"):
        gate(lut, progress=False, log=lambda m: None)
    used, res = gate(lut, allow_other_device=True, progress=False, log=print)
    assert used is lut and res.verdict == "stale" and "WARNING" in capsys.readouterr().out
