"""Device identity: tables from a Zen 1 and a Zen 4 "AMD EPYC" must not be mistaken for one another."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agd_deploy.device import (INT8_DOT, DeviceIdentity, identify, identify_adb, identity_of, parse_cpuinfo,
                               same_device)
from agd_deploy.errors import AgdError

FIXTURES = Path(__file__).parent / "fixtures" / "cpuinfo"
REPO = Path(__file__).resolve().parents[1]


def parsed(name: str) -> DeviceIdentity:
    path = FIXTURES / name
    return parse_cpuinfo(path.read_text(), source=str(path))


@pytest.fixture(scope="module")
def zen1():
    return parsed("amd-epyc-zen1-2c.cpuinfo")


@pytest.fixture(scope="module")
def zen3():
    return parsed("amd-epyc-zen3-2c.cpuinfo")


@pytest.fixture(scope="module")
def zen4():
    return parsed("amd-epyc-zen4-2c.cpuinfo")


def test_zen_generations_share_a_model_name_but_not_a_key(zen1, zen3, zen4):
    assert zen1.model_name == zen3.model_name == zen4.model_name == "AMD EPYC"
    assert len({zen1.device_key, zen3.device_key, zen4.device_key}) == 3
    assert all(len(k) == 16 and int(k, 16) >= 0 for k in (zen1.device_key, zen4.device_key))
    assert (zen1.family, zen1.model, zen1.stepping) == (23, 1, 2)
    assert (zen4.family, zen4.model) == (25, 17)
    assert zen3.isa == zen1.isa  # same ISA: only family/model (and caches) tell Zen 1 from Zen 3


def test_int8_dot_follows_vnni(zen1, zen3, zen4):
    assert zen4.int8_dot and "avx512_vnni" in zen4.isa and "avx512f" in zen4.isa
    assert not zen1.int8_dot and not zen3.int8_dot
    assert not any(f.startswith("avx512") or "vnni" in f for f in zen1.isa + zen3.isa)
    assert {"avx2", "fma", "f16c", "sse4_2", "avx"} <= set(zen1.isa)
    assert list(zen4.isa) == sorted(zen4.isa)
    assert "sha_ni" not in zen1.isa  # only kernel-selecting features are kept


def test_device_classes(zen1, zen3, zen4):
    assert zen4.device_class == "x86_64-amd-f25m17-avx512vnni-2c"
    assert zen3.device_class == "x86_64-amd-f25m1-avx2-2c"
    assert zen1.device_class == "x86_64-amd-f23m1-avx2-2c"


def test_x86_details(zen1, zen4):
    # the zen4 fixture is processor 0 alone: "siblings : 2" still says it is a 2-core machine
    assert zen4.logical_cores == zen4.usable_cores == 2 and zen1.logical_cores == 2
    assert zen1.cache_kb == {"l1d": None, "l2": 512, "l3": None}
    assert zen4.cache_kb["l2"] == 1024
    assert zen1.arch == "x86_64" and zen1.vendor == "AuthenticAMD" and zen1.parts == () and zen1.gpu is None
    desc = zen4.describe()
    assert desc.startswith("AMD EPYC (family 25 model 17;") and "avx512_vnni" in desc
    assert zen4.device_class in desc and zen4.device_key in desc


def test_intel_class_and_llc_cache():
    # a real block: a 2-core KVM guest of an AMX-capable Xeon (the hypervisor reports model 167 and no model number)
    ident = parsed("intel-xeon-f6m167-amx-2c.cpuinfo")
    assert ident.model_name == "Intel(R) Xeon(R) Processor" and ident.vendor == "GenuineIntel"
    assert ident.device_class == "x86_64-intel-f6m167-amx-2c"
    assert ident.cache_kb["l3"] == 107520  # Intel's one "cache size" is the last level
    assert ident.int8_dot and {"amx_int8", "avx512_vnni", "avx_vnni", "avx512_bf16"} <= set(ident.isa)
    assert ident.device_key not in {parsed(n).device_key for n in ("amd-epyc-zen3-2c.cpuinfo",
                                                                  "amd-epyc-zen4-2c.cpuinfo")}


def test_key_ignores_what_does_not_change_latency(zen4):
    text = (FIXTURES / "amd-epyc-zen4-2c.cpuinfo").read_text()
    again = parse_cpuinfo(text)
    assert again.device_key == zen4.device_key and again == parse_cpuinfo(text)
    other = parse_cpuinfo(text.replace("stepping\t: 1", "stepping\t: 2"), source="elsewhere", os_name="Linux 9.9",
                          usable_cores=1, gpu=None)
    assert other.device_key == zen4.device_key
    gpu = {"name": "NVIDIA H200", "compute_capability": "9.0", "driver": "550.1", "count": 1}
    with_gpu = parse_cpuinfo(text, gpu=gpu)
    assert with_gpu.device_key != zen4.device_key
    assert with_gpu.device_class == "x86_64-amd-f25m17-avx512vnni-2c-gpu-nvidia-h200-sm90"
    assert parse_cpuinfo(text, gpu={**gpu, "driver": "560.2", "count": 2}).device_key == with_gpu.device_key
    assert parse_cpuinfo(text, logical_cores=4).device_key != zen4.device_key


def test_same_key_across_calls_and_processes():
    here = identify()
    assert identify() is here  # memoized: computed once per process
    assert len(here.device_key) == 16 and here.source == "/proc/cpuinfo" and here.logical_cores >= 1
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", "from agd_deploy.device import identify; print(identify().device_key)"],
                         capture_output=True, text=True, timeout=120, cwd=REPO, env=env, check=True)
    assert out.stdout.strip() == here.device_key
    assert identify(with_gpu=False).device_key == identify(with_gpu=False).device_key


def test_round_trip_keeps_the_key(zen4):
    d = json.loads(json.dumps(zen4.to_dict()))
    assert d["device_key"] == zen4.device_key and d["device_class"] == zen4.device_class and d["int8_dot"] is True
    back = DeviceIdentity.from_dict(d)
    assert back == zen4 and back.device_key == zen4.device_key
    assert identity_of(d) == zen4 and same_device(d, zen4) and same_device(zen4, back)
    loose = DeviceIdentity.from_dict({"arch": "x86_64", "isa": ["avx2"], "future_field": 1, "device_key": "x"})
    assert loose.family is None and loose.parts == () and loose.cache_kb == {"l1d": None, "l2": None, "l3": None}


def test_old_table_device_is_unknown(zen3):
    old = {"cpu": "AMD EPYC", "cores": 2, "usable_cores": 2, "host": "vm", "os": "Linux 6.1", "machine": "x86_64",
           "gpu": None}
    assert identity_of(old) is None and identity_of(None) is None
    assert not same_device(old, old) and not same_device(old, zen3) and not same_device(None, None)
    assert not same_device(zen3.to_dict(), parsed("amd-epyc-zen1-2c.cpuinfo").to_dict())


def test_missing_cpuinfo_degrades_with_a_warning(tmp_path, caplog):
    ident = identify(tmp_path / "missing", with_gpu=False)
    assert "coarse" in caplog.text  # agd_deploy.log.warn
    assert ident.source == "platform" and ident.vendor == "unknown" and ident.isa == () and ident.warnings
    assert "missing" in ident.warnings[0] and ident.logical_cores >= 1 and len(ident.device_key) == 16


@pytest.mark.parametrize("content", [b"", b"\x00\xff\xfe garbage \x89PNG\r\n:::\n\n", b"hello: world\nfoo\n"])
def test_garbled_cpuinfo_degrades_with_a_warning(tmp_path, content, caplog):
    path = tmp_path / "cpuinfo"
    path.write_bytes(content)
    ident = identify(path, with_gpu=False)
    assert "coarse" in caplog.text
    assert ident.source == "platform" and ident.warnings and not ident.int8_dot
    with pytest.raises(AgdError, match="not a cpuinfo"):
        parse_cpuinfo(content.decode(errors="replace"), source=str(path))


def test_arm_server():
    n1 = parsed("arm-neoverse-n1-4c.cpuinfo")
    assert n1.arch == "aarch64" and n1.vendor == "ARM" and n1.model_name == "ARM Neoverse-N1"
    assert n1.parts == ("0xd0c",) and n1.logical_cores == 4 and n1.family is None
    assert "asimddp" in n1.isa and "i8mm" not in n1.isa and n1.int8_dot
    assert set(n1.isa) <= {"asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme"}
    assert n1.device_class == "aarch64-arm-0xd0c-dotprod-4c"


def test_arm_big_little_phone():
    phone = parsed("android-big-little-8c.cpuinfo")
    assert phone.parts == ("0xd05", "0xd41", "0xd44") and phone.logical_cores == 8
    assert phone.vendor == "Qualcomm" and phone.model_name == "Qualcomm Technologies, Inc SM8350"
    assert phone.int8_dot and INT8_DOT & set(phone.isa) == {"asimddp"}
    assert phone.device_class == "aarch64-qualcomm-0xd05+0xd41+0xd44-dotprod-8c"
    i8mm = parse_cpuinfo((FIXTURES / "android-big-little-8c.cpuinfo").read_text().replace("asimddp", "asimddp i8mm"))
    assert i8mm.device_class.endswith("-i8mm-8c") and i8mm.device_key != phone.device_key


def fake_adb(answers: dict):
    calls = []

    def run(cmd: str) -> str:
        calls.append(cmd)
        return answers[cmd]
    return run, calls


def test_identify_adb_through_the_run_seam():
    props = {"cat /proc/cpuinfo": (FIXTURES / "android-big-little-8c.cpuinfo").read_text(),
             "getprop ro.product.model": "Pixel-ish 8\n", "getprop ro.soc.model": "SM8350\n",
             "getprop ro.build.version.release": "14\n", "getprop ro.product.cpu.abi": "arm64-v8a\n"}
    run, calls = fake_adb(props)
    phone = identify_adb("adb -s SERIAL shell", run=run)
    assert "cat /proc/cpuinfo" in calls
    assert phone.source == "adb" and phone.os == "Android 14" and phone.arch == "aarch64"
    assert phone.model_name == "Pixel-ish 8 (SM8350)" and phone.vendor == "Qualcomm"
    assert phone.parts == ("0xd05", "0xd41", "0xd44") and phone.logical_cores == 8 and phone.int8_dot
    assert phone.device_key == parsed("android-big-little-8c.cpuinfo").device_key  # os/name are not in the key
    run, _ = fake_adb({**props, "getprop ro.soc.model": ""})
    assert identify_adb("adb shell", run=run).model_name == "Pixel-ish 8"


def test_identify_adb_failures_are_one_line_errors(tmp_path):
    def offline(cmd):
        raise subprocess.CalledProcessError(1, cmd, stderr="error: device offline\n")
    with pytest.raises(AgdError, match=r"^adb: ") as err:
        identify_adb("adb shell", run=offline)
    assert "\n" not in str(err.value)
    with pytest.raises(AgdError, match=r"^adb: .*cpuinfo"):
        identify_adb("adb shell", run=lambda cmd: "" if cmd == "cat /proc/cpuinfo" else "x")
    with pytest.raises(AgdError, match=r"^adb: ") as err:  # the real subprocess path: no such adb binary
        identify_adb(str(tmp_path / "no-adb") + " shell")
    assert "\n" not in str(err.value)


def test_gpu_is_recorded_when_present():
    gpu = identify().gpu
    if not gpu:
        pytest.skip("no CUDA GPU here")
    assert gpu["name"] and gpu["count"] >= 1 and gpu["compute_capability"].count(".") == 1
    assert "-gpu-" in identify().device_class and "-sm" in identify().device_class
