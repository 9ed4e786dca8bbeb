"""Per-layer int8 sensitivity, for `--keep-fp32 auto`: which convs hurt most when quantized?

Measured on calibration crops only (held-out crops stay for verification), in two steps so a 351-conv
Real-ESRGAN takes minutes, not an hour:
  1. one pass with hooks: each conv's *local* error (its output with u8 input / s8 per-channel weights vs float,
     as SQNR in dB) — a cheap screen;
  2. for the `screen` worst by step 1, the *global* effect: the whole model with only that conv fake-quantized,
     PSNR of the output vs fp32. The ranking (lowest PSNR first) is what the manifest shows.
Then `auto` quantizes with the shared ORT lowering, keeping the top 1, 2, 4, ... layers in fp32 until the int8
model reaches the profile's `keep_fp32_target_db` on the calibration crops (or `keep_fp32_max` layers); `auto:N`
keeps the top N. Fake quantization mimics ORT's scheme (u8 asymmetric per-tensor min/max activations, s8
symmetric per-channel weights); the artifact itself always comes from `agd_deploy.quant`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AgdError
from .metrics import psnr


def _fq_act(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / 255.0
    zp = round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zp, 0, 255) - zp) * scale


def _fq_weight(w: torch.Tensor, transposed: bool, qmax: int = 127) -> torch.Tensor:
    """Symmetric per-channel; qmax 63 for the 7-bit weights of reduce_range (ExportConfig.int8)."""
    axis = 1 if transposed else 0
    dims = [d for d in range(w.dim()) if d != axis]
    scale = w.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / qmax
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


def _convs(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}


def _run_conv(m: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if isinstance(m, nn.ConvTranspose2d):
        return F.conv_transpose2d(x, w, m.bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation)
    return m._conv_forward(x, w, m.bias)


@torch.no_grad()
def input_ranges(model: nn.Module, inputs: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    """Min/max of every conv's input over the calibration inputs (what a MinMax calibrator records)."""
    ranges: dict[str, list[float]] = {}
    hooks = []
    for name, m in _convs(model).items():
        def hook(mod, args, name=name):
            x = args[0]
            r = ranges.setdefault(name, [math.inf, -math.inf])
            r[0], r[1] = min(r[0], float(x.min())), max(r[1], float(x.max()))
        hooks.append(m.register_forward_pre_hook(hook))
    try:
        for a in inputs:
            model(torch.from_numpy(a))
    finally:
        for h in hooks:
            h.remove()
    return {k: (v[0], v[1]) for k, v in ranges.items()}


@torch.no_grad()
def local_sqnr(model: nn.Module, inputs: list[np.ndarray], ranges, qmax: int = 127) -> dict[str, float]:
    """Each conv's own quantization error (SQNR, dB; lower = worse), all convs in one forward pass per input."""
    sig: dict[str, float] = {}
    err: dict[str, float] = {}
    hooks = []
    for name, m in _convs(model).items():
        wq = _fq_weight(m.weight, isinstance(m, nn.ConvTranspose2d), qmax)

        def hook(mod, args, out, name=name, wq=wq):
            xq = _fq_act(args[0], *ranges[name])
            yq = _run_conv(mod, xq, wq)
            sig[name] = sig.get(name, 0.0) + float((out.double() ** 2).sum())
            err[name] = err.get(name, 0.0) + float(((out - yq).double() ** 2).sum())
        hooks.append(m.register_forward_hook(hook))
    try:
        for a in inputs:
            model(torch.from_numpy(a))
    finally:
        for h in hooks:
            h.remove()
    return {n: (100.0 if err[n] <= 0 else 10 * math.log10(max(sig[n], 1e-30) / err[n])) for n in sig}


@torch.no_grad()
def global_psnr(model: nn.Module, name: str, inputs, refs, ranges, value_range, qmax: int = 127) -> float:
    """PSNR of the model's output vs fp32 when only conv `name` is (fake-)quantized."""
    m = _convs(model)[name]
    wq = _fq_weight(m.weight, isinstance(m, nn.ConvTranspose2d), qmax)
    h = m.register_forward_hook(lambda mod, args, out: _run_conv(mod, _fq_act(args[0], *ranges[name]), wq))
    try:
        outs = [model(torch.from_numpy(a)).numpy() for a in inputs]
    finally:
        h.remove()
    return float(np.mean([psnr(r, o, value_range) for r, o in zip(refs, outs)]))


def rank_layers(model: nn.Module, inputs: list[np.ndarray], value_range, screen: int = 16,
                progress: bool = True, weight_bits: int = 8) -> list[dict[str, Any]]:
    """Convs ordered most sensitive first: [{"layer", "psnr_db", "sqnr_db"}] (psnr only for the screened)."""
    model = model.eval()
    ranges = input_ranges(model, inputs)
    qmax = 2 ** (weight_bits - 1) - 1
    sq = local_sqnr(model, inputs, ranges, qmax)
    with torch.no_grad():
        refs = [model(torch.from_numpy(a)).numpy() for a in inputs]
    screened = sorted(sq, key=lambda n: sq[n])[:screen]
    it = screened
    if progress:
        from tqdm import tqdm

        it = tqdm(screened, desc="sensitivity", unit="layer", leave=False)
    rows = [{"layer": n, "psnr_db": round(global_psnr(model, n, inputs, refs, ranges, value_range, qmax), 3),
             "sqnr_db": round(sq[n], 3)} for n in it]
    rows.sort(key=lambda r: r["psnr_db"])
    rest = [{"layer": n, "psnr_db": None, "sqnr_db": round(sq[n], 3)} for n in sq if n not in screened]
    return rows + sorted(rest, key=lambda r: r["sqnr_db"])


def choose_fp32_layers(spec: str, source, example, cfg, prof, log=None, progress: bool = True):
    """`auto` / `auto:N` -> (layer names to keep in fp32, sensitivity record for the manifest). `log` takes
    progress notes (default: the agd_deploy logger's info; stdout stays the CLI's)."""
    from ..log import get

    log = log or get(__name__).info
    from ..export.onnx import fp32_onnx_in
    from ..export.onnx import ort_int8_config
    from ..quant.onnx import quantize_qdq
    from ..runtimes import load_session

    n_fixed = None
    if spec != "auto":
        try:
            n_fixed = int(spec.split(":", 1)[1])
            if n_fixed < 0:
                raise ValueError
        except (IndexError, ValueError):
            raise AgdError(f"--keep-fp32 {spec!r}: use LAYER[,LAYER...], auto or auto:N (N >= 0)") from None
    calib = cfg.calib[: min(2, len(cfg.calib))]
    model, vr = source.module, source.info.value_range
    log(f"measuring per-layer int8 sensitivity on {len(calib)} calibration crops ...")
    ranking = rank_layers(model, calib, vr, progress=progress, weight_bits=7 if _int8(cfg).reduce_range else 8)
    order = [r["layer"] for r in ranking if r["psnr_db"] is not None]
    bits = 7 if _int8(cfg).reduce_range else 8
    wtype = f"{'u8' if _int8(cfg).weight == 'uint8' else 's8'} per-channel {bits}-bit weights"
    record: dict[str, Any] = {"method": f"one conv fake-quantized at a time (u8 act / {wtype}), "
                                        "PSNR of the output vs fp32 on calibration crops",
                              "ranking": ranking[:32]}
    if n_fixed is not None:
        keep = order[:n_fixed]
        record.update({"mode": spec, "kept": keep})
        return keep, record

    fp32 = fp32_onnx_in(cfg, model, example, source.info)
    from ..export.onnx import resolve_layers

    with torch.no_grad():
        refs = [model(torch.from_numpy(a)).numpy() for a in calib]
    tried = []
    keep: list[str] = []
    best = (-math.inf, [])  # (psnr, layers): kept if the target is never reached
    for k in [0, 1, 2, 4, 8, 16, 32]:
        k = min(k, prof.keep_fp32_max, len(order))
        if tried and k == tried[-1]["kept"]:
            break
        layers = order[:k]
        q = quantize_qdq(fp32, cfg.work_dir / f"sens{k}.onnx", cfg.calib,
                         ort_int8_config(cfg, resolve_layers(fp32, layers) if layers else []))
        sess = load_session("ort-cpu-int8", q, threads=cfg.threads)
        p = float(np.mean([psnr(r, sess.run(a), vr) for r, a in zip(refs, calib)]))
        tried.append({"kept": k, "psnr_db": round(p, 3)})
        log(f"  int8 with {k} layer(s) in fp32: {p:.2f} dB vs fp32 on calibration crops")
        keep = layers
        if p > best[0]:
            best = (p, layers)
        if p >= prof.keep_fp32_target_db:
            break
    if not tried or tried[-1]["psnr_db"] < prof.keep_fp32_target_db:
        # Target not reached: keep the best-scoring set, not the largest. Quantization error in a deep net is
        # not additive per layer (Real-ESRGAN: 0/1/2/4/8 layers kept gave 34.19/34.13/33.99/34.28/34.18 dB), so
        # more float layers can cost speed and size for nothing.
        keep = best[1]
    record.update({"mode": "auto", "target_db": prof.keep_fp32_target_db, "tried": tried, "kept": keep})
    return keep, record


def _int8(cfg):
    from ..quant.onnx import OrtInt8Config

    return cfg.int8 or OrtInt8Config()
