"""`agd profile` on the real onnxruntime: table schema, int8 blocks with uint8 boundaries, resume after
SIGKILL, validation report, and one-line refusals. Tiny inputs (16x16) and block subsets keep it fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from agd_deploy.cli import cli
from agd_deploy.profiling import LUT
from agd_deploy.profiling.profile import ProfileConfig, profile
from agd_deploy.profiling.validate import metrics, sample_archs, validate
from agd_deploy.space import build, count, get_space

pytest.importorskip("onnxruntime")

SHAPE = [1, 3, 16, 16]
SUBSET = ["stem:conv3x3:cin3:cout64:h16:w16", "cell:residual:cin40:cout64:h16:w16", "cell:skip:cin64:cout64:h16:w16",
          "cellsum:add:cin64:cout64:h16:w16", "up1:up2conv3x3:cin64:cout24:h16:w16", "cell:dwsblock:cin24:cout24:h16:w16"]
AGD = [str(Path(sys.executable).parent / "agd")]


class _Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def agd(capsys):
    """Run `agd ARGS` in-process through the real entry point (one-line errors, exit codes)."""
    from agd_deploy.cli import main

    def run(args):
        capsys.readouterr()
        code = 0
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return _Result(code, out.out, out.err)
    return run


_PROFILE_IN_A_FRESH_PROCESS = """
import json, sys
from agd_deploy.runtimes import targets as T
from agd_deploy.profiling.profile import ProfileConfig, profile
loads = []
real_load = T.load_session
T.load_session = lambda *a, **k: loads.append(a[1]) or real_load(*a, **k)
target, shape, only, out = json.loads(sys.argv[1])
res = profile(ProfileConfig(target=target, input_shape=shape, rounds=3, only=only), out, progress=False)
print(json.dumps({"loads": loads, "entries": res.entries, "noise": res.noise}))
"""


@pytest.mark.parametrize("target", ["ort-cpu-fp32", "ort-cpu-int8"])
def test_profile_subset_writes_schema_1(tmp_path, target):
    # In a fresh interpreter, as `agd profile` runs: in the full suite's one process the int8 case segfaulted
    # here after an earlier test had forked pytest's process (DataLoader workers, now run in a subprocess too);
    # the profile itself is what this test checks.
    out = tmp_path / "t.json"
    proc = subprocess.run([sys.executable, "-c", _PROFILE_IN_A_FRESH_PROCESS,
                           json.dumps([target, SHAPE, SUBSET, str(out)])],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    loads = got["loads"]

    class res:  # noqa: N801 - the fields the assertions below read
        entries, noise = got["entries"], got["noise"]

    # 3 rounds = 3 timing passes (at most one per round), each with fresh sessions of every model (blocks + identity)
    assert len(loads) == 3 * (len(SUBSET) + 1) and len(set(loads)) == len(SUBSET) + 1
    lut = LUT.load(out)
    from contracts import check

    check("lut", out)  # the written table matches the shipped schema
    assert res.entries == len(SUBSET) and set(lut.entries) == set(SUBSET)
    assert lut.target == target and lut.space == "sr" and lut.space_hash == get_space("sr").space_hash
    assert lut.input_shape == SHAPE and lut.threads == 1 and lut.statistic == "min_ms"
    assert "onnxruntime" in lut.runtime and "agd_deploy" in lut.runtime and lut.device.get("cpu")
    for e in lut.entries.values():
        assert e["n"] == 3 and 0 <= e["min_ms"] <= e["p10_ms"] <= e["p50_ms"] <= e["p90_ms"]
    # a residual block at 40->64 does real work; a 64->64 skip is an identity (its entry is ~the call cost, removed)
    assert lut.ms("cell:residual:cin40:cout64:h16:w16") > lut.ms("cell:skip:cin64:cout64:h16:w16")
    assert lut.extra["profile"]["complete"] is False
    assert 0 <= res.noise < 1
    parts = lut.extra["profile"]["noise_parts"]
    assert set(parts) == {"interleaved", "passes"} and res.noise == pytest.approx(max(parts.values()), abs=1e-4)
    assert not (tmp_path / ".t.work").exists()  # work folder cleaned up


def test_int8_blocks_take_uint8(tmp_path):
    """An int8 block is lowered with quantized boundaries, as it runs inside a whole int8 net."""
    from agd_deploy.profiling.profile import lower_model
    from agd_deploy.runtimes import targets as T

    sp = get_space("sr")
    from agd_deploy.space import BlockSpec

    spec = BlockSpec.from_key("cell:conv3x3:cin24:cout40:h16:w16")
    t = T.get_target("ort-cpu-int8")
    art = lower_model(t, sp.build_block(spec), [1, 24, 16, 16], tmp_path, "b", quantized_io=True)
    s = T.load_session(t, art)
    assert s.input_dtype == np.uint8
    y = s.run(s.example_input())
    assert y.dtype == np.uint8 and y.shape == (1, 40, 16, 16)


def test_sigkill_then_rerun_resumes(tmp_path):
    """Kill -9 mid-timing; the rerun keeps the lowered blocks and finished rounds and completes the table."""
    out = tmp_path / "t.json"
    rounds = 400
    args = ["profile", "--target", "ort-cpu-fp32", "--input", "1x3x16x16", "--rounds", str(rounds),
            "--only", ",".join(SUBSET), "--out", str(out), "--json"]
    part = tmp_path / ".t.work" / "partial.json"
    p = subprocess.Popen([*AGD, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    done = 0
    deadline = time.time() + 180
    while time.time() < deadline and done < 5:
        time.sleep(0.05)
        try:
            done = json.loads(part.read_text())["rounds_done"]
        except (OSError, ValueError, KeyError):
            pass
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert 5 <= done < rounds, "the run should have been killed mid-timing"
    assert not out.exists()
    r = subprocess.run([*AGD, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["resumed_rounds"] >= 5 and s["lowered"] == 0  # nothing lowered or timed twice
    assert set(s) >= {"table", "entries", "seconds", "noise"} and s["entries"] == len(SUBSET)
    lut = LUT.load(out)
    assert all(e["n"] == rounds for e in lut.entries.values())
    assert not part.parent.exists()


def test_sample_archs_span_the_range():
    archs = sample_archs("sr", 12, seed=0)
    g = [count(build(a), [1, 3, 8, 8]).macs for a in archs]
    assert max(g) / min(g) > 3
    assert len({tuple(a.ops) for a in archs}) == 12


def test_metrics_on_known_numbers():
    meas = np.array([10.0, 20.0, 30.0, 40.0])
    pred = np.array([11.0, 19.0, 36.0, 40.0])  # errors 10%, 5%, 20%, 0%
    m = metrics(pred, meas)
    assert m["mape"] == pytest.approx((0.1 + 0.05 + 0.2 + 0) / 4)
    assert m["within_10pct"] == 0.75
    assert m["spearman"] == pytest.approx(1.0) and m["kendall"] == pytest.approx(1.0)
    assert metrics(meas[::-1].copy(), meas)["spearman"] == pytest.approx(-1.0)


def test_one_factor_tells_a_machine_that_changed_speed_from_a_table_that_does_not_fit():
    from agd_deploy.profiling.validate import one_factor

    pred = np.array([10.0, 20.0, 30.0, 40.0])
    moved = one_factor(pred, pred * 1.5 * np.array([1.0, 1.04, 0.97, 1.02]))  # the host got 1.5x slower
    assert moved["speed_factor"] == pytest.approx(1.5 * 1.01, rel=0.01) and moved["within_10pct_rescaled"] == 1.0
    assert metrics(pred, pred * 1.5)["within_10pct"] == 0.0
    wrong = one_factor(pred, pred * np.array([0.5, 1.0, 1.6, 1.0]))  # nets off by different factors
    assert wrong["speed_factor"] == pytest.approx(1.0) and wrong["within_10pct_rescaled"] == 0.5


def test_validate_small(tmp_path):
    """validate on a real runtime with a complete (synthetic-valued) table: report keys and a plot."""
    from test_lut import synthetic_lut

    lut = synthetic_lut("sr", shape=tuple(SHAPE))
    lut.save(tmp_path / "t.json")
    lut = LUT.load(tmp_path / "t.json")
    rep = validate(lut, n=3, seed=1, rounds=2, progress=False, plot=tmp_path / "v.png")
    assert rep["n"] == 3 and len(rep["points"]) == 3
    for k in ("lut", "flops"):
        assert set(rep[k]) >= {"mape", "within_10pct", "spearman", "kendall"}
        assert 0 <= rep[k]["within_10pct"] <= 1
    assert set(rep["lut"]) - set(rep["flops"]) == {"speed_factor", "within_10pct_rescaled"}
    assert rep["lut"]["within_10pct_rescaled"] >= rep["lut"]["within_10pct"] or rep["lut"]["speed_factor"] == 1
    assert "spearman" in rep["repeatability"]
    assert all(p["measured_ms"] > 0 and p["gmacs"] > 0 for p in rep["points"])
    assert (tmp_path / "v.png").stat().st_size > 10_000


# -- refusals: one line, exit 1, nothing overwritten ----------------------------------------------------------

def _one_line_error(r, *needles):
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_unknown_target_refused(tmp_path, agd):
    out = tmp_path / "t.json"
    out.write_text("keep me")
    r = agd(["profile", "--target", "nope-cpu-fp32", "--out", str(out)])
    _one_line_error(r, "unknown target", "ort-cpu-int8")
    assert out.read_text() == "keep me"


def test_missing_runtime_names_the_package(tmp_path, agd):
    import importlib.util

    if importlib.util.find_spec("agd_deploy.runtimes.tensorrt") is None:
        pytest.skip("the tensorrt adapter is not in this tree")
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here: nothing is missing")
    r = agd(["profile", "--target", "tensorrt-cuda-int8", "--out", str(tmp_path / "t.json")])
    _one_line_error(r, "tensorrt")
    assert not (tmp_path / "t.json").exists()


def test_bad_tables_refused(tmp_path, agd):
    from test_lut import synthetic_lut

    arch = tmp_path / "arch.json"
    arch.write_text(sample_archs("sr", 1, seed=0, input_shape=[1, 3, 64, 64])[0].to_json())
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"schema": 1, "entries": ')
    r = agd(["profile", "validate", "--table", str(corrupt)])
    _one_line_error(r, "not valid JSON")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**synthetic_lut("sr").to_dict(), "schema": 7}))
    _one_line_error(agd(["profile", "validate", "--table", str(other)]), "schema")
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({**synthetic_lut("sr").to_dict(), "space_hash": "deadbeef"}))
    _one_line_error(agd(["profile", "validate", "--table", str(stale)]), "space_hash")
    good = tmp_path / "good.json"
    synthetic_lut("sr").save(good)  # target ort-cpu-fp32
    _one_line_error(agd(["profile", "measure", str(arch), "--target", "ort-cpu-int8", "--table", str(good)]),
                    "not ort-cpu-int8")
    assert corrupt.read_text() == '{"schema": 1, "entries": '


def test_help_lists_subcommands():
    r = CliRunner().invoke(cli, ["profile", "--help"])
    assert r.exit_code == 0 and "measure" in r.output and "validate" in r.output


def test_cpu_clock_ignores_waiting_wall_clock_does_not():
    """The cpu clock counts the timing thread's work, not time spent off the CPU (sleep ~ preemption)."""
    from agd_deploy.runtimes.timing import timed_rounds

    def busy():
        x = 0
        for i in range(200_000):
            x += i
        return x

    runs = {"sleep": lambda: time.sleep(0.02), "busy": busy}
    cpu = [s for _, s in timed_rounds(runs, range(3), "cpu")]
    wall = [s for _, s in timed_rounds(runs, range(3), "wall")]
    assert len(cpu) == 3 and set(cpu[0]) == {"sleep", "busy"}
    assert max(s["sleep"] for s in cpu) < 5 and min(s["sleep"] for s in wall) >= 19
    assert min(s["busy"] for s in cpu) > 0.5  # real work is counted


def test_calibrate_fits_scale_and_overhead_on_reference_nets():
    from test_lut import synthetic_lut

    from agd_deploy.profiling import predict_ms
    from agd_deploy.profiling.profile import calibrate

    lut = synthetic_lut("sr")
    lut.overhead_ms = 0.0
    archs = sample_archs("sr", 4, seed=3)
    raw = [predict_ms(lut, a) for a in archs]
    lut.extra["profile"] = {"call_ms": 0.01, "reference_nets": [
        {"arch": {"ops": a.ops, "widths": a.widths}, "measured_ms": 0.9 * s + 3.0} for a, s in zip(archs, raw)]}
    calibrate(lut)
    assert lut.extra["profile"]["scale"] == pytest.approx(0.9, rel=1e-6)
    assert lut.overhead_ms == pytest.approx(3.0, abs=1e-3)
    for a, s in zip(archs, raw):
        assert predict_ms(lut, a) == pytest.approx(0.9 * s + 3.0, rel=1e-5)
    before = {k: e["min_ms"] for k, e in lut.entries.items()}
    calibrate(lut)  # idempotent (up to the 1e-6 ms rounding of stored entries)
    assert all(lut.entries[k]["min_ms"] == pytest.approx(v, abs=1e-5) for k, v in before.items())
    assert lut.extra["profile"]["scale"] == pytest.approx(0.9, rel=1e-6)


def test_calibrate_leaves_out_one_far_off_reference_net():
    """Six reference nets on one line but one 5% off (a block mis-timed in every pass): the fit leaves it out."""
    from test_lut import synthetic_lut

    from agd_deploy.profiling import predict_ms
    from agd_deploy.profiling.profile import calibrate, fit_scale

    lut = synthetic_lut("sr")
    lut.overhead_ms = 0.0
    archs = sample_archs("sr", 6, seed=4)
    raw = [predict_ms(lut, a) for a in archs]
    meas = [0.95 * s + 2.0 + (0.003 * s if i % 2 else -0.003 * s) for i, s in enumerate(raw)]  # +-0.3% jitter
    meas[3] *= 1.05
    lut.extra["profile"] = {"call_ms": 0.01, "reference_nets": [
        {"arch": {"ops": a.ops, "widths": a.widths}, "measured_ms": m} for a, m in zip(archs, meas)]}
    calibrate(lut)
    prof = lut.extra["profile"]
    assert [r["fitted"] for r in prof["reference_nets"]] == [True, True, True, False, True, True]
    assert prof["scale"] == pytest.approx(0.95, rel=0.01)
    assert 0 <= prof["scale_jackknife_rel"] < 0.02
    plain = fit_scale(raw, meas, 0.0, robust=False)[0]
    assert abs(plain - 0.95) > abs(prof["scale"] - 0.95)  # the plain fit is tilted by the far-off net
    # on a line with jitter only, nothing is left out
    assert fit_scale(raw, [0.95 * s + 2.0 for s in raw], 0.0)[2] is None


def test_profile_compare_cli(tmp_path, agd):
    """`agd profile compare A B`: a table agrees with itself; another target is one line, exit 1."""
    from test_lut import synthetic_lut

    a = tmp_path / "a.json"
    d = synthetic_lut("sr").to_dict()
    d["profile"] = {"noise_median_rel_diff": 0.01}
    a.write_text(json.dumps(d))
    r = agd(["profile", "compare", str(a), str(a), "--n", "10", "--json"])
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["agree"] is True and rep["blocks"]["median_rel_diff"] == 0 and rep["speed_ratio"] == 1
    b = tmp_path / "b.json"
    b.write_text(json.dumps({**d, "target": "ort-cpu-int8"}))
    _one_line_error(agd(["profile", "compare", str(a), str(b)]), "cannot compare")


def test_pooled_validation_is_the_metrics_of_all_nets():
    """`validate.pool` (the demo extends a brief check with more nets): metrics over the union of the points,
    the FLOPs fit refitted on all of them, the parts' sizes kept."""
    import numpy as np

    from agd_deploy.profiling.validate import flops_fit, lut_metrics, metrics, pool

    rng = np.random.default_rng(0)

    def report(n, seed):
        g = rng.uniform(0.2, 2.0, n)
        meas = 5 + 20 * g * rng.uniform(0.9, 1.1, n)
        pred = meas * rng.uniform(0.85, 1.15, n)
        return {"n": n, "seed": seed, "target": "ort-cpu-int8", "lut": metrics(pred, meas),
                "repeatability": {"spearman": 0.9 + seed / 100, "median_rel_diff": 0.01 * seed},
                "points": [{"predicted_ms": float(p), "measured_ms": float(m), "gmacs": float(x)}
                           for p, m, x in zip(pred, meas, g)]}

    a, b = report(8, 1), report(16, 2)
    p = pool([a, b])
    pts = a["points"] + b["points"]
    pred = np.array([x["predicted_ms"] for x in pts])
    meas = np.array([x["measured_ms"] for x in pts])
    gm = np.array([x["gmacs"] for x in pts])
    assert p["n"] == 24 and p["pooled_from"] == [8, 16] and p["seed"] == [1, 2]
    assert p["lut"] == lut_metrics(pred, meas)
    assert p["flops"] == metrics(flops_fit(gm, meas), meas)
    assert p["lut"]["within_10pct"] != a["lut"]["within_10pct"] or p["lut"]["mape"] != a["lut"]["mape"]
    assert abs(p["repeatability"]["median_rel_diff"] - (8 * 0.01 + 16 * 0.02) / 24) < 1e-12


_UNGUARDED_SCRIPT = """
from agd_deploy.profiling.validate import lower_archs
from agd_deploy.space import Arch
archs = [Arch.extreme("sr", False, [1, 3, 16, 16]), Arch.extreme("sr", True, [1, 3, 16, 16])]
print(lower_archs(archs, "ort-cpu-fp32", progress=False, jobs_n=2))
"""


def test_a_script_without_a_main_guard_gets_one_line_not_a_hang(tmp_path):
    """Conversion workers are spawned, and spawn re-runs the main script's top level in each one. Unguarded,
    that code asked for the cache lock its parent held while waiting for those workers: a silent hang forever.
    Now the worker refuses the lock, and the parent says why in one line."""
    script = tmp_path / "unguarded.py"
    script.write_text(_UNGUARDED_SCRIPT)
    env = dict(os.environ, AGD_CACHE_DIR=str(tmp_path / "cache"))
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert "AgdError" in last and 'if __name__ == "__main__":' in last
    guarded = tmp_path / "guarded.py"
    body = "".join(f"    {line}\n" for line in _UNGUARDED_SCRIPT.strip().splitlines()[2:])
    guarded.write_text("\n".join(_UNGUARDED_SCRIPT.strip().splitlines()[:2])
                       + "\n\ndef main():\n" + body + "\n\nif __name__ == '__main__':\n    main()\n")
    ok = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.count(".onnx") == 2
