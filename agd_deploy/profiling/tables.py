"""Where latency tables live, and which one describes this device: the one home for finding a table.

Two roots hold tables: the shipped ones (`latency_tables/` in a checkout, package data in a wheel) and the
user's (`<user cache>/latency_tables`, `AGD_CACHE_DIR` overrides the cache). Inside a root:

    <target>/<space>-<H>x<W>-t<threads>.json                          the project's first tables (path kept)
    <target>/<device_class>-<key8>/<space>-<H>x<W>-t<threads>.json    one folder per device

A table is only true on the device it was measured on (docs/ARCHITECTURE.md, "Device identity"), so lookup
prefers a table whose `device.device_key` is this machine's; any other table of the same target, space and
shape is a candidate that `profiling.check` must judge before it is used. Nothing here times anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..device import DeviceIdentity, identify, identity_of
from ..utils import cache_dir, resource_dir
from .lut import LUT, LUTError


def table_name(space: str, input_shape, threads: int) -> str:
    return f"{space}-{int(input_shape[2])}x{int(input_shape[3])}-t{int(threads)}.json"


def device_folder(identity: DeviceIdentity) -> str:
    """`x86_64-amd-f25m1-avx2-2c-1a2b3c4d`: readable, and unique by the key."""
    return f"{identity.device_class}-{identity.device_key[:8]}"


def shipped_root() -> Path:
    return resource_dir("latency_tables")


def user_root() -> Path:
    return cache_dir("latency_tables")


def shipped_path(target: str, space: str, input_shape, threads: int = 1) -> Path:
    """The first shipped table's path (latency_tables/<target>/<space>-<H>x<W>-t<threads>.json)."""
    return shipped_root() / target / table_name(space, input_shape, threads)


def device_path(root: Path, target: str, space: str, input_shape, threads: int = 1,
                identity: DeviceIdentity | None = None) -> Path:
    """Where a table of `identity` (default: this machine) lives under `root`."""
    return root / target / device_folder(identity or identify()) / table_name(space, input_shape, threads)


def user_path(target: str, space: str, input_shape, threads: int = 1,
              identity: DeviceIdentity | None = None) -> Path:
    """Where `agd profile` writes by default: the user's tables, in this device's folder."""
    return device_path(user_root(), target, space, input_shape, threads, identity)


@dataclass
class Found:
    """One table on disk that matches a request, and whose device it describes."""

    path: Path
    lut: LUT
    root: str                        # "user" | "shipped"
    device: DeviceIdentity | None    # None: a table without identity fields (unknown device)
    this_device: bool

    def describe(self) -> str:
        dev = self.device.describe() if self.device else "an unknown device (the table records no identity)"
        return f"{self.path} ({self.root}; measured on {dev})"


def candidates(target: str, space: str, input_shape, threads: int = 1,
               identity: DeviceIdentity | None = None) -> list[Found]:
    """Every table of `target` for this space version, input shape and thread count, in both roots; this
    device's first, then user before shipped, then newest first. Unreadable or mismatching files are skipped."""
    me = identity or identify()
    found: list[Found] = []
    name = table_name(space, input_shape, threads)
    for root_name, root in (("user", user_root()), ("shipped", shipped_root())):
        folder = root / target
        if not folder.is_dir():
            continue
        stem = name[:-len(".json")]  # device folders also hold checked copies: <stem>.from-<digest>.json
        for p in sorted([folder / name, *folder.glob(f"*/{name}"), *folder.glob(f"*/{stem}.from-*.json")]):
            if not p.is_file():
                continue
            try:
                lut = LUT.load(p)
                lut.check(space, target, input_shape)
            except LUTError:
                continue
            if lut.threads != threads or not lut.extra.get("profile", {}).get("complete", True):
                continue
            dev = identity_of(lut.device)
            found.append(Found(p, lut, root_name, dev, dev is not None and dev.device_key == me.device_key))
    found.sort(key=lambda f: f.lut.created, reverse=True)  # newest first, then (stable) by where it lives
    found.sort(key=lambda f: (not f.this_device, f.root != "user"))
    return found


def find(target: str, space: str, input_shape, threads: int = 1, this_device_only: bool = False,
         identity: DeviceIdentity | None = None) -> Found | None:
    """The best table for a request: this device's if one exists, else (unless `this_device_only`) the best
    other one, which the caller must check (`profiling.check.gate`)."""
    for f in candidates(target, space, input_shape, threads, identity):
        if f.this_device or not this_device_only:
            return f
    return None
