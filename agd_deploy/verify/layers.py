"""Per-layer profiles of exported artifacts (`agd bench DIR --per-layer`): each node's time from the runtime's
own profiler, the precision it executed in, and the block of the derived net it belongs to, so a user sees
which block costs what, which layers stayed float, and (next to a latency table's per-block prediction)
where a table's error comes from.

Profilers: ONNX Runtime session profiling (`enable_profiling`; the `end_profiling()` JSON is read, then
deleted) for `onnx` / `onnx-int8`; OpenVINO `get_profiling_info()` (PERF_COUNT) for `openvino-*`. LiteRT has
no Python per-op profiler: tflite artifacts get a one-line "not available" (on Android, `benchmark_model
--enable_op_profiling`). Times are means over `runs` runs after `warmup` untimed ones; the profiled runs are
also timed end to end (`whole_ms`), because profiling adds overhead and the node sum is checked against the
same runs (`sum_over_whole`).

Mapping nodes back to blocks: the TorchScript exporter names nodes after module scopes
(`/cells.0/cells.0.3/proj/Conv`, `space.frames` slots give the blocks). `onnx-int8` files have their names
compacted (`export.onnx.compact_names`: n0, n1, ...), so their nodes are matched to an fp32 ONNX of the same
model by graph structure (op type + producers, Q/DQ skipped, weight shapes). Runtimes fuse nodes and name
the fused kernel after one of them (ORT names a Conv fused with the next block's Mul after the Mul): a conv
kernel whose named node is not a conv is attributed to the nearest conv upstream. Nodes the runtime inserts
(layout transposes, reorders) are the `(layout)` group, boundary (de)quantization the `(io)` group."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

IO, LAYOUT, OTHER = "(io)", "(layout)", "(other)"
GROUPS = (IO, LAYOUT, OTHER)
PROFILED_FORMATS = ("onnx", "onnx-int8", "openvino-fp32", "openvino-int8")
TFLITE_NOTE = ("per-layer: not available for tflite on this machine (LiteRT has no Python per-op profiler); "
               "on Android: benchmark_model --enable_op_profiling")
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_FOLDED = ("Relu", "Clip")  # ORT's QDQ quantizer drops a Relu/Clip after a conv (the Q's range does it)
# the TorchScript exporter feeds a shared initializer to its second user through an Identity; the int8 graph has
# none (quant/onnx.py: unshare_weights gives every conv its own), so an Identity is looked through like a Q/DQ
_PASS = _QDQ + _FOLDED + ("Identity",)
_INT8_TYPES = ("uint8", "int8")
_CONV = re.compile(r"^(QLinear)?Conv(Integer|Transpose)?$|^(Group)?Convolution(BackpropData)?$|^FusedConv$")


def is_conv(op: str) -> bool:
    return bool(_CONV.match(op or ""))


def ort_precision(op: str, input_types: list[str]) -> str:
    """int8 for QLinear* / *Integer ops or (u)int8 data inputs; `convert` for Q/DQ; else float."""
    if op in _QDQ:
        return "convert"
    if op.startswith("QLinear") or op.endswith("Integer") or (input_types and input_types[0] in _INT8_TYPES):
        return "int8"
    return "float"


def ov_precision(exec_type: str, runtime_precision: str = "") -> str:
    """int8 when OpenVINO's kernel (exec type `jit_avx2_I8`, ...) or its runtime precision is (u)int8."""
    t = f"{exec_type}_{runtime_precision}".lower()
    return "int8" if re.search(r"(^|_)(i8|u8)($|_)", t) else "float"


# ---------------------------------------------------------------------------------------------- blocks

def module_path(name: str) -> str:
    from ..export.onnx import module_path as mp

    return mp(name)


def arch_blocks(arch) -> list[tuple[str, Any]]:
    """(label, BlockSpec) of an arch's blocks in forward order; labels are the derived net's module paths
    (`stem`, `cells.0.3`, `positions.2`), `cellsum.C` for the SR cell sum (one module called once per cell)."""
    sp = arch.space_obj
    out: list[tuple[str, Any]] = []
    n_sum = 0
    for slot, spec in zip(sp.slots(*arch.input_shape[2:]), arch.blocks()):
        if slot.kind == "cell":
            c, p = divmod(slot.position, sp.cell_len)
            label = f"cells.{c}.{p}"
        elif slot.kind == "pos":
            label = f"positions.{slot.position}"
        elif slot.kind == "cellsum":
            label, n_sum = f"cellsum.{n_sum}", n_sum + 1
        else:
            label = slot.kind
        out.append((label, spec))
    return out


def block_of(mpath: str, labels: set[str] | None = None) -> str | None:
    """The block label of a module path ('cells.0.3.proj' -> 'cells.0.3', 'cellsum_2' -> 'cellsum.2');
    None when it names no block (of `labels`, when given)."""
    segs = [s for s in mpath.split(".") if s]
    if not segs:
        return None
    m = re.fullmatch(r"cellsum(?:_(\d+))?", segs[0])
    if m:
        label = f"cellsum.{m.group(1) or 0}"
    elif segs[0] == "cells" and len(segs) >= 3:
        label = ".".join(segs[:3])
    elif segs[0] == "positions" and len(segs) >= 2:
        label = ".".join(segs[:2])
    elif labels is None and len(segs) >= 2 and segs[1].isdigit():  # e.g. a teacher's `body.3`
        label = ".".join(segs[:2])
    else:
        label = segs[0]
    if labels is not None and label not in labels:
        return None
    return label


# ---------------------------------------------------------------------------------------------- ONNX graphs

class OnnxGraph:
    """An ONNX graph's nodes with their producers/consumers and each node's block."""

    def __init__(self, path: str | Path, labels: set[str] | None, reference: str | Path | None = None):
        import onnx

        self.model = onnx.load(str(path), load_external_data=False)
        g = self.model.graph
        self.nodes = {n.name: n for n in g.node}
        self.inputs = {v.name for v in g.input}
        self.outputs = {v.name for v in g.output}
        self.inits = {i.name: tuple(i.dims) for i in g.initializer}
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list] = defaultdict(list)
        for n in g.node:
            for x in n.input:
                self.consumers[x].append(n)
        self.labels = labels
        scoped = any(n.name.startswith("/") for n in g.node)
        names = {n.name: n.name for n in g.node}  # node -> the name that carries its module path
        if not scoped and reference is not None:
            names.update(match_by_structure(self, OnnxGraph(reference, labels)))
        self.block = {n.name: self._block(n, names) for n in g.node}

    def _block(self, n, names: dict[str, str]) -> str:
        if n.op_type == "QuantizeLinear" and n.input[0] in self.inputs:
            return IO
        if n.op_type == "DequantizeLinear" and n.output[0] in self.outputs:
            return IO
        if n.op_type == "DequantizeLinear":  # weights or activations: the op they feed
            nxt = [c for c in self.consumers.get(n.output[0], []) if c.op_type not in _QDQ]
            if nxt:
                return self._block(nxt[0], names)
        if n.op_type in _QDQ:  # QuantizeLinear of an op's output: that op's block
            p = self.producer.get(n.input[0])
            if p is not None:
                return self._block(p, names)
            return IO
        b = block_of(module_path(names.get(n.name, n.name)), self.labels)
        return b or self._neighbour(n, names)

    def _neighbour(self, n, names: dict[str, str], depth: int = 3) -> str:
        """A node without a scope (`Identity_16` of a norm's weight, an unmatched Relu): the block of the op
        it feeds, else of the op feeding it."""
        if depth <= 0:
            return OTHER
        around = [c for o in n.output for c in self.consumers.get(o, [])]
        around += [p for x in n.input if (p := self.producer.get(x)) is not None]
        for m in around:
            b = block_of(module_path(names.get(m.name, m.name)), self.labels)
            if b:
                return b
        for m in around:
            b = self._neighbour(m, names, depth - 1)
            if b != OTHER:
                return b
        return OTHER

    def data_producer(self, n):
        """The node producing `n`'s data input, Q/DQ skipped."""
        while n is not None and n.input:
            p = self.producer.get(n.input[0])
            if p is None or p.op_type not in _QDQ:
                return p
            n = p
        return None

    def conv_upstream(self, n, depth: int = 4):
        """`n` if it is a conv, else the nearest conv feeding it (a fused kernel named after a later node)."""
        seen = 0
        while n is not None and seen <= depth:
            if n.op_type not in _QDQ and is_conv(n.op_type):
                return n
            convs = [p for x in n.input if (p := self.producer.get(x)) is not None and is_conv(p.op_type)]
            if convs:
                return convs[0]
            n, seen = self.data_producer(n) if n.op_type not in _QDQ else self.producer.get(n.input[0]), seen + 1
        return None


def _signatures(g: OnnxGraph) -> dict[str, int]:
    """A structural hash per non-Q/DQ node: op type + its inputs' hashes (producer, graph input, constant by
    shape), Q/DQ chains (and `_PASS`) skipped, so an fp32 graph and its QDQ graph hash their ops alike."""
    memo: dict[str, int] = {}

    def tensor(t: str) -> Any:
        if not t:
            return "-"
        if t in g.inputs:
            return "IN"
        if t in g.inits:
            return ("C", g.inits[t])
        p = g.producer.get(t)
        if p is None:
            return "?"
        if p.op_type in _PASS:
            return tensor(p.input[0])
        if p.op_type == "Constant":
            dims = tuple(p.attribute[0].t.dims) if p.attribute and p.attribute[0].type == 4 else ()
            return ("C", dims)
        return node(p)

    def node(n) -> int:
        if n.name not in memo:
            memo[n.name] = 0  # cycle guard (graphs are DAGs)
            memo[n.name] = hash((n.op_type, tuple(tensor(t) for t in n.input)))
        return memo[n.name]

    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20000))
    try:
        return {n.name: node(n) for n in g.model.graph.node if n.op_type not in _PASS}
    finally:
        sys.setrecursionlimit(old)


def match_by_structure(g: OnnxGraph, ref: OnnxGraph) -> dict[str, str]:
    """{node of g: node of ref} for structurally equal ops (ties paired in graph order)."""
    by_sig: dict[int, list[str]] = defaultdict(list)
    for name, s in _signatures(ref).items():
        by_sig[s].append(name)
    out: dict[str, str] = {}
    used: dict[int, int] = defaultdict(int)
    for name, s in _signatures(g).items():
        cands = by_sig.get(s)
        if cands and used[s] < len(cands):
            out[name] = cands[used[s]]
            used[s] += 1
    return out


def _resolve_ort(name: str, op: str, g: OnnxGraph) -> str:
    """Block of an ORT profile event (the optimized graph's node name) in the artifact's graph."""
    base = name[:-len("_kernel_time")] if name.endswith("_kernel_time") else name
    cands = [base, re.sub(r"_token_\d+$", "", base), base.split("/duplicated")[0]]
    t = re.sub(r"(_nchwc|_token_\d+)+$", "", base)
    cands += [t]
    node = None
    for c in cands:
        if c in g.nodes:
            node = g.nodes[c]
            break
        if c in g.producer:
            node = g.producer[c]
            break
    if node is None:
        if op in ("Transpose", "ReorderInput", "ReorderOutput", "Reshape") or base.startswith(("Transpose",
                                                                                               "Reorder")):
            return LAYOUT
        return block_of(module_path(base), g.labels) or OTHER
    if is_conv(op) and not is_conv(node.op_type):
        conv = g.conv_upstream(node)
        if conv is not None:
            node = conv
    return g.block.get(node.name, OTHER)


# ---------------------------------------------------------------------------------------------- profilers

def profile_ort(path: str | Path, x: np.ndarray, threads: int, runs: int, warmup: int, target: str,
                labels: set[str] | None, reference: str | Path | None) -> dict[str, Any]:
    """Rows from ONNX Runtime's session profiler over `runs` runs (after `warmup`), and the same runs timed
    end to end."""
    from ..runtimes import load_session

    g = OnnxGraph(path, labels, reference)
    with tempfile.TemporaryDirectory(prefix="agd-ortprof-") as tmp:
        sess = load_session(target, path, threads=threads, profile_prefix=os.path.join(tmp, "ort"))
        call = sess.timer(x)
        for _ in range(warmup):
            call()
        walls, cpus = [], []
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.thread_time()
            call()
            walls.append((time.perf_counter() - t0) * 1e3)
            cpus.append((time.thread_time() - c0) * 1e3)
        f = sess.sess.end_profiling()
        try:
            events = json.loads(Path(f).read_text())
        finally:
            with contextlib.suppress(OSError):
                Path(f).unlink()
    run_ev = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                    key=lambda e: e["ts"])
    # one model_run per call: the timer's first call (allocating the binding), the warm-up ones, the timed ones
    timed = run_ev[-runs:]
    spans = [(e["ts"], e["ts"] + e["dur"]) for e in timed]
    acc: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.get("cat") != "Node" or not any(a <= e["ts"] <= b for a, b in spans):
            continue
        run = next(i for i, (a, b) in enumerate(spans) if a <= e["ts"] <= b)
        a = e.get("args") or {}
        op = a.get("op_name", "?")
        r = acc.get(e["name"])
        if r is None:
            types = [next(iter(t)) for t in a.get("input_type_shape", []) if isinstance(t, dict) and t]
            node = e["name"][:-len("_kernel_time")] if e["name"].endswith("_kernel_time") else e["name"]
            r = acc[e["name"]] = {"node": node, "op": op, "kernel": a.get("provider", ""), "us": 0.0,
                                  "precision": ort_precision(op, types), "block": _resolve_ort(e["name"], op, g),
                                  "order": len(acc), "per_run": [0.0] * len(spans)}
        r["us"] += float(e["dur"])
        r["per_run"][run] += float(e["dur"]) / 1e3
    rows = [{"node": r["node"], "op": r["op"], "kernel": r["kernel"], "ms": r["us"] / 1e3 / len(timed),
             "min_ms": min(r["per_run"]), "precision": r["precision"], "block": r["block"]}
            for r in sorted(acc.values(), key=lambda r: r["order"])]
    run_ms = float(np.mean([e["dur"] for e in timed])) / 1e3 if timed else None
    # at one thread ORT computes in the calling thread: its CPU time is the bench's clock (immune to a busy box)
    cpu = float(np.mean(cpus)) if threads == 1 else None
    return {"profiler": "onnxruntime session profiling", "rows": rows, "whole_ms": float(np.mean(walls)),
            "whole_min_ms": float(np.min(walls)), "whole_cpu_ms": cpu, "runtime_run_ms": run_ms,
            "runs": len(timed), "warmup": warmup}


def _ov_str(rt: dict, key: str) -> str:
    try:
        v = rt[key]
    except (KeyError, IndexError, RuntimeError, TypeError):
        return ""
    with contextlib.suppress(Exception):
        return v.astype(str)
    return str(v)


def profile_openvino(path: str | Path, x: np.ndarray, threads: int, runs: int, warmup: int, target: str,
                     labels: set[str] | None, order: list[str] | None = None) -> dict[str, Any]:
    """Rows from OpenVINO's per-node counters (PERF_COUNT), summed over `runs` infer() calls."""
    from ..runtimes import load_session

    sess = load_session(target, path, threads=threads, perf_count=True)
    original = {op.get_friendly_name(): op for op in sess.model.get_ordered_ops()}
    runtime_info: dict[str, dict] = {}
    for op in sess.compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        runtime_info[op.get_friendly_name()] = {k: _ov_str(rt, k) for k in
                                                ("originalLayersNames", "runtimePrecision", "layerType")}
    call = sess.timer(x)
    for _ in range(warmup):
        call()
    walls, acc = [], {}
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        walls.append((time.perf_counter() - t0) * 1e3)
        for q in sess.request.get_profiling_info():
            if str(q.status).split(".")[-1] != "EXECUTED":
                continue
            r = acc.get(q.node_name)
            if r is None:
                info = runtime_info.get(q.node_name, {})
                r = acc[q.node_name] = {"node": q.node_name, "op": q.node_type, "kernel": q.exec_type, "ms": 0.0,
                                        "precision": ov_precision(q.exec_type, info.get("runtimePrecision", "")),
                                        "block": _resolve_ov(q.node_name, q.node_type, info, original, labels,
                                                                      order)}
            t = q.real_time.total_seconds() * 1e3
            r["ms"] += t
            r["min_ms"] = min(r.get("min_ms", t), t)
    rows = [dict(r, ms=r["ms"] / runs) for r in acc.values()]
    return {"profiler": "openvino get_profiling_info (PERF_COUNT)", "rows": rows, "whole_ms": float(np.mean(walls)),
            "whole_min_ms": float(np.min(walls)), "whole_cpu_ms": None, "runtime_run_ms": None, "runs": runs,
            "warmup": warmup}


def _resolve_ov(name: str, node_type: str, info: dict, original: dict, labels,
                order: list[str] | None = None) -> str:
    if node_type == "Reorder":
        return LAYOUT
    names = [n for n in (info.get("originalLayersNames") or name).split(",") if n] or [name]
    if is_conv(node_type):  # a conv kernel named after a fused later node: the conv it came from
        for n in names:
            op = original.get(n)
            if op is not None and not is_conv(op.get_type_name()):
                conv = _ov_conv_upstream(op)
                if conv is not None:
                    names = [conv.get_friendly_name()] + names
                break
    for n in names:
        b = block_of(module_path(n), labels)
        if b:
            if is_conv(node_type) and order:
                b = _between(original.get(names[0]), b, labels, order)
            return b
    first = names[0]
    if first.startswith(("input", "output")) or "Parameter" in first or "Result" in first:
        return IO
    return OTHER


def _between(op, named: str, labels, order: list[str]) -> str:
    """A conv whose own name was lost (OpenVINO's converter folds the SR cell's `0.2 *` into the last conv of
    the cell and names the conv after the Mul): it sits after its input's block and before the block it was
    named after; when exactly one block lies strictly between them, it is that block."""
    if op is None or not is_conv(op.get_type_name()):
        return named
    ins = [i.get_source_output().get_node() for i in op.inputs()]
    src = next((block_of(module_path(p.get_friendly_name()), labels) for p in ins
                if p.get_type_name() != "Constant"), None)
    if src is None or src not in order or named not in order:
        return named
    a, b = order.index(src), order.index(named)
    mid = order[a + 1:b]
    return mid[0] if len(mid) == 1 else named


def _ov_conv_upstream(op, depth: int = 4):
    for _ in range(depth):
        if is_conv(op.get_type_name()):
            return op
        ins = [i.get_source_output().get_node() for i in op.inputs()]
        convs = [p for p in ins if is_conv(p.get_type_name())]
        if convs:
            return convs[0]
        data = [p for p in ins if p.get_type_name() not in ("Constant",)]
        if not data:
            return None
        op = data[0]
    return None


# ---------------------------------------------------------------------------------------------- assembly

def predictions(arch, target: str, threads: int) -> tuple[dict[str, float], float, str] | None:
    """({block label: predicted ms}, overhead ms, table path) from this device's latency table for `target`
    at the arch's input shape (the table `agd export` predicts with), else None."""
    from ..profiling import tables

    try:
        found = tables.find(target, arch.space, arch.input_shape, threads, this_device_only=True)
    except Exception:
        return None
    if found is None:
        return None
    lut = found.lut
    try:
        pred = {label: float(lut.ms(spec.key)) for label, spec in arch_blocks(arch)}
    except Exception:
        return None
    return pred, float(lut.overhead_ms), str(found.path)


def summarize(raw: dict[str, Any], arch=None, precision: str = "fp32",
              pred: tuple[dict[str, float], float, str] | None = None) -> dict[str, Any]:
    """Rows with shares, per-block sums beside the table's prediction, the float-fallback list."""
    rows = raw["rows"]
    total = sum(r["ms"] for r in rows)
    total_min = sum(r.get("min_ms", r["ms"]) for r in rows)
    for r in rows:
        r["ms"] = round(r["ms"], 4)
        r["min_ms"] = round(r.get("min_ms", r["ms"]), 4)
        r["share"] = round(r["ms"] / total, 4) if total > 0 else 0.0
    labels = [label for label, _ in arch_blocks(arch)] if arch is not None else []
    specs = dict(arch_blocks(arch)) if arch is not None else {}
    seen = list(dict.fromkeys(r["block"] for r in rows))  # execution order
    order = labels + [b for b in seen if b not in labels and b not in GROUPS] + [b for b in GROUPS if b in seen]
    by: dict[str, list] = defaultdict(list)
    for r in rows:
        by[r["block"]].append(r)
    blocks = []
    for b in order:
        rs = by.get(b, [])
        ms = sum(r["ms"] for r in rs)
        d = {"block": b, "lut_key": specs[b].key if b in specs else None, "measured_ms": round(ms, 4),
             "share": round(ms / total, 4) if total > 0 else 0.0, "nodes": len(rs),
             "int8_ms": round(sum(r["ms"] for r in rs if r["precision"] == "int8"), 4)}
        if pred is not None and b in pred[0]:
            p = pred[0][b]
            d.update({"predicted_ms": round(p, 4), "error_ms": round(ms - p, 4),
                      "rel_error": round((ms - p) / p, 4) if p > 0 else None})
        blocks.append(d)
    fallback = []
    if precision == "int8":
        fallback = [{"node": r["node"], "op": r["op"], "block": r["block"], "ms": r["ms"], "share": r["share"]}
                    for r in rows if r["precision"] == "float" and r["block"] not in (IO, LAYOUT)]
    whole = raw["whole_ms"]
    out = {"available": True, "profiler": raw["profiler"], "runs": raw["runs"], "warmup": raw["warmup"],
           "rows": rows, "blocks": blocks, "float_fallback": fallback,
           "float_share": round(sum(f["ms"] for f in fallback) / total, 4) if total > 0 else 0.0,
           "sum_ms": round(total, 4), "whole_ms": round(whole, 4),
           "runtime_run_ms": None if raw.get("runtime_run_ms") is None else round(raw["runtime_run_ms"], 4),
           "sum_over_whole": round(total / whole, 4) if whole > 0 else None,
           "sum_min_ms": round(total_min, 4), "whole_min_ms": round(raw["whole_min_ms"], 4),
           "whole_cpu_ms": None if raw.get("whole_cpu_ms") is None else round(raw["whole_cpu_ms"], 4),
           "note": "node times (ms: mean, min_ms: fastest run) are the runtime profiler's wall-clock times; "
                   "whole_ms / whole_min_ms: the same runs timed end to end; whole_cpu_ms: their thread CPU time "
                   "(the bench's clock at 1 thread); a table predicts its statistic (min) per block, unprofiled"}
    if pred is not None:
        out.update({"predicted_by": pred[2], "predicted_overhead_ms": round(pred[1], 4),
                    "predicted_ms": round(pred[1] + sum(pred[0].values()), 4)})
    return out


def profile_artifact(fmt: str, path: str | Path, x: np.ndarray, threads: int = 1, runs: int = 10, warmup: int = 3,
                     arch=None, reference_onnx: str | Path | None = None, predict: bool = True) -> dict[str, Any]:
    """The per-layer section of one artifact: {"available": False, "reason"} where no profiler exists here."""
    from ..export import get_exporter

    exp = get_exporter(fmt)
    target, precision = exp.target, exp.precision
    labels = {label for label, _ in arch_blocks(arch)} if arch is not None else None
    if fmt.startswith("tflite"):
        return {"available": False, "reason": TFLITE_NOTE}
    if fmt in ("onnx", "onnx-int8"):
        raw = profile_ort(path, x, threads, runs, warmup, target, labels, reference_onnx)
    elif fmt.startswith("openvino"):
        order = None if arch is None else [label for label, spec in arch_blocks(arch)
                                           if not (spec.op == "skip" and spec.cin == spec.cout)]  # identities
        raw = profile_openvino(path, x, threads, runs, warmup, target, labels, order)
    else:
        return {"available": False, "reason": f"per-layer: no per-node profiler wired for {fmt}"}
    pred = predictions(arch, target, threads) if (arch is not None and predict) else None
    return summarize(raw, arch, precision, pred)


def table(fmt: str, pl: dict[str, Any], top: int = 12) -> str:
    """A compact human table of one artifact's per-layer section."""
    if not pl.get("available"):
        return f"{fmt}: {pl.get('reason', 'per-layer: not available')}"
    lines = [f"{fmt}: per-layer ({pl['profiler']}, {pl['runs']} runs): node sum {pl['sum_ms']:.2f} ms, profiled "
             f"runs {pl['whole_ms']:.2f} ms end to end (sum/whole {pl['sum_over_whole']:.2f})"
             + (f", bench p50 {pl['bench_p50_ms']:.2f} ms" if pl.get("bench_p50_ms") else "")]
    has_pred = any("predicted_ms" in b for b in pl["blocks"])
    lines.append(f"  {'block':<14} {'ms':>9} {'share':>6} {'int8':>5}" + (f" {'LUT ms':>9} {'err':>7}" if has_pred else ""))
    empty = [b for b in pl["blocks"] if not b["nodes"]]
    for b in pl["blocks"]:
        if not b["nodes"]:
            continue
        i8 = b["int8_ms"] / b["measured_ms"] if b["measured_ms"] else 0.0
        s = f"  {b['block']:<14} {b['measured_ms']:9.3f} {b['share'] * 100:5.1f}% {i8 * 100:4.0f}%"
        if has_pred:
            s += (f" {b['predicted_ms']:9.3f} {b['rel_error'] * 100:+6.0f}%" if b.get("rel_error") is not None
                  else f" {'-':>9} {'':>7}")
        lines.append(s)
    if empty:
        lut = sum(b.get("predicted_ms", 0.0) for b in empty)
        lines.append(f"  {len(empty)} block(s) with no nodes (identities, or fused into a neighbour)"
                     + (f": LUT {lut:.3f} ms" if has_pred else ""))
    if pl.get("float_fallback"):
        fb = sorted(pl["float_fallback"], key=lambda r: -r["ms"])
        lines.append(f"  float fallback ({pl['float_share'] * 100:.1f}% of node time): " +
                     ", ".join(f"{r['op']} in {r['block']} {r['share'] * 100:.1f}%" for r in fb[:top]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- bench

def add_per_layer(entries: list[dict[str, Any]], base_dir: Path, x: np.ndarray, threads: int, arch=None,
                  reference_onnx=None, runs: int = 10, warmup: int = 3) -> None:
    """Set `per_layer` on each manifest entry that ran here (`agd bench --per-layer`). `reference_onnx`: a
    zero-argument callable giving an fp32 ONNX of the model with the exporter's scope names (the int8 file's
    names are compacted), called only when needed."""
    from .status import Status

    ref: list[Any] = []

    def reference():
        if not ref:
            try:
                ref.append(reference_onnx() if reference_onnx else None)
            except Exception as e:  # no reference: the int8 rows keep their runtime names, grouped as (other)
                from ..log import warn

                ref.append(None)
                warn(f"per-layer: no fp32 ONNX to name the int8 nodes by ({str(e).splitlines()[0][:120]})")
        return ref[0]

    for e in entries:
        fmt = e.get("format") or ""
        if fmt.startswith("tflite"):
            e["per_layer"] = {"available": False, "reason": TFLITE_NOTE}
            continue
        if fmt not in PROFILED_FORMATS:
            e["per_layer"] = {"available": False, "reason": f"per-layer: no per-node profiler wired for {fmt}"
                                                            + (" (CoreML: Xcode Instruments on a Mac)"
                                                               if fmt.startswith("coreml") else "")}
            continue
        if not Status.parse(e.get("status")).ran or not e.get("file"):
            e["per_layer"] = {"available": False, "reason": f"per-layer: {fmt} did not run here ({e.get('status')})"}
            continue
        try:
            pl = profile_artifact(fmt, Path(base_dir) / e["file"], x, threads, runs, warmup, arch,
                                  reference() if fmt == "onnx-int8" else None)
        except Exception as ex:  # a profiler failing is a note in the section, never a bench failure
            pl = {"available": False, "reason": f"per-layer: the profiler failed ({type(ex).__name__}: "
                                                f"{str(ex).splitlines()[0][:160] if str(ex) else ''})"}
        if pl.get("available") and isinstance(e.get("p50_ms"), (int, float)) and e["p50_ms"] > 0:
            # like with like: the bench's clock is the thread CPU one where the runtime computes in the caller
            cpu = e.get("clock") == "cpu" and pl.get("whole_cpu_ms") is not None
            pl["bench_p50_ms"] = e["p50_ms"]
            pl["profiled_over_bench"] = round((pl["whole_cpu_ms"] if cpu else pl["whole_ms"]) / e["p50_ms"], 4)
            pl["profiled_over_bench_clock"] = "cpu" if cpu else "wall"
        e["per_layer"] = pl


def save_to_manifest(base_dir: Path, entries: list[dict[str, Any]]) -> None:
    """Write the entries' `per_layer` sections into DIR/manifest.json (only that key, per artifact matched by
    format and file; everything the export recorded stays as it was)."""
    from ..utils import atomic_write_json, file_lock
    from . import manifest as mf

    path = Path(base_dir) / mf.MANIFEST
    with file_lock(path, "updating the manifest"):
        m = mf.read(base_dir)
        new = {(e.get("format"), e.get("file")): e["per_layer"] for e in entries if "per_layer" in e}
        for a in m.get("artifacts", []):
            key = (a.get("format"), a.get("file"))
            if key in new:
                a["per_layer"] = new[key]
        atomic_write_json(path, m)
