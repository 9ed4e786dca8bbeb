"""`agd search` end to end on a tiny setting: contract outputs, budgets, bad input, kill -9 + resume, 2-rank DDP."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agd_deploy.profiling import LUT
from agd_deploy.search import LatencyCost, SearchConfig
from agd_deploy.search.cost import block_gmacs
from agd_deploy.space import Arch, build, count, get_space
from agd_deploy.utils import sha256_file

TINY = {"name": "tiny", "space": "sr", "input_shape": [1, 3, 64, 64], "target": "ort-cpu-int8",
        "budget_frac": 0.5, "margin": 0.05, "max_side": 64, "patch": 8, "batch": 1, "steps": 4, "warmup": 1,
        "op_sampling": "gumbel", "sandwich": ["max", "min"], "lambda_every": 1, "ckpt_every": 1}


def synthetic_lut(shape=(1, 3, 64, 64), target="ort-cpu-int8") -> LUT:
    """Schema-1 table over every sr block: ms = 0.01 + 4*GMACs, dwsblock 3x slower per MAC (not MACs-shaped)."""
    sp = get_space("sr")
    entries = {}
    for b in sp.all_blocks(shape[2], shape[3]):
        ms = 0.01 + 4.0 * block_gmacs(sp, b) * (3.0 if b.op == "dwsblock" else 1.0)
        entries[b.key] = {"min_ms": ms, "p10_ms": ms, "p50_ms": ms, "p90_ms": ms, "n": 1}
    # recorded as this device's table (identity and runtime versions): `agd search` uses it without a check
    from agd_deploy.runtimes.base import device_fingerprint
    from agd_deploy.runtimes.targets import runtime_for

    return LUT(target, "sr", sp.space_hash, list(shape), 1, entries, overhead_ms=0.2, device=device_fingerprint(),
               runtime=runtime_for(target).versions())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A LUT file, a tiny ESRGAN teacher checkpoint, two images and a tiny recipe."""
    import yaml
    from PIL import Image

    from agd_deploy.nets.esrgan import RRDBNet

    d = tmp_path_factory.mktemp("search")
    synthetic_lut().save(d / "lut.json")
    torch.manual_seed(0)
    torch.save(RRDBNet(nf=8, nb=1, gc=4).state_dict(), d / "teacher.pth")
    (d / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        img = (np.cumsum(rng.normal(size=(64, 64, 3)), axis=1) * 8 + 128).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / "images" / f"im{i}.png")
    (d / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return d


def common(s: Path) -> list[str]:
    return [str(s / "tiny.yaml"), "--table", str(s / "lut.json"), "--teacher", f"esrgan-pth:{s / 'teacher.pth'}",
            "--data", str(s / "images")]


@pytest.fixture
def agd(capsys):
    """`agd ARGS` in-process through the real entry point (exit codes, one-line errors)."""
    from cli_helpers import run_cli

    return lambda *args: tuple(run_cli(capsys, *args))


def test_search_writes_the_contract(setup, agd, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = agd("search", *common(setup), "--budget-frac", "0.5", "--out", out, "--json")
    assert code == 0, err
    res = json.loads(stdout)
    d = json.loads((out / "arch.json").read_text())
    assert d == res
    from contracts import check

    check("arch", d)  # matches agd_deploy/schemas/arch.schema.json
    lc = LatencyCost(LUT.load(setup / "lut.json"))
    (lo, _), (hi, _) = lc.extremes()
    assert math.isclose(d["budget_ms"], lo + 0.5 * (hi - lo), rel_tol=1e-9)
    arch = Arch.load(out)
    assert d["space"] == "sr" and d["space_hash"] == get_space("sr").space_hash and d["input_shape"] == [1, 3, 64, 64]
    assert d["target"] == "ort-cpu-int8" and Path(d["lut"]) == setup / "lut.json"
    assert d["lut_sha256"] == sha256_file(setup / "lut.json")
    assert math.isclose(d["predicted_ms"], lc.predict(arch), rel_tol=1e-9)
    assert 0.85 * d["budget_ms"] <= d["predicted_ms"] <= 0.95 * d["budget_ms"] + 1e-9  # margin 5%, filled
    c = count(build(arch), [1, 3, 64, 64])
    assert math.isclose(d["gmacs"], c.gmacs, rel_tol=1e-9) and d["params"] == c.params
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all({"step", "loss", "lambda", "expected_ms"} <= set(r) for r in rows)
    assert all(lo <= r["expected_ms"] <= hi for r in rows)
    assert (out / "search_ckpt.pt").is_file()


def test_search_runs_under_cpu_bf16_autocast_when_asked(setup, agd, tmp_path):
    """--amp bf16 on the CPU is CPU autocast for the supernet too (auto stays fp32 there: only train times it)."""
    out = tmp_path / "bf16"
    code, stdout, err = agd("search", *common(setup), "--budget-frac", "0.5", "--out", out, "--json",
                            "--device", "cpu", "--amp", "bf16")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["search"]["amp"] == "bf16" and d["search"]["device"] == "cpu"
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(math.isfinite(r["loss"]) for r in rows)


def test_flops_search_gets_the_same_ms_budget_as_macs(setup, agd, tmp_path):
    out = tmp_path / "flops"
    code, stdout, err = agd("search", *common(setup), "--cost", "flops", "--budget-frac", "0.5", "--out", out,
                            "--json", "--steps", "2")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["cost"] == "flops" and d["budget"]["unit"] == "gmacs"
    a, b = d["budget"]["ms_per_gmac_fit"]
    assert b > 0 and math.isclose(a + b * d["budget_gmacs"], d["budget_ms"], rel_tol=1e-9)
    assert d["predicted_gmacs"] <= d["budget_gmacs"] * 0.95 + 1e-9
    assert math.isclose(d["gmacs"], d["predicted_gmacs"], rel_tol=1e-9)
    assert d["predicted_ms"] > 0  # reported from the table although the search never saw it
    assert "expected_gmacs" in json.loads((out / "log.jsonl").read_text().splitlines()[0])


def test_measure_checks_the_budget_on_the_real_target(setup, agd, tmp_path):
    """`--measure` times every derived arch on ort-cpu-int8 here (real onnxruntime, the table's int8
    lowering); an arch measured over budget * (1 - margin) is re-derived under the budget tightened by its
    measured / predicted. The synthetic table is not this CPU's, so whatever the CPU, the rule is what is
    checked: each step follows from the previous try's numbers."""
    out = tmp_path / "m"
    code, stdout, err = agd("search", *common(setup), "--budget-frac", "0.3", "--out", out, "--json", "--steps",
                            "2", "--measure")
    assert code == 0, err
    d = json.loads(stdout)
    from contracts import check

    check("arch", d)
    chk, budget = d["budget_check"], d["budget_ms"]
    tries = chk["tries"]
    assert 1 <= len(tries) <= 3 and all(t["measured_ms"] > 0 for t in tries)
    assert math.isclose(chk["accept_ms"], budget * 0.95, rel_tol=1e-3)
    assert d["measured_ms"] == chk["measured_ms"] == tries[-1]["measured_ms"]
    assert chk["met"] == (d["measured_ms"] <= budget)
    assert {"ops": d["ops"], "widths": d["widths"]} == {"ops": tries[-1]["ops"], "widths": tries[-1]["widths"]}
    assert tries[0]["predicted_ms"] <= budget * 0.95 + 1e-3  # the first is the plain derive
    lo = LatencyCost(LUT.load(setup / "lut.json")).extremes()[0][0]
    for prev, nxt in zip(tries, tries[1:]):  # a retry only after an over, under the tightened budget
        assert prev["measured_ms"] > chk["accept_ms"]
        tightened = budget * prev["predicted_ms"] / prev["measured_ms"]
        assert nxt["predicted_ms"] <= max(tightened * 0.95, lo) + 1e-3
    if len(tries) < 3 and tries[-1]["predicted_ms"] > lo + 1e-6:
        assert tries[-1]["measured_ms"] <= chk["accept_ms"] + 1e-3  # stopped because it was under
    code, _, err = agd("search", *common(setup), "--cost", "flops", "--measure", "--out", tmp_path / "f")
    assert code == 2 and "--measure checks a latency budget" in err and "Traceback" not in err


def _edited_lut(setup, tmp_path, **change) -> Path:
    d = json.loads((setup / "lut.json").read_text())
    d.update(change)
    p = tmp_path / "other.json"
    p.write_text(json.dumps(d))
    return p


@pytest.mark.parametrize("case,needle", [
    ("target", "not ort-cpu-fp32"),
    ("space", "space"),
    ("shape", "measured at input 1x3x32x32"),
    ("hash", "another version of the sr space"),
    ("below_min", "smallest arch"),
    ("frac", "--budget-frac"),
    ("gmacs_without_flops", "--cost flops"),
    ("bad_yaml", "not valid YAML"),
    ("bad_escape", "not valid YAML"),  # PyYAML raised OverflowError / ValueError here (found by tests/test_fuzz.py)
    ("too_deep", "nested too deeply"),
    ("not_utf8", "not UTF-8 text"),
    ("unknown_key", "unknown setting(s) stepz"),
    ("bad_value", "steps must be a positive integer"),
    ("no_recipe", "not found"),
    ("no_table", "missing.json"),
])
def test_bad_input_is_one_line(setup, agd, tmp_path, case, needle):
    args = common(setup) + ["--out", str(tmp_path / "o")]
    if case == "target":
        args += ["--target", "ort-cpu-fp32"]
    elif case == "space":
        args[2] = str(_edited_lut(setup, tmp_path, space="st"))
    elif case == "shape":
        args[2] = str(_edited_lut(setup, tmp_path, input_shape=[1, 3, 32, 32]))
    elif case == "hash":
        args[2] = str(_edited_lut(setup, tmp_path, space_hash="0123456789abcdef"))
    elif case == "below_min":
        args += ["--budget-ms", "0.5"]
    elif case == "frac":
        args += ["--budget-frac", "1.5"]
    elif case == "gmacs_without_flops":
        args += ["--budget-gmacs", "2"]
    elif case in ("bad_yaml", "bad_escape", "too_deep", "not_utf8", "unknown_key", "bad_value"):
        text = {"bad_yaml": "steps: [1, 2\n", "bad_escape": 'steps: "\\UFFFFFFFF"\n', "too_deep": "[" * 20000,
                "not_utf8": "steps: \udcff\n", "unknown_key": "stepz: 3\n", "bad_value": "steps: -3\n"}[case]
        (tmp_path / "r.yaml").write_bytes(text.encode("utf-8", "surrogateescape"))
        args[0] = str(tmp_path / "r.yaml")
    elif case == "no_recipe":
        args[0] = "no_such_recipe"
    elif case == "no_table":
        args[2] = str(tmp_path / "missing.json")
    code, _, err = agd("search", *args)
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err and needle in err, err
    assert len([ln for ln in lines if ln.startswith(("Error", "Usage", "Try"))]) >= 1 and len(lines) <= 3, err
    assert not (tmp_path / "o" / "arch.json").exists()


def test_below_minimum_names_the_minimum(setup, agd, tmp_path):
    (lo, _), _ = LatencyCost(LUT.load(setup / "lut.json")).extremes()
    code, _, err = agd("search", *common(setup), "--budget-ms", lo / 2, "--out", tmp_path / "o")
    assert code == 1 and f"{lo:.4g} ms" in err


def test_shipped_recipes_load():
    for name in ("sr_x4_tiny", "sr_x4", "cyclegan"):
        cfg = SearchConfig.load(name)
        assert cfg.name == name and cfg.steps > cfg.warmup
    assert SearchConfig.load("sr_x4_tiny").target == "ort-cpu-int8"
    assert SearchConfig.load("cyclegan").space == "st"


def _run_agd(args, env):
    return subprocess.Popen([sys.executable, "-m", "agd_deploy", "search", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_and_resume_continues_from_the_checkpoint(setup, tmp_path, agd):
    """SIGKILL mid-search, rerun with --resume: the log continues at the checkpoint step and the result equals
    an uninterrupted run (batches and Gumbel draws are restored)."""
    steps = 10
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "killed"
    p = _run_agd(common(setup) + ["--out", out, "--steps", steps, "--json"], env)
    ckpt, deadline = out / "search_ckpt.pt", time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if ckpt.is_file() and len((out / "log.jsonl").read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert p.poll() is None, "search ended before it could be killed: " + p.communicate()[1][-500:]
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done = torch.load(ckpt, weights_only=True)["step"]
    assert 1 <= done < steps and not (out / "arch.json").exists()
    p = _run_agd(common(setup) + ["--out", out, "--steps", steps, "--json", "--resume"], env)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr[-2000:]
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    assert torch.load(ckpt, weights_only=True)["step"] == steps
    # the same search without the kill, in-process on the same thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code, straight, err = agd("search", *common(setup), "--out", tmp_path / "straight", "--steps", steps,
                                  "--json")
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    a = torch.load(ckpt, weights_only=True)["net"]
    b = torch.load(tmp_path / "straight" / "search_ckpt.pt", weights_only=True)["net"]
    assert torch.allclose(a["alphas"], b["alphas"], atol=1e-5)
    assert json.loads(stdout)["ops"] == json.loads(straight)["ops"]


def _ddp_worker(rank, world, port, out_dir, lut_path):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from agd_deploy.data import PatchDataset, Sample
    from agd_deploy.search.distributed import init_from_env
    from agd_deploy.search.loop import run_loop

    dist = init_from_env()
    rng = np.random.default_rng(0)
    samples = []
    for i in range(2):
        t = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        samples.append(Sample(f"s{i}", t, rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), t))
    # each rank draws different batches: without the all-reduce the ranks would drift apart
    w_set = PatchDataset(samples[:1], 8, seed=10 + rank)
    a_set = PatchDataset(samples[1:], 8, seed=20 + rank)
    cfg = SearchConfig.from_dict({**TINY, "steps": 3, "ckpt_every": 100})
    res = run_loop(cfg, LatencyCost(LUT.load(lut_path)), 30.0, w_set, a_set, Path(out_dir), dist=dist,
                   progress=False)
    torch.save({k: v.clone() for k, v in res.net.state_dict().items()}, Path(out_dir) / f"rank{rank}.pt")
    dist.close()


def test_two_ranks_end_with_identical_parameters(setup, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path), str(setup / "lut.json")), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert a["alphas"].abs().sum() > 0  # the arch actually moved (alphas start at zero)
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3  # rank 0 alone writes


@pytest.mark.slow
def test_torchrun_cli_two_processes(setup, tmp_path):
    """The real launcher: `torchrun --nproc_per_node 2 --standalone -m agd_deploy search ...` (gloo on CPU)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--standalone", "-m", "agd_deploy", "search",
                        *common(setup), "--out", str(out), "--json"], env=env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    d = json.loads((out / "arch.json").read_text())
    assert d["search"]["world_size"] == 2 and d["predicted_ms"] <= d["budget_ms"]
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
