"""Which device a latency table describes.

A LUT is only valid on the hardware it was measured on, and ``model name : AMD EPYC`` names a Zen 1 (AVX2, no
VNNI) and a Zen 4 (AVX-512 VNNI) alike, though their int8 kernels run ~3x apart. So an identity records what
selects kernels and sets speed (x86 family/model, Arm core parts, ISA features, caches, cores, GPU) and hashes
exactly that into ``device_key``. Bottom layer: stdlib and ``agd_deploy.errors`` only.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import re
import shlex
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from agd_deploy.errors import AgdError

ISA_FEATURES_X86 = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                    "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
ISA_FEATURES_ARM = ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")  # cpuinfo "Features" names
INT8_DOT = {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"}  # features that give int8 dot-product kernels
BF16_MATH = {"avx512_bf16", "amx_bf16", "bf16"}  # features that give bf16 matmul/convolution kernels (x86, Arm)

ARM_IMPLEMENTERS = {"0x41": "ARM", "0x42": "Broadcom", "0x43": "Cavium", "0x48": "HiSilicon", "0x4e": "NVIDIA",
                    "0x51": "Qualcomm", "0x53": "Samsung", "0x61": "Apple", "0xc0": "Ampere"}
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd05": "Cortex-A55", "0xd08": "Cortex-A72", "0xd0a": "Cortex-A75",
             "0xd0b": "Cortex-A76", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
             "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd0c": "Neoverse-N1",
             "0xd40": "Neoverse-V1", "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2"}
# Phone SoC makers license Arm's cores (implementer 0x41); the "Hardware" line or ro.soc.model names the maker.
_SOC_VENDORS = (("Qualcomm", r"qualcomm|snapdragon|\bsm\d{4}|\bsdm?\d{3}\b"), ("Samsung", r"exynos|samsung"),
                ("MediaTek", r"mediatek|\bmt\d{4}"), ("HiSilicon", r"hisilicon|kirin"), ("Google", r"\btensor\b"))
_X86_VENDORS = {"AuthenticAMD": "amd", "GenuineIntel": "intel", "HygonGenuine": "hygon"}
# Strongest first: device_class shows the first tag whose features are present.
_X86_TAGS = (("amx", {"amx_tile", "amx_int8", "amx_bf16"}), ("avx512vnni", {"avx512_vnni"}), ("avxvnni", {"avx_vnni"}),
             ("avx512", {"avx512f"}), ("avx2", {"avx2"}), ("avx", {"avx"}), ("sse", {"sse4_2"}))
_ARM_TAGS = (("i8mm", {"i8mm"}), ("dotprod", {"asimddp"}), ("asimd", {"asimd"}))
_ABI_ARCH = {"arm64-v8a": "aarch64", "armeabi-v7a": "armv7l", "armeabi": "armv7l", "x86_64": "x86_64", "x86": "i686"}
_CACHE_LEVELS = ("l1d", "l2", "l3")


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(s).lower()).strip("-") or "unknown"


def _one_line(s: object, limit: int = 300) -> str:
    return " ".join(str(s).split())[:limit]


@dataclass(frozen=True)
class DeviceIdentity:
    """What a latency was measured on. Only ``device_key``'s fields decide whether two tables are comparable."""

    arch: str
    os: str
    vendor: str
    model_name: str
    family: int | None
    model: int | None
    stepping: int | None
    parts: tuple[str, ...]
    isa: tuple[str, ...]
    cache_kb: dict
    logical_cores: int
    usable_cores: int
    gpu: dict | None
    source: str
    warnings: tuple[str, ...] = ()

    def __post_init__(self):  # canonical shapes, so equal devices hash equal whatever built them
        set_ = functools.partial(object.__setattr__, self)
        set_("parts", tuple(sorted(self.parts or ())))
        set_("isa", tuple(sorted(self.isa or ())))
        set_("cache_kb", {k: (self.cache_kb or {}).get(k) for k in _CACHE_LEVELS})
        set_("gpu", dict(self.gpu) if self.gpu else None)
        set_("warnings", tuple(self.warnings or ()))

    @property
    def device_key(self) -> str:
        """16 hex chars over what changes latency; host name, OS release, stepping and driver do not."""
        gpu = self.gpu and {"name": self.gpu.get("name"), "compute_capability": self.gpu.get("compute_capability")}
        fields = {"arch": self.arch, "vendor": self.vendor, "family": self.family, "model": self.model,
                  "parts": list(self.parts), "isa": list(self.isa), "cache_kb": self.cache_kb,
                  "logical_cores": self.logical_cores, "gpu": gpu}
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def device_class(self) -> str:
        """A readable name for the kind of device, e.g. ``x86_64-amd-f25m17-avx512vnni-2c``."""
        x86 = self.arch in ("x86_64", "amd64", "i386", "i686", "x86")
        tag = next((t for t, fs in (_X86_TAGS if x86 else _ARM_TAGS) if fs & set(self.isa)), "generic")
        bits = [self.arch, _X86_VENDORS.get(self.vendor) or _slug(self.vendor)]
        if self.family is not None and self.model is not None:
            bits.append(f"f{self.family}m{self.model}")
        if self.parts:
            bits.append("+".join(self.parts))
        s = "-".join([*bits, tag, f"{self.logical_cores}c"])
        if self.gpu:
            s += f"-gpu-{_slug(self.gpu.get('name') or 'unknown')}"
            cc = self.gpu.get("compute_capability")
            s += f"-sm{str(cc).replace('.', '')}" if cc else ""
        return s

    @property
    def int8_dot(self) -> bool:
        return bool(INT8_DOT & set(self.isa))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(parts=list(self.parts), isa=list(self.isa), warnings=list(self.warnings),
                 device_key=self.device_key, device_class=self.device_class, int8_dot=self.int8_dot)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DeviceIdentity":
        """Tolerant of tables from other versions: unknown and derived keys are ignored, missing ones defaulted."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {"arch": "unknown", "os": "unknown", "vendor": "unknown", "model_name": "unknown", "family": None,
              "model": None, "stepping": None, "parts": (), "isa": (), "cache_kb": None, "logical_cores": 1,
              "usable_cores": None, "gpu": None, "source": "unknown"}
        kw.update({k: v for k, v in (d or {}).items() if k in names and v is not None})
        kw["usable_cores"] = kw["usable_cores"] or kw["logical_cores"]
        return cls(**kw)

    def describe(self) -> str:
        bits = [f"family {self.family} model {self.model}"] if self.family is not None else []
        bits += [f"parts {'+'.join(self.parts)}"] if self.parts else []
        bits.append(", ".join(self.isa) or "no known ISA features")
        usable = f", {self.usable_cores} usable" if self.usable_cores != self.logical_cores else ""
        bits.append(f"{self.logical_cores} cores{usable}")
        if self.gpu:
            bits.append(f"GPU {self.gpu.get('name')} cc {self.gpu.get('compute_capability')}")
        return f"{self.model_name} ({'; '.join(bits)}) [{self.device_class}, key {self.device_key}]"


def _int(s: str | None) -> int | None:
    try:
        return int(s)
    except (TypeError, ValueError):
        return None


def _kb(s: str | None) -> int | None:
    """'512 KB' (cpuinfo), '32768K' (sysfs), '1M' -> KiB."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", s or "", re.I)
    return int(m.group(1)) * {"": 1, "K": 1, "M": 1024, "G": 1024 ** 2}[m.group(2).upper()] if m else None


def _common(lines: list[str] | None) -> set[str]:
    """Features every core has: a kernel picked for one core may run on any."""
    sets = [set(line.split()) for line in lines or ()]
    return set.intersection(*sets) if sets else set()


def _soc_vendor(text: str) -> str | None:
    return next((v for v, pat in _SOC_VENDORS if re.search(pat, text, re.I)), None)


def parse_cpuinfo(text: str, source: str = "/proc/cpuinfo", arch: str | None = None, os_name: str | None = None,
                  logical_cores: int | None = None, usable_cores: int | None = None, gpu: dict | None = None,
                  cache_kb: dict | None = None) -> DeviceIdentity:
    """An identity from a cpuinfo text (x86 or arm64); raises AgdError when the text is not a cpuinfo."""
    vals: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            vals.setdefault(key.strip(), []).append(value.strip())
    first = lambda k: vals.get(k, [None])[0]  # noqa: E731
    x86 = "flags" in vals or "vendor_id" in vals
    if not (x86 or "Features" in vals or "CPU implementer" in vals):
        raise AgdError(f"{source}: not a cpuinfo (no vendor_id, flags, Features or CPU implementer line)")
    # One "processor" line per logical CPU; an excerpt of processor 0 alone still says its siblings.
    n = max(len(vals.get("processor", ())), _int(first("siblings")) or 0, 1)
    if x86:
        isa, vendor = _common(vals.get("flags")) & set(ISA_FEATURES_X86), first("vendor_id") or "unknown"
        name, parts = first("model name") or "unknown", ()
        fam, mod, step = _int(first("cpu family")), _int(first("model")), _int(first("stepping"))
        # The kernel's one "cache size" is L2 on AMD but the last level (L3) on Intel.
        cache = cache_kb or {"l3" if vendor == "GenuineIntel" else "l2": _kb(first("cache size"))}
    else:
        isa = _common(vals.get("Features")) & set(ISA_FEATURES_ARM)
        impl = Counter(v.lower() for v in vals.get("CPU implementer", ())).most_common(1)
        vendor = ARM_IMPLEMENTERS.get(impl[0][0], impl[0][0]) if impl else "unknown"
        hardware = first("Hardware")
        if vendor == "ARM" and hardware:
            vendor = _soc_vendor(hardware) or vendor
        parts = tuple(sorted({p.lower() for p in vals.get("CPU part", ())}))
        name = first("model name")
        if not name or re.match(r"ARMv\d", name):  # "ARMv8 Processor rev 0" says nothing
            name = hardware or f"{vendor} {' + '.join(ARM_PARTS.get(p, p) for p in parts)}".strip()
        fam = mod = step = None
        cache = cache_kb or {}
    logical = logical_cores or n
    return DeviceIdentity(arch=arch or ("x86_64" if x86 else "aarch64"), os=os_name or "unknown", vendor=vendor,
                          model_name=name, family=fam, model=mod, stepping=step, parts=parts, isa=tuple(isa),
                          cache_kb=cache, logical_cores=logical, usable_cores=usable_cores or logical, gpu=gpu,
                          source=source)


def _sysfs_cache(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> dict | None:
    """cpu0's caches as the kernel enumerates them: all levels, unlike cpuinfo's single 'cache size'."""
    out: dict = {}
    for d in sorted(root.glob("index*")):
        try:
            level, kind, size = ((d / n).read_text().strip() for n in ("level", "type", "size"))
        except OSError:
            continue
        slot = "l1d" if (level, kind) == ("1", "Data") else f"l{level}" if level in ("2", "3") else None
        if slot:
            out[slot] = _kb(size)
    return out if any(v is not None for v in out.values()) else None


def _gpu() -> tuple[dict | None, tuple[str, ...]]:
    """GPU 0 through torch.cuda. No torch or no GPU is not a warning; CUDA that says yes and then fails is."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None, ()
    except Exception:
        return None, ()
    try:
        major, minor = torch.cuda.get_device_capability(0)
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}",
               "driver": None, "count": torch.cuda.device_count(), "cuda": torch.version.cuda,
               "torch": torch.__version__, "memory_mb": int(props.total_memory // (1 << 20)),
               "multiprocessors": int(props.multi_processor_count)}
    except Exception as e:
        why = _one_line(f"CUDA is available but querying GPU 0 failed ({type(e).__name__}: {e}); no GPU recorded")
        _warn(why)
        return None, (why,)
    # The driver, CUDA and torch versions are not in the key (they rarely change speed; a table records its
    # runtime versions separately) but are worth recording.
    gpu["driver"] = nvidia_driver()
    return gpu, (() if gpu["driver"] else ("no GPU driver version (nvidia-smi and /proc/driver/nvidia/version "
                                           "missing or unreadable)",))


def parse_nvidia_version(text: str) -> str | None:
    """The driver version in /proc/driver/nvidia/version ('... Kernel Module  550.54.15  ...' or, for the open
    kernel modules, '... Open Kernel Module for x86_64  570.86.15  ...')."""
    m = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)", text or "")
    return m.group(1) if m else None


def nvidia_driver(proc: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The NVIDIA driver version: nvidia-smi's, else the kernel module's; None where neither answers."""
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=5)
        if r.returncode == 0 and r.stdout.split():
            return r.stdout.split()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return parse_nvidia_version(proc.read_text(errors="replace"))
    except OSError:
        return None


def _warn(why: str) -> None:
    from .log import warn

    warn(why)


def identify(cpuinfo: str | Path = "/proc/cpuinfo", with_gpu: bool = True) -> DeviceIdentity:
    """THIS machine. Never raises: a profile run should not die on an odd cpuinfo; the identity says why it is coarse.

    ``cpuinfo`` only replaces the text read; cores, OS and GPU are this process's. sysfs caches are read only for
    the real /proc/cpuinfo (another text's caches would be wrong). The default call is computed once per process.
    """
    if str(cpuinfo) == "/proc/cpuinfo":
        return _identify(Path("/proc/cpuinfo"), bool(with_gpu), live=True)
    return _identify.__wrapped__(Path(cpuinfo), with_gpu, live=False)


@functools.lru_cache(maxsize=None)  # only identify()'s default call goes through the cache
def _identify(path: Path, with_gpu: bool, live: bool) -> DeviceIdentity:
    gpu, notes = _gpu() if with_gpu else (None, ())
    cache = _sysfs_cache() if live else None
    logical = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = logical
    os_name, machine = f"{platform.system()} {platform.release()}".strip() or "unknown", platform.machine()
    try:
        return dataclasses.replace(parse_cpuinfo(path.read_text(errors="replace"), str(path), machine or None,
                                                 os_name, logical, usable, gpu, cache), warnings=notes)
    except Exception as e:  # noqa: BLE001 -- unreadable, empty, garbled: all degrade the same way
        why = _one_line(f"cpuinfo {path} unusable ({type(e).__name__}: {e}); device identity is coarse (platform only)")
        _warn(why)
    return DeviceIdentity(arch=machine or "unknown", os=os_name, vendor="unknown",
                          model_name=platform.processor() or machine or "unknown", family=None, model=None,
                          stepping=None, parts=(), isa=(), cache_kb=cache or {}, logical_cores=logical,
                          usable_cores=usable, gpu=gpu, source="platform", warnings=(why, *notes))


def identify_adb(adb: str, run=None) -> DeviceIdentity:
    """A phone through adb (``adb`` like "adb -s SERIAL shell"): its cpuinfo, plus getprop for product and SoC."""
    def adb_run(cmd: str) -> str:
        r = subprocess.run([*shlex.split(adb), cmd], capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise RuntimeError(f"exited {r.returncode}: {r.stderr or r.stdout}")
        return r.stdout

    def ask(cmd: str) -> str:  # every failure (no adb, timeout, unauthorized, offline) becomes one AgdError line
        try:
            return (run or adb_run)(cmd) or ""
        except AgdError:
            raise
        except Exception as e:
            raise AgdError(_one_line(f"adb: {cmd!r} failed ({type(e).__name__}: {e})")) from None

    text = ask("cat /proc/cpuinfo")
    props = ("ro.product.model", "ro.soc.model", "ro.build.version.release", "ro.product.cpu.abi")
    product, soc, release, abi = (ask(f"getprop {p}").strip() for p in props)
    try:
        ident = parse_cpuinfo(text, source="adb", arch=_ABI_ARCH.get(abi, abi or None),
                              os_name=f"Android {release}".strip())
    except AgdError as e:
        raise AgdError(_one_line(f"adb: the device's /proc/cpuinfo is unusable ({e})")) from None
    vendor = (_soc_vendor(soc) or ident.vendor) if ident.vendor == "ARM" and soc else ident.vendor
    name = f"{product} ({soc})" if product and soc else product or ident.model_name
    return dataclasses.replace(ident, vendor=vendor, model_name=name)


def identity_of(d: dict | None) -> DeviceIdentity | None:
    """The identity a table recorded, or None for a table from before device keys (its device is unknown)."""
    if isinstance(d, DeviceIdentity):
        return d
    if not isinstance(d, dict) or "device_key" not in d or "isa" not in d:
        return None
    return DeviceIdentity.from_dict(d)


def same_device(a: dict | DeviceIdentity | None, b: dict | DeviceIdentity | None) -> bool:
    """Whether two tables were measured on the same kind of device; an unknown device matches nothing."""
    def key(x):
        if isinstance(x, DeviceIdentity):
            return x.device_key
        return x.get("device_key") if identity_of(x) is not None else None

    ka = key(a)
    return bool(ka) and ka == key(b)


def describe_device(d: dict | None) -> str:
    """One line naming the device a table or manifest records (old tables' legacy dicts included)."""
    ident = identity_of(d)
    if ident is not None:
        return ident.describe()
    if d:
        return f"an unknown device (old table: cpu {d.get('cpu')!r}, {d.get('cores')} cores, no ISA recorded)"
    return "an unknown device (the table records none)"
