"""`Arch`: one point of a search space, JSON-serialisable, validated against its space."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArchError
from .frames import BlockSpec, Space, get_space


@dataclass
class Arch:
    space: str
    ops: list[str]
    widths: dict[str, int]
    input_shape: list[int] = field(default_factory=lambda: [1, 3, 64, 64])
    meta: dict[str, Any] = field(default_factory=dict)  # extra keys (search results...) kept on round-trip

    # -- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        sp = get_space(self.space)
        d = {"space": self.space, "space_hash": sp.space_hash, "input_shape": list(self.input_shape),
             "ops": list(self.ops), "widths": dict(self.widths)}
        d.update({k: v for k, v in self.meta.items() if k not in d})
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Any, source: str = "arch") -> "Arch":
        if not isinstance(d, dict):
            raise ArchError(f"{source}: expected a JSON object with 'space', 'ops' and 'widths'")
        missing = [k for k in ("space", "ops", "widths") if k not in d]
        if missing:
            raise ArchError(f"{source}: missing key(s) {', '.join(missing)}")
        try:
            sp = get_space(d["space"])
        except ValueError as e:
            raise ArchError(f"{source}: {e}") from None
        if "space_hash" in d and d["space_hash"] != sp.space_hash:
            raise ArchError(f"{source}: made for another version of the {sp.name} space "
                            f"(space_hash {d['space_hash']} != {sp.space_hash})")
        ops, widths = d["ops"], d["widths"]
        if not isinstance(ops, list) or not isinstance(widths, dict):
            raise ArchError(f"{source}: 'ops' must be a list and 'widths' an object")
        shape = d.get("input_shape", list(sp.default_input))
        meta = {k: v for k, v in d.items() if k not in ("space", "space_hash", "ops", "widths", "input_shape")}
        arch = cls(sp.name, list(ops), {str(k): v for k, v in widths.items()}, list(shape) if isinstance(shape, list) else shape, meta)
        arch.validate(source)
        return arch

    @classmethod
    def from_json(cls, text: str, source: str = "arch") -> "Arch":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArchError(f"{source}: not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d, source)

    @classmethod
    def load(cls, path: str | Path) -> "Arch":
        p = Path(path)
        if p.is_dir():
            p = p / "arch.json"
        try:
            text = p.read_text()
        except OSError as e:
            raise ArchError(f"cannot read arch {p}: {e.strerror or e}") from None
        return cls.from_json(text, str(p))

    # -- checks ---------------------------------------------------------------------------------
    @property
    def space_obj(self) -> Space:
        return get_space(self.space)

    def validate(self, source: str = "arch") -> None:
        sp = self.space_obj
        if len(self.ops) != sp.n_positions:
            raise ArchError(f"{source}: the {sp.name} space has {sp.n_positions} positions, got {len(self.ops)} ops")
        for i, op in enumerate(self.ops):
            if op not in sp.ops:
                raise ArchError(f"{source}: op {i} is {op!r}; ops are {', '.join(sp.ops)}")
        want = sp.width_vars
        extra = sorted(set(self.widths) - set(want))
        if extra:
            raise ArchError(f"{source}: unknown width(s) {', '.join(extra)} for the {sp.name} space")
        for name, choices in want.items():
            if name not in self.widths:
                raise ArchError(f"{source}: width {name!r} missing")
            v = self.widths[name]
            if not isinstance(v, int) or isinstance(v, bool) or v not in choices:
                raise ArchError(f"{source}: width {name}={v!r} not one of {list(choices)}")
        if not isinstance(self.input_shape, list) or not all(isinstance(s, int) for s in self.input_shape):
            raise ArchError(f"{source}: input_shape must be a list of 4 integers")
        try:
            sp.check_input(self.input_shape)
        except ValueError as e:
            raise ArchError(f"{source}: {e}") from None

    def blocks(self, input_shape: list[int] | tuple[int, ...] | None = None) -> list[BlockSpec]:
        """The blocks of this arch in forward order, at `input_shape` (default: the arch's)."""
        sp = self.space_obj
        _, _, h, w = sp.check_input(input_shape or self.input_shape)
        return [sp.resolve(s, self.ops, self.widths) for s in sp.slots(h, w)]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and self.to_dict() == other.to_dict()

    # -- named points -----------------------------------------------------------------------------
    @classmethod
    def sample(cls, space: str, rng: random.Random | int | None = None, input_shape=None) -> "Arch":
        """A uniformly random arch (ops and widths independently)."""
        sp = get_space(space)
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        ops = [rng.choice(sp.ops) for _ in range(sp.n_positions)]
        widths = {k: rng.choice(v) for k, v in sp.width_vars.items()}
        return cls(sp.name, ops, widths, list(input_shape or sp.default_input))

    @classmethod
    def extreme(cls, space: str, largest: bool, input_shape=None) -> "Arch":
        """Largest: every op `residual` at full width; smallest: every op `skip` at the narrowest width."""
        sp = get_space(space)
        op = "residual" if largest else "skip"
        widths = {k: (max(v) if largest else min(v)) for k, v in sp.width_vars.items()}
        return cls(sp.name, [op] * sp.n_positions, widths, list(input_shape or sp.default_input))


def sample_archs(space: str, n: int, seed: int = 0, input_shape=None) -> list[Arch]:
    """n random archs spanning the latency range: each arch draws a "width level" and a "skip share", then
    widths near that level and ops with that share of `skip`, so narrow/cheap and wide/heavy nets both appear
    (uniform sampling alone concentrates around the middle)."""
    sp = get_space(space)
    rng = random.Random(seed)
    archs = []
    for _ in range(n):
        level = rng.uniform(0, 4)
        skip_share = rng.uniform(0, 0.6)
        widths = {}
        for name, ch in sp.width_vars.items():
            i = int(round(min(len(ch) - 1, max(0, level + rng.uniform(-1.5, 1.5)))))
            widths[name] = ch[i]
        others = [o for o in sp.ops if o != "skip"]
        ops = ["skip" if rng.random() < skip_share else rng.choice(others) for _ in range(sp.n_positions)]
        archs.append(Arch(sp.name, ops, widths, list(input_shape or sp.default_input)))
    return archs
