"""Search recipes: a YAML file of `SearchConfig` fields (top-level `search/*.yaml`, found by name or path)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AgdError
from ..utils import find_resource, read_yaml


class RecipeError(AgdError):
    """A recipe that cannot be read or holds a bad value."""


@dataclass
class SearchConfig:
    name: str = "search"
    space: str = "sr"
    input_shape: list[int] = field(default_factory=lambda: [1, 3, 64, 64])  # deployment input (the LUT's)
    target: str = "ort-cpu-int8"
    cost: str = "latency"                 # latency | flops
    budget_frac: float | None = 0.5       # default budget: min + frac*(max-min) of the predicted cost
    budget_ms: float | None = None
    budget_gmacs: float | None = None
    margin: float = 0.05                  # derive aims at budget*(1-margin): room for measurement noise
    fill: bool = True                     # derive grows the arch back up to the margin when it is well under
    teacher: str | None = "realesrgan-x4plus"
    data: str | None = None               # folder of images; None = built-in images (data.open_images)
    max_side: int | None = 256            # images centre-cropped to this before the teacher runs (its cost)
    degradation: str | None = None        # LR inputs (data/degrade.py: bicubic | realesrgan | jpeg:Q | noise:S);
                                          # None: the teacher's default (teachers.default_degradation)
    variants: int = 1                     # degraded variants per image (the teacher cache keeps them all)
    patch: int = 16                       # input patch side per sample in a step
    batch: int = 4
    steps: int = 200
    warmup: int = 40                      # weight-only steps before arch steps start
    arch_every: int = 1
    op_sampling: str = "mixture"          # mixture (DARTS, AGD) | gumbel (one sampled op per position: cheap)
    sandwich: list[str] = field(default_factory=lambda: ["max", "min", "sample"])
    lr_weights: float = 1e-3
    lr_arch: float = 3e-3
    arch_weight_decay: float = 1e-3
    tau_start: float = 5.0                # Gumbel temperature, annealed linearly to tau_end
    tau_end: float = 1.0
    lambda_init: float = 1.0
    lambda_low: float = 0.85
    lambda_high: float = 1.0
    lambda_every: int = 5
    lambda_min: float = 1e-3
    lambda_max: float = 1e3
    ckpt_every: int = 20
    seed: int = 0
    threads: int | None = None            # torch CPU threads (None: leave torch's setting); 1 on a shared box

    def validate(self, source: str = "recipe") -> "SearchConfig":
        def bad(msg: str):
            raise RecipeError(f"{source}: {msg}")

        for k in ("budget_frac", "budget_ms", "budget_gmacs", "margin", "lr_weights", "lr_arch", "tau_start",
                  "tau_end", "lambda_init", "lambda_low", "lambda_high", "lambda_min", "lambda_max",
                  "arch_weight_decay"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                bad(f"{k} must be a number, got {v!r}")
        if self.space not in ("sr", "st"):
            bad(f"space must be sr or st, got {self.space!r}")
        if (not isinstance(self.input_shape, list) or len(self.input_shape) != 4
                or not all(isinstance(v, int) and v > 0 for v in self.input_shape)):
            bad(f"input_shape must be 4 positive integers like [1, 3, 64, 64], got {self.input_shape!r}")
        if self.cost not in ("latency", "flops"):
            bad(f"cost must be latency or flops, got {self.cost!r}")
        if self.degradation is not None:
            from ..data.degrade import get_degradation

            try:
                get_degradation(self.degradation)
            except AgdError as e:
                bad(f"degradation: {e}")
        for k in ("patch", "batch", "steps", "arch_every", "lambda_every", "ckpt_every", "variants"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(f"{k} must be a positive integer, got {v!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            bad(f"warmup must be an integer >= 0, got {self.warmup!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            bad(f"threads must be a positive integer or null, got {self.threads!r}")
        if self.max_side is not None and (not isinstance(self.max_side, int) or self.max_side < 4 * self.patch):
            bad(f"max_side must be an integer >= 4*patch ({4 * self.patch}) or null, got {self.max_side!r}")
        if self.budget_frac is not None and not 0.0 <= self.budget_frac <= 1.0:
            bad(f"budget_frac must be in [0, 1], got {self.budget_frac}")
        if not 0.0 <= self.margin < 0.5:
            bad(f"margin must be in [0, 0.5), got {self.margin}")
        if self.op_sampling not in ("mixture", "gumbel"):
            bad(f"op_sampling must be mixture or gumbel, got {self.op_sampling!r}")
        if not self.sandwich or any(m not in ("max", "min", "sample") for m in self.sandwich):
            bad(f"sandwich must list max/min/sample, got {self.sandwich!r}")
        for k in ("lr_weights", "lr_arch", "tau_start", "tau_end", "lambda_init", "lambda_min", "lambda_max"):
            if not getattr(self, k) > 0:
                bad(f"{k} must be positive, got {getattr(self, k)!r}")
        return self

    @classmethod
    def from_dict(cls, d: Any, source: str = "recipe") -> "SearchConfig":
        """Strictly (`agd_deploy.config.load`): unknown keys and wrong types are a ConfigError (exit 2)
        naming the key; then the value checks of `validate`."""
        from ..config import load

        if not isinstance(d, dict):
            raise RecipeError(f"{source}: a recipe must be a YAML mapping of settings")
        return load(cls, d, source).validate(source)

    @classmethod
    def load(cls, recipe: str | Path) -> "SearchConfig":
        path = find_resource("search", str(recipe))
        if path is None:
            raise RecipeError(f"recipe {recipe!r} not found (not a file, nor a shipped recipe in search/)")
        d = read_yaml(path, "recipe", RecipeError)
        cfg = cls.from_dict(d, str(path))
        if isinstance(d, dict) and "name" not in d:
            cfg.name = path.stem
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
