"""What the int8 runtimes do with the ST frame's ops (InstanceNorm, reflection padding, Tanh, transposed convs).

    python benchmarks/st_int8_ops.py [--rounds 10] [--no-openvino] [--out benchmarks/results/st_int8_ops]

At the ST input size 64x64 (trunk 16x16x256, upsamplers 16->32 and 32->64) each candidate block, and a few whole
ST-like nets, are lowered with the project's own code (`runtimes.targets.lower`: ort-cpu-fp32 / ort-cpu-int8
(QDQ), litert-cpu-fp32 / litert-cpu-int8, openvino-cpu-fp32 / openvino-cpu-int8) and timed interleaved in ONE
`time_runs` call per clock (ORT + LiteRT: the calling thread's CPU time at 1 thread; OpenVINO: wall time, its
own thread pool), min over rounds. Reported per block: ms per target, int8/fp32 latency ratio, each variant's
latency relative to its group's baseline (same runtime, e.g. nearest+conv vs ConvTranspose in int8), and which
nodes ran in float in the int8 artifact (ORT: session profiler rows; LiteRT: ops whose output is float32;
OpenVINO: PERF_COUNT exec types). Written as <out>.md and <out>.json with the CPU named."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------- candidate blocks

class Up(nn.Module):
    """x2 upsampler: ConvTranspose2d k4 s2 p1 or nearest x2 + conv3x3; [InstanceNorm]; ReLU."""

    def __init__(self, cin: int, cout: int, kind: str, norm: bool):
        super().__init__()
        self.kind = kind
        self.conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1) if kind == "convT" else nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x):
        if self.kind != "convT":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.act(self.norm(self.conv(x)))


def conv(cin, cout, k, norm, act="relu", pad="zero", stride=1):
    layers: list[nn.Module] = []
    if pad == "reflect":
        layers += [nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride)]
    else:
        layers += [nn.Conv2d(cin, cout, k, stride, k // 2)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    if act == "relu":
        layers.append(nn.ReLU())
    elif act == "tanh":
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class Net(nn.Module):
    """An ST-frame-like whole net at 64x64: stem 7x7 (reflect), 2 stride-2 downs, 9 positions at 256 (a fixed mix
    of the space's ops), 2 upsamplers, last 7x7 (reflect); v2: + tanh; v3: + input, clamped (the identity skip)."""

    def __init__(self, up: str, norm: bool, tail: str):
        super().__init__()
        from agd_deploy.space.ops import Flavour, make_op

        fl = Flavour("st" if norm else "st-nonorm", norm=norm, act="relu")
        self.stem = conv(3, 48, 7, norm, pad="reflect")
        self.down1 = fl.conv(48, 96, 3, stride=2)
        self.down2 = fl.conv(96, 256, 3, stride=2)
        ops = ["residual", "conv3x3", "dwsblock", "residual", "skip", "conv3x3", "residual", "dwsblock", "residual"]
        self.pos = nn.Sequential(*[make_op(o, 256, 256, fl) for o in ops])
        self.up1, self.up2 = Up(256, 96, up, norm), Up(96, 48, up, norm)
        self.tail = tail
        self.last = conv(48, 3, 7, False, act="tanh" if tail == "tanh" else "", pad="reflect")

    def forward(self, x):
        y = self.last(self.up2(self.up1(self.pos(self.down2(self.down1(self.stem(x)))))))
        return y if self.tail == "tanh" else torch.clamp(x + y, -1.0, 1.0)


NOTES = ["the whole-net 'x+last clamp' variants clamp to [-1,1] after the add (a Clip in ORT, RELU_N1_TO_1 in "
         "LiteRT); the frame itself (space/frames.py, version 3) does not clamp, as the SR frame does not",
         "whole nets: stem 48, down1 96, trunk 256 with positions residual, conv3x3, dwsblock, residual, skip, conv3x3, "
         "residual, dwsblock, residual; up1 96, up2 48 (a mid-size ST student)"]


def cases():
    """(group, variant, module, input shape); the first variant of a group is its baseline."""
    c = []
    for tag, cin, cout, hw in (("up1 16->32 256->128", 256, 128, 16), ("up2 32->64 128->64", 128, 64, 32)):
        for norm in (True, False):
            g = f"{tag} {'+IN' if norm else 'no IN'}"
            c.append((g, "convT k4s2 +ReLU", Up(cin, cout, "convT", norm), (1, cin, hw, hw)))
            c.append((g, "nearest x2 + conv3x3 +ReLU", Up(cin, cout, "nearest", norm), (1, cin, hw, hw)))
    g = "body conv3x3 256ch 16x16"
    c.append((g, "conv3x3+IN+ReLU", conv(256, 256, 3, True), (1, 256, 16, 16)))
    c.append((g, "conv3x3+ReLU", conv(256, 256, 3, False), (1, 256, 16, 16)))
    g = "stem 7x7 3->64 @64x64"
    c.append((g, "reflect pad+7x7+IN+ReLU", conv(3, 64, 7, True, pad="reflect"), (1, 3, 64, 64)))
    c.append((g, "reflect pad+7x7+ReLU", conv(3, 64, 7, False, pad="reflect"), (1, 3, 64, 64)))
    c.append((g, "zero pad 7x7+IN+ReLU", conv(3, 64, 7, True), (1, 3, 64, 64)))
    g = "last 7x7 64->3 @64x64"
    c.append((g, "reflect pad+7x7+Tanh", conv(64, 3, 7, False, act="tanh", pad="reflect"), (1, 64, 64, 64)))
    c.append((g, "reflect pad+7x7", conv(64, 3, 7, False, act="", pad="reflect"), (1, 64, 64, 64)))
    c.append((g, "zero pad 7x7", conv(64, 3, 7, False, act=""), (1, 64, 64, 64)))
    g = "whole ST-like net 1x3x64x64"
    c.append((g, "v2: convT+IN, tanh", Net("convT", True, "tanh"), (1, 3, 64, 64)))
    c.append((g, "nearest+IN, tanh", Net("nearest", True, "tanh"), (1, 3, 64, 64)))
    c.append((g, "convT+IN, x+last clamp", Net("convT", True, "skip"), (1, 3, 64, 64)))
    c.append((g, "v3 frame: nearest+IN, x+last clamp", Net("nearest", True, "skip"), (1, 3, 64, 64)))
    c.append((g, "convT no IN, x+last clamp", Net("convT", False, "skip"), (1, 3, 64, 64)))
    c.append((g, "nearest no IN, x+last clamp", Net("nearest", False, "skip"), (1, 3, 64, 64)))
    return c


# ---------------------------------------------------------------------------------------------- float nodes

def ort_float_nodes(path: Path, x: np.ndarray) -> str:
    from agd_deploy.verify.layers import profile_ort

    raw = profile_ort(path, x, 1, runs=2, warmup=1, target="ort-cpu-int8", labels=None, reference=None)
    ops = Counter(r["op"] for r in raw["rows"] if r["precision"] == "float")
    ints = Counter(r["op"] for r in raw["rows"] if r["precision"] == "int8")
    return _fmt(ops) + "; int8: " + _fmt(ints)


def litert_float_nodes(path: Path) -> str:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    dtypes = {t["index"]: t["dtype"] for t in it.get_tensor_details()}
    fl, ints = Counter(), Counter()
    for op in it._get_ops_details():  # noqa: SLF001 - the only per-op view LiteRT's Python API gives
        name = op["op_name"]
        if name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        outs = [dtypes.get(i) for i in op["outputs"]]
        (fl if any(d == np.float32 for d in outs) else ints)[name] += 1
    return _fmt(fl) + "; int8: " + _fmt(ints)


def ov_float_nodes(path: Path, x: np.ndarray) -> str:
    from agd_deploy.verify.layers import profile_openvino

    raw = profile_openvino(path, x, 1, runs=2, warmup=1, target="openvino-cpu-int8", labels=None)
    skip = ("Parameter", "Result", "Constant", "Reorder", "FakeQuantize", "Subgraph")
    fl = Counter(r["op"] for r in raw["rows"] if r["precision"] == "float" and r["op"] not in skip)
    ints = Counter(r["op"] for r in raw["rows"] if r["precision"] == "int8")
    return _fmt(fl) + "; int8: " + _fmt(ints)


def _fmt(c: Counter) -> str:
    return ", ".join(f"{k}x{v}" if v > 1 else k for k, v in sorted(c.items())) or "-"


# ---------------------------------------------------------------------------------------------- main

def cpu_name() -> str:
    try:
        from agd_deploy.device import identify

        i = identify(with_gpu=False)
        return f"{i.model_name} ({i.device_class}, family {i.family} model {i.model}, ISA {'/'.join(i.isa)})"
    except Exception:
        return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--no-openvino", action="store_true")
    ap.add_argument("--only", default="", help="substring of the group names to keep")
    ap.add_argument("--out", default="benchmarks/results/st_int8_ops")
    ap.add_argument("--render", default="", help="only rewrite <out>.md from this results JSON")
    args = ap.parse_args()
    if args.render:
        doc = json.loads(Path(args.render).read_text())
        write_md(Path(args.out), doc["meta"], doc["rows"])
        return

    from agd_deploy.runtimes import load_session
    from agd_deploy.runtimes.targets import available, lower
    from agd_deploy.runtimes.timing import Stats, time_runs

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pairs = [("ort", "ort-cpu-fp32", "ort-cpu-int8"), ("litert", "litert-cpu-fp32", "litert-cpu-int8")]
    if not args.no_openvino and available("openvino-cpu-int8")[0]:
        pairs.append(("openvino", "openvino-cpu-fp32", "openvino-cpu-int8"))
    d = Path(tempfile.mkdtemp(prefix="agd-st-int8-"))
    rows, runs, ov_runs, sessions = [], {}, {}, []
    t_lower = time.perf_counter()
    for i, (group, variant, mod, shape) in enumerate(cases()):
        if args.only and args.only not in group:
            continue
        mod = mod.eval()
        with torch.no_grad():  # give IN/conv realistic non-trivial statistics
            for m in mod.modules():
                if isinstance(m, nn.InstanceNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        calib = [np.tanh(rng.standard_normal(shape)).astype(np.float32) if shape[1] == 3 else
                 np.maximum(rng.standard_normal(shape), 0).astype(np.float32) for _ in range(4)]
        ex = torch.from_numpy(calib[0])
        row = {"group": group, "variant": variant, "input": list(shape), "ms": {}, "float_nodes": {}, "errors": {}}
        for rt, fp, q in pairs:
            for t in (fp, q):
                try:
                    p = lower(t, mod, ex, d / f"m{i}", calib=calib, name=t)
                    s = load_session(t, p, threads=1)
                    sessions.append(s)
                    (ov_runs if rt == "openvino" else runs)[f"{i}|{t}"] = s.timer(calib[0])
                    if t == q:
                        row["float_nodes"][rt] = (ort_float_nodes(p, calib[0]) if rt == "ort" else
                                                  litert_float_nodes(p) if rt == "litert" else
                                                  ov_float_nodes(p, calib[0]))
                except Exception as e:  # a lowering that fails is a finding, not a crash
                    row["errors"][t] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        rows.append(row)
        print(f"lowered {group} / {variant}", flush=True)
    t_lower = time.perf_counter() - t_lower
    print(f"lowering took {t_lower:.0f}s; timing {len(runs)} + {len(ov_runs)} artifacts x {args.rounds} rounds",
          flush=True)
    st = {k: Stats.from_samples(v) for k, v in time_runs(runs, args.rounds, threads=1, clock="cpu",
                                                         progress="timing ort+litert").items()}
    if ov_runs:
        st.update({k: Stats.from_samples(v) for k, v in time_runs(ov_runs, args.rounds, threads=1, clock="wall",
                                                                  progress="timing openvino").items()})
    for s in sessions:
        try:
            s.close()
        except Exception:
            pass
    shutil.rmtree(d, ignore_errors=True)

    idx = 0
    for i, (group, variant, _, _) in enumerate(cases()):
        if args.only and args.only not in group:
            continue
        row = rows[idx]
        idx += 1
        for _, fp, q in pairs:
            for t in (fp, q):
                if f"{i}|{t}" in st:
                    row["ms"][t] = round(st[f"{i}|{t}"].min_ms, 4)
    base: dict[str, dict] = {}
    for row in rows:
        b = base.setdefault(row["group"], row)
        row["int8_over_fp32"] = {rt: round(row["ms"][q] / row["ms"][fp], 3) for rt, fp, q in pairs
                                 if q in row["ms"] and fp in row["ms"]}
        row["vs_baseline"] = {t: round(row["ms"][t] / b["ms"][t], 3) for t in row["ms"] if t in b["ms"]}
        row["baseline"] = b["variant"]

    try:
        import onnxruntime
        from importlib.metadata import version
        versions = {"onnxruntime": onnxruntime.__version__, "ai-edge-litert": version("ai-edge-litert"),
                    "litert-torch": version("litert-torch"), "torch": torch.__version__}
        if ov_runs:
            import openvino
            versions["openvino"] = openvino.__version__
    except Exception:
        versions = {}
    cpu = cpu_name()
    meta = {"cpu": cpu, "cores": __import__("os").cpu_count(), "threads": 1, "rounds": args.rounds,
            "statistic": "min over rounds", "clock": {"ort/litert": "thread CPU time, interleaved in one time_runs",
                                                      "openvino": "wall, interleaved in a second time_runs"},
            "note": "machine shared with other jobs: compare ratios taken side by side, not absolute ms",
            "lowering_s": round(t_lower, 1), "versions": versions, "pairs": [list(p) for p in pairs],
            "notes": NOTES}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    tmp.replace(out.with_suffix(".json"))

    write_md(out, meta, rows)


def write_md(out: Path, meta: dict, rows: list[dict]) -> None:
    """The Markdown report of one run (also re-rendered from its JSON with --render)."""
    pairs = meta["pairs"]
    versions, cpu, rounds = meta["versions"], meta["cpu"], meta["rounds"]
    tg = [t for _, fp, q in pairs for t in (fp, q)]
    lines = ["# ST frame ops under int8 (`benchmarks/st_int8_ops.py`)", "",
             f"CPU: {cpu} ({meta['cores']} cores, shared with other helpers' jobs), 1 thread, min of {rounds} "
             f"interleaved rounds (ORT+LiteRT on the thread CPU clock in one `time_runs`; OpenVINO wall clock). "
             f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}.", "",
             "## Latency (ms) and int8/fp32 ratio (<1: int8 faster)", "",
             "| group | variant | " + " | ".join(tg) + " | " + " | ".join(f"{rt} int8/fp32" for rt, _, _ in pairs) + " |",
             "|---|---|" + "---:|" * (len(tg) + len(pairs))]
    for r in rows:
        lines.append(f"| {r['group']} | {r['variant']} | " + " | ".join(f"{r['ms'][t]:.3f}" if t in r["ms"] else
                                                                       "fail" for t in tg) + " | " +
                     " | ".join(f"{r['int8_over_fp32'].get(rt, float('nan')):.2f}" for rt, _, _ in pairs) + " |")
    lines += ["", "## Each variant relative to its group's first row (same target; <1: faster)", "",
              "| group | variant | " + " | ".join(tg) + " |", "|---|---|" + "---:|" * len(tg)]
    for r in rows:
        lines.append(f"| {r['group']} | {r['variant']} | " + " | ".join(
            f"{r['vs_baseline'][t]:.2f}" if t in r["vs_baseline"] else "-" for t in tg) + " |")
    lines += ["", "## Nodes that ran in float in the int8 artifact (after 'int8:', the ones that ran in int8)", "",
              "| group | variant | " + " | ".join(rt for rt, _, _ in pairs) + " |", "|---|---|" + "---|" * len(pairs)]
    for r in rows:
        lines.append(f"| {r['group']} | {r['variant']} | " + " | ".join(
            r["float_nodes"].get(rt, r["errors"].get(q, "-")) for rt, _, q in pairs) + " |")
    errs = [(r["group"], r["variant"], t, e) for r in rows for t, e in r["errors"].items()]
    if errs:
        lines += ["", "## Lowering errors", ""] + [f"- {g} / {v} / {t}: {e}" for g, v, t, e in errs]
    if meta.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in meta["notes"]]
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out.with_suffix(".md"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
