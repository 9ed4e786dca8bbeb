"""CPU mixed precision: `--amp bf16` is CPU autocast, `--amp auto` is measured on this CPU (train.device.
choose_cpu_amp), never assumed from one machine's result. The real-training test reads this CPU's own probe."""

import time

import pytest
import torch

from agd_deploy.device import BF16_MATH, identify
from agd_deploy.train.device import BF16_MIN_SPEEDUP, BF16_MIN_STEP_MS, Compute, choose_cpu_amp, resolve

CPU = Compute(torch.device("cpu"))


def test_cpu_bf16_is_autocast_with_channels_last_and_fp16_is_turned_off():
    c = resolve("cpu", "bf16")
    assert c.amp == torch.bfloat16 and c.channels_last and c.amp_name == "bf16"
    with c.autocast():
        y = torch.nn.Conv2d(3, 4, 3)(torch.rand(1, 3, 8, 8))
    assert y.dtype == torch.bfloat16  # a real autocast region, not a no-op
    f = resolve("cpu", "fp16")  # no CPU fp16 autocast for training: fp32, with one warning
    assert f.amp is None and not f.channels_last
    a = resolve("cpu", "auto")  # auto on the CPU is decided by a measurement, not by resolve
    assert a.amp is None and not a.channels_last


def _sleeper(fp32_s: float, bf16_s: float, calls: list):
    def step_under(c: Compute):
        def step():
            calls.append(c.amp_name)
            time.sleep(bf16_s if c.amp == torch.bfloat16 else fp32_s)
        return step
    return step_under


def test_auto_keeps_fp32_without_bf16_instructions_and_times_nothing():
    calls: list = []
    chosen, probe = choose_cpu_amp(_sleeper(0.05, 0.001, calls), CPU, isa=("avx2", "fma"))
    assert chosen is CPU and probe["chosen"] == "off" and "no bf16" in probe["why"] and calls == []


@pytest.mark.parametrize("fixture, times", [("amd-epyc-zen1-2c", False), ("amd-epyc-zen3-2c", False),
                                             ("arm-neoverse-n1-4c", False), ("amd-epyc-zen4-2c", True),
                                             ("intel-xeon-f6m167-amx-2c", True)])
def test_which_real_cpus_are_timed_at_all(fixture, times):
    """Real cpuinfo blocks: the Zen 1 / Zen 3 / Neoverse N1 list no bf16 instructions and stay fp32 untimed; the
    Zen 4 (AVX-512 BF16) and the Intel AMX guest are timed, and their own reading decides."""
    from pathlib import Path

    from agd_deploy.device import parse_cpuinfo

    text = (Path(__file__).parent / "fixtures" / "cpuinfo" / f"{fixture}.cpuinfo").read_text()
    calls: list = []
    chosen, probe = choose_cpu_amp(_sleeper(0.06, 0.015, calls), CPU, isa=parse_cpuinfo(text, fixture).isa, rounds=1)
    assert bool(calls) == times and (probe["chosen"] == "bf16") == times


@pytest.mark.parametrize("fp32_s, bf16_s, want", [(0.06, 0.015, "bf16"), (0.06, 0.06, "off"), (0.06, 0.1, "off"),
                                                  (0.02, 0.005, "off")])  # the last: a step too short to matter
def test_auto_takes_bf16_only_when_it_is_clearly_faster_on_steps_that_matter(fp32_s, bf16_s, want):
    calls: list = []
    chosen, probe = choose_cpu_amp(_sleeper(fp32_s, bf16_s, calls), CPU, isa=("amx_bf16",), rounds=3)
    assert chosen.amp_name == want == probe["chosen"]
    assert chosen.channels_last == (want == "bf16")
    assert sorted(set(calls)) == ["bf16", "off"] and len(calls) == 2 * (1 + 3)  # one warm-up + 3 rounds each
    assert (probe["speedup"] >= BF16_MIN_SPEEDUP and probe["fp32_step_ms"] >= BF16_MIN_STEP_MS) == (want == "bf16")
    assert probe["fp32_step_ms"] >= 1000 * fp32_s and probe["isa"] == ["amx_bf16"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from skimage import data

    from agd_deploy.data import Images
    from agd_deploy.nets import RRDBNet
    from agd_deploy.space import Arch
    from agd_deploy.teachers import load_teacher

    d = tmp_path_factory.mktemp("amp")
    torch.manual_seed(0)
    torch.save({"params": RRDBNet(nf=8, nb=1, gc=4).state_dict()}, d / "t.pth")
    imgs = Images(["astronaut", "rocket"], [data.astronaut()[100:196, 150:246], data.rocket()[200:280, 300:396]],
                  "skimage crops")
    return Arch.extreme("sr", largest=False), load_teacher(f"esrgan-pth:{d / 't.pth'}"), imgs, d


def _learned(res, arch, images, teacher, cache) -> float:
    """The trained student's L1 to the teacher over the untrained one's (same init seed, an unseen step's batch)."""
    from agd_deploy.data import PatchDataset, TeacherCache
    from agd_deploy.space import build
    from agd_deploy.train import load_ckpt

    model, _ = load_ckpt(res["ckpt"])
    ds = PatchDataset(TeacherCache(teacher, images, cache, max_side=512, progress=False), 8)
    x, t, _ = ds.batch(10_000, 8)
    torch.manual_seed(0)
    init = build(arch).eval()
    with torch.no_grad():
        return float((model(x) - t).abs().mean()) / float((init(x) - t).abs().mean())


def test_bf16_training_on_the_cpu_learns_and_says_so(tiny, tmp_path):
    from agd_deploy.train import TrainConfig, train

    arch, teacher, images, _ = tiny
    cfg = TrainConfig(steps=40, patch=8, batch=4, lr=2e-3, ckpt_every=10, amp="bf16", device="cpu")
    res = train(arch, teacher, images, cfg, tmp_path / "ck", cache_root=tmp_path / "cache", progress=False)
    assert res["amp"] == "bf16" and res["channels_last"] and res["amp_probe"] is None  # asked for: not measured
    assert _learned(res, arch, images, teacher, tmp_path / "cache") < 0.7


def test_auto_on_this_cpu_follows_its_own_reading(tiny, tmp_path):
    """Whatever this CPU is: no bf16 instructions -> fp32 untimed; else the choice follows the measured ratio."""
    from agd_deploy.train import TrainConfig, train

    arch, teacher, images, _ = tiny
    cfg = TrainConfig(steps=20, patch=8, batch=4, lr=2e-3, amp="auto", device="cpu")
    res = train(arch, teacher, images, cfg, tmp_path / "ck", cache_root=tmp_path / "cache", progress=False)
    probe = res["amp_probe"]
    assert res["amp"] == probe["chosen"]
    if not set(identify().isa) & BF16_MATH:
        assert probe["chosen"] == "off" and "fp32_step_ms" not in probe
    else:
        assert probe["fp32_step_ms"] > 0 and probe["bf16_step_ms"] > 0
        fast = probe["speedup"] >= BF16_MIN_SPEEDUP and probe["fp32_step_ms"] >= BF16_MIN_STEP_MS
        assert probe["chosen"] == ("bf16" if fast else "off")
    assert res["channels_last"] == (res["amp"] == "bf16")


def test_a_resumed_run_keeps_its_precision_without_timing():
    from agd_deploy.train.loop import _cpu_amp

    m = torch.nn.Conv2d(3, 3, 3)
    x = torch.rand(1, 3, 8, 8)
    chosen, probe = _cpu_amp(m, torch.nn.functional.l1_loss, x, x[..., 1:-1, 1:-1], CPU, "bf16")
    assert chosen.amp_name == "bf16" and chosen.channels_last and "resumed" in probe["why"]
    chosen, probe = _cpu_amp(m, torch.nn.functional.l1_loss, x, x[..., 1:-1, 1:-1], CPU, "off")
    assert chosen.amp is None and "resumed" in probe["why"]


@pytest.mark.slow
def test_the_side_by_side_benchmark_runs_and_reports_what_it_trained(tmp_path):
    """benchmarks/cpu_amp.py --tiny: three students (fp32, bf16, bf16 for the fp32 run's time) and this CPU's reading."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "r"
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "cpu_amp.py"), "--tiny", "--work",
                        str(tmp_path / "w"), "--out", str(out)], capture_output=True, text=True, timeout=1200,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.with_suffix(".json").read_text())
    assert [row["amp"] for row in res["rows"].values()] == ["off", "bf16", "bf16"]
    assert res["rows"]["fp32"]["steps"] == res["rows"]["bf16"]["steps"] == 3
    assert res["auto_reading"]["chosen"] in ("off", "bf16")
    assert "| fp32 | 3 |" in out.with_suffix(".md").read_text()
