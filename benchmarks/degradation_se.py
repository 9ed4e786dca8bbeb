"""Would a global branch let one student serve clean and degraded inputs? A probe before adding an op (issue 18).

The mixed-input students of benchmarks/degradation.py trade (a) native and (c) clean inputs against (b) degraded
ones. One reading: the student cannot tell a noisy input from a clean one with 3x3 convs, and averages the
teacher's two behaviours. A squeeze-excite gate sees the whole input; RCAN's residual channel-attention block
(RCAB: conv-act-conv, times sigmoid(1x1-act-1x1 of the global average), plus the shortcut) is the usual way to give
an SR net one. Adding an op to the search space costs a new space_hash and new latency tables on every device, so
this probe first measures whether it pays: it swaps the sr space's `residual` op for RCAB in this process only,
re-stamps ARCH with the patched space's hash (written next to the results as OUT.arch.json), and runs
benchmarks/degradation.py with the remaining arguments. Nothing outside this process changes.

    python benchmarks/degradation_se.py --arch benchmarks/results/degradation-psnr-res5.arch.json \
        --out benchmarks/results/degradation-psnr-res5-se --degradations bicubic,native+realesrgan+clean:0.6 \
        --variants 16 --loss psnr --amp bf16 --steps 1800 --no-export --extra-data DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from agd_deploy.space import Arch, get_space, ops  # noqa: E402
from agd_deploy.utils import atomic_write_text  # noqa: E402

REDUCTION = 16  # RCAN's channel reduction in the gate


class RCAB(ops.Residual):
    """The residual op with a squeeze-excite gate on its branch (RCAN's RCAB, no normalisation)."""

    def __init__(self, cin: int, cout: int, fl: ops.Flavour):
        super().__init__(cin, cout, fl)
        mid = max(4, cout // REDUCTION)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cout, mid, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(mid, cout, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y * self.se(y) + self.shortcut(x)


def main(argv: list[str]) -> int:
    if "--arch" not in argv or "--out" not in argv:
        raise SystemExit("usage: degradation_se.py --arch ARCH --out OUT [benchmarks/degradation.py's other arguments]")
    i, o = argv.index("--arch") + 1, argv.index("--out") + 1
    d = json.loads(Path(argv[i]).read_text())
    d.pop("space_hash", None)  # ARCH is of the unpatched space; it is re-stamped below
    arch = Arch.from_dict(d, argv[i])
    if "residual" not in arch.ops:
        raise SystemExit(f"{argv[i]} has no residual op: nothing to probe")
    ops._OP_CLASSES["residual"] = RCAB
    get_space(arch.space).__dict__.pop("space_hash", None)  # a hash cached before the patch would be the old one
    stamped = Path(argv[o] + ".arch.json")
    stamped.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamped, arch.to_json())
    argv = list(argv)
    argv[i] = str(stamped)
    import degradation

    return degradation.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
