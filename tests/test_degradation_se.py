"""benchmarks/degradation_se.py: the RCAB probe gives the residual op a global view, and only in its own process."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from agd_deploy.space import ops
from agd_deploy.space.frames import SRSpace

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "degradation_se.py"


@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location("degradation_se", SCRIPT)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def _far_effect(block: torch.nn.Module) -> float:
    """How much output pixel (15, 15) moves when input pixel (0, 0) does: two 3x3 convs see 2 pixels away only."""
    torch.manual_seed(0)
    x = torch.rand(1, 16, 16, 16)
    x2 = x.clone()
    x2[..., 0, 0] += 5.0
    with torch.no_grad():
        return float((block(x2) - block(x))[..., 15, 15].abs().max())


def test_rcab_sees_the_whole_input_and_hashes_as_another_space(mod, monkeypatch):
    torch.manual_seed(0)
    plain = ops.make_op("residual", 16, 16, ops.SR_FLAVOUR)
    before = SRSpace().space_hash
    monkeypatch.setitem(ops._OP_CLASSES, "residual", mod.RCAB)
    torch.manual_seed(0)
    gated = ops.make_op("residual", 16, 16, ops.SR_FLAVOUR)
    assert isinstance(gated, mod.RCAB) and SRSpace().space_hash != before  # a table of the plain space cannot price it
    assert _far_effect(plain) == 0.0
    assert _far_effect(gated) > 1e-6  # float noise would be ~1e-7; the plain op gives exactly 0
    x = torch.rand(1, 16, 12, 10)
    with torch.no_grad():
        gate = gated.se(gated.conv2(gated.conv1(x)))
    assert gate.shape == (1, 16, 1, 1) and bool(((gate > 0) & (gate < 1)).all())


def test_an_arch_without_residual_ops_is_refused(mod, tmp_path):
    from agd_deploy.space import Arch, get_space

    sp = get_space("sr")
    arch = Arch("sr", ["skip"] * sp.n_positions, {k: v[-1] for k, v in sp.width_vars.items()})
    p = tmp_path / "arch.json"
    p.write_text(arch.to_json())
    with pytest.raises(SystemExit, match="no residual op"):
        mod.main(["--arch", str(p), "--out", str(tmp_path / "out")])
