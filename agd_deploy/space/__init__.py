"""The AGD search space: candidate ops, widths, the SR and ST frames, Arch, derived nets, MAC counting."""

from .arch import Arch, ArchError, sample_archs
from .counter import Count, count
from .derived import build
from .frames import SPACES, BlockSpec, Slot, Space, get_space
from .ops import OPS, WIDTH_MULTS, make_divisible, width_choices

__all__ = ["Arch", "ArchError", "BlockSpec", "Count", "OPS", "SPACES", "Slot", "Space", "WIDTH_MULTS", "build",
           "count", "get_space", "make_divisible", "sample_archs", "width_choices"]
