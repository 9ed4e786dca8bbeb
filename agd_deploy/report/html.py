"""The self-contained HTML report of a run folder: inline CSS, images inlined as base64 PNG, no external assets.

It reads files only (docs/ARCHITECTURE.md, "Contracts": a run folder); it never imports runtimes, search or train, so a
report can be rebuilt anywhere from a copied run folder. Every section says "not run" when its inputs are
missing instead of failing."""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import plots

# crops shown side by side, in this order (file stem -> caption)
CROP_KINDS = (("lr", "LR input (nearest x4)"), ("bicubic", "bicubic"), ("student", "student fp32"),
              ("student_int8", "student int8 (onnx-int8)"), ("teacher", "teacher"), ("hr", "ground truth HR"))
QUALITY_ROWS = (("bicubic", "bicubic"), ("student", "student fp32"), ("student_int8", "student int8"),
                ("teacher", "teacher (Real-ESRGAN x4plus)"))


@dataclass
class RunData:
    """Everything the report shows, read from a run folder; a missing part is None / empty."""

    root: Path
    summary: dict[str, Any] | None = None
    lut: dict[str, Any] | None = None
    lut_path: Path | None = None
    validation: dict[str, Any] | None = None
    validation_png: Path | None = None
    arch: dict[str, Any] | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    checkpoint: Path | None = None
    crops: list[tuple[str, dict[str, Path]]] = field(default_factory=list)  # (image name, kind -> png)
    problems: list[str] = field(default_factory=list)  # unreadable files, shown in the report


def _read_json(path: Path, data: RunData) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        data.problems.append(f"{path.relative_to(data.root)}: unreadable ({type(e).__name__})")
        return None


def load_run(root: str | Path) -> RunData:
    """Collect a run folder's files (Contracts layout). Unknown or broken files are noted, not fatal."""
    root = Path(root)
    data = RunData(root)
    if (root / "summary.json").is_file():
        s = _read_json(root / "summary.json", data)
        data.summary = s if isinstance(s, dict) else None
    prof = root / "profile"
    if prof.is_dir():
        for p in sorted(prof.glob("*.json")):
            d = _read_json(p, data)
            if not isinstance(d, dict):
                continue
            if "entries" in d and data.lut is None:
                data.lut, data.lut_path = d, p
            elif "points" in d and (data.validation is None or p.name == "validation.json"):
                data.validation = d  # the demo's validation.json (pooled) over its validation.brief.json
        pngs = sorted(prof.glob("*.png"))
        data.validation_png = pngs[0] if pngs else None
    search = root / "search"
    if (search / "arch.json").is_file():
        a = _read_json(search / "arch.json", data)
        data.arch = a if isinstance(a, dict) else None
    if (search / "log.jsonl").is_file():
        for line in (search / "log.jsonl").read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by an interrupted search: skip it
            if isinstance(row, dict):
                data.log.append(row)
    if (root / "train" / "generator.safetensors").is_file():
        data.checkpoint = root / "train"
    if (root / "export" / "manifest.json").is_file():
        m = _read_json(root / "export" / "manifest.json", data)
        data.manifest = m if isinstance(m, dict) else None
    crops = root / "crops"
    if crops.is_dir():
        groups = [(crops.name, crops)] if any(crops.glob("*.png")) else []
        groups += [(d.name, d) for d in sorted(crops.iterdir()) if d.is_dir()]
        for name, folder in groups:
            found = {k: folder / f"{k}.png" for k, _ in CROP_KINDS if (folder / f"{k}.png").is_file()}
            if found:
                data.crops.append((name, found))
    return data


# ---------------------------------------------------------------------------------------------- html helpers

def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, spec: str = ".2f", unit: str = "") -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        return "–"
    return format(x, spec) + unit


def _img(png: bytes | None, alt: str, cls: str = "plot") -> str:
    if not png:
        return ""
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img class="{cls}" alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _not_run(what: str) -> str:
    return f'<p class="notrun">not run: {_e(what)}</p>'


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_e(title)}</h2>{body}</section>'


# ---------------------------------------------------------------------------------------------- sections

def _overview(d: RunData) -> str:
    s = d.summary or {}
    arch = d.arch or {}
    budget = s.get("budget_ms", arch.get("budget_ms"))
    pred = s.get("predicted_ms", arch.get("predicted_ms"))
    meas = s.get("measured_ms")
    verdict = ""
    if isinstance(meas, (int, float)) and isinstance(budget, (int, float)):
        ok = meas <= budget
        verdict = f' <span class="{"ok" if ok else "bad"}">{"within" if ok else "over"} budget</span>'
    target = arch.get("target") or (d.lut or {}).get("target") or "–"
    rows = [["target", _e(target)], ["latency budget", _num(budget, ".2f", " ms")],
            ["LUT prediction (derived arch)", _num(pred, ".2f", " ms")],
            [f"measured ({_e(s.get('measured_artifact', 'onnx-int8'))} artifact on the target"
             + (f", {_e(s['measured_statistic'])}, {_e(s.get('measured_clock', ''))} clock"
                if s.get("measured_statistic") else "") + ")", _num(meas, ".2f", " ms") + verdict]]
    if isinstance(s.get("machine_speed_factor"), (int, float)):
        rows.append(["a reference net timed beside it: time here / in the table",
                     _num(s["machine_speed_factor"], ".2f", "x")])
    if s.get("prediction_note"):
        rows.append(["note", _e(s["prediction_note"])])
    if "gmacs" in arch or "params" in arch:
        rows.append(["derived arch", f'{_num(arch.get("gmacs"), ".3f", " GMACs")}, '
                                     f'{_num(arch.get("params"), ",d", " params")}'])
    body = _table(["", ""], rows, "kv")
    secs = s.get("seconds") if isinstance(s.get("seconds"), dict) else {}
    if secs:
        total = sum(v for v in secs.values() if isinstance(v, (int, float)))
        wall = s.get("wall_per_stage") if isinstance(s.get("wall_per_stage"), dict) else {}
        reused = set(s.get("reused_stages") or [])
        srows = [[_e(k), _num(v, ".1f", " s"), ("reused, " if k in reused else "") + _num(wall.get(k), ".1f", " s")]
                 for k, v in secs.items()]
        srows.append(["<b>total</b>", _num(total, ".1f", " s"), _num(s.get("wall_seconds"), ".1f", " s")])
        body += "<h3>Wall time per stage</h3>" + _table(["stage", "when computed", "this run"], srows)
    if not s:
        body += _not_run("no summary.json (the demo has not finished)")
    return _section("overview", "Overview", body)


def _device_line(dev: dict) -> str:
    from ..device import describe_device

    return describe_device(dev)


def _profile(d: RunData) -> str:
    parts = []
    if d.lut:
        lut = d.lut
        dev = lut.get("device") or {}
        rt = lut.get("runtime") or {}
        rows = [["table", _e(d.lut_path.name if d.lut_path else "")], ["target", _e(lut.get("target"))],
                ["space / hash", f'{_e(lut.get("space"))} / <code>{_e(lut.get("space_hash"))}</code>'],
                ["input", _e("x".join(str(x) for x in lut.get("input_shape") or []))],
                ["threads", _e(lut.get("threads"))], ["entries", str(len(lut.get("entries") or {}))],
                ["statistic", _e(lut.get("statistic"))], ["overhead", _num(lut.get("overhead_ms"), ".2f", " ms")],
                ["measured on", _e(_device_line(dev))],
                ["runtime", _e(", ".join(f"{k} {v}" for k, v in rt.items()))], ["created", _e(lut.get("created"))]]
        if lut.get("source"):
            rows.append(["source", _e(lut.get("source"))])
        summ = d.summary or {}
        if summ.get("device"):
            rows.append(["this machine", _e(_device_line(summ["device"]))])
        if summ.get("lut_check"):
            rows.append(["check", _e(summ["lut_check"])])
        parts.append(_table(["", ""], rows, "kv"))
    else:
        parts.append(_not_run("no latency table in profile/"))
    v = d.validation
    if v:
        lut, fl = v.get("lut") or {}, v.get("flops") or {}
        rep = (v.get("repeatability") or {}).get("spearman")
        rows = [[name, _num(m.get("mape"), ".1%"), _num(m.get("within_10pct"), ".0%"), _num(m.get("spearman"), ".3f"),
                 _num(m.get("kendall"), ".3f")] for name, m in (("LUT", lut), ("FLOPs proxy", fl))]
        parts.append(f"<p>{_e(v.get('n', len(v.get('points') or [])))} random whole archs measured on the target "
                     f"(repeatability Spearman {_num(rep, '.3f')}).</p>")
        parts.append(_table(["predictor", "MAPE", "within ±10%", "Spearman", "Kendall"], rows))
        png = plots.validation_scatter(v)
        if png is None and d.validation_png:
            png = d.validation_png.read_bytes()
        parts.append(_img(png, "LUT validation scatter"))
    else:
        parts.append(_not_run("no validation (profile validate) in profile/"))
    return _section("profile", "Latency table and its validation", "".join(parts))


def _search(d: RunData) -> str:
    parts = []
    a = d.arch or {}
    if d.log:
        last = d.log[-1]
        parts.append(f"<p>{len(d.log)} logged steps; last: E[latency] {_num(last.get('expected_ms'), '.2f', ' ms')}, "
                     f"lambda {_num(last.get('lambda'), '.3g')}, loss {_num(last.get('loss'), '.4f')}.</p>")
        parts.append(_img(plots.search_trajectory(d.log, a.get("budget_ms")), "search trajectory"))
    else:
        parts.append(_not_run("no search/log.jsonl"))
    return _section("search", "Search trajectory", "".join(parts))


_OP_CLASS = {"conv3x3": "op-conv", "residual": "op-res", "dwsblock": "op-dws", "skip": "op-skip"}


def _arch_positions(a: dict[str, Any]) -> tuple[list[dict[str, Any]], list[tuple[str, float]]]:
    """(one dict per searched position: op, cin, cout; LUT estimate per block) via the space's own slots.
    Falls back to the raw ops list when the space cannot be loaded (e.g. another version)."""
    ops = a.get("ops") or []
    try:
        from ..space import Arch

        arch = Arch.from_dict(a)
        blocks = arch.blocks()
    except Exception:
        return [{"op": op, "cin": None, "cout": None} for op in ops], []
    pos = [{"op": b.op, "cin": b.cin, "cout": b.cout} for b in blocks if b.kind in ("cell", "pos")]
    return pos, [(b.key, _group(arch.space, b.kind, i, blocks)) for i, b in enumerate(blocks)]


def _group(space: str, kind: str, i: int, blocks) -> str:
    """Which bar of the latency chart a block adds to: one per SR cell (its positions and its sum), one per
    searched ST position, one per fixed part."""
    if space == "sr" and kind in ("cell", "cellsum"):
        return f"cell {sum(1 for b in blocks[:i] if b.kind == 'cellsum')}"
    if kind == "pos":
        return f"pos {sum(1 for b in blocks[:i] if b.kind == 'pos')}"
    return kind


def _arch(d: RunData) -> str:
    a = d.arch
    if not a:
        return _section("arch", "Derived architecture", _not_run("no search/arch.json"))
    positions, blocks = _arch_positions(a)
    parts = [f"<p>space <b>{_e(a.get('space'))}</b>, input {_e('x'.join(str(x) for x in a.get('input_shape') or []))}"
             f", {_num(a.get('gmacs'), '.3f', ' GMACs')}, {_num(a.get('params'), ',d', ' params')}; "
             "each cell shows the op and its output channels.</p>"]
    if a.get("space") == "sr" and len(positions) == 25:
        rows = []
        for c in range(5):
            cells = []
            for p in range(5):
                q = positions[c * 5 + p]
                cells.append(f'<span class="{_OP_CLASS.get(q["op"], "")}">{_e(q["op"])}'
                             f'<br><small>{_e(q["cout"] if q["cout"] is not None else "")}</small></span>')
            rows.append([f"cell {c}"] + cells + ["0.2·f(x)+x"])
        parts.append(_table(["", "pos 0", "pos 1", "pos 2", "pos 3", "pos 4", "sum"], rows, "arch"))
    else:
        rows = [[str(i), f'<span class="{_OP_CLASS.get(q["op"], "")}">{_e(q["op"])}</span>',
                 _e(q["cin"] if q["cin"] is not None else ""), _e(q["cout"] if q["cout"] is not None else "")]
                for i, q in enumerate(positions)]
        parts.append(_table(["position", "op", "in", "out"], rows, "arch"))
    widths = a.get("widths") or {}
    head = [(k, widths[k]) for k in ("stem", "down1", "up1", "up2", "hr") if k in widths]
    if head:
        parts.append("<h3>Searched head widths</h3>" + _table([_e(k) for k, _ in head], [[_e(v) for _, v in head]]))
    lut_entries = (d.lut or {}).get("entries") or {}
    stat = (d.lut or {}).get("statistic", "min_ms")
    grouped: dict[str, float] = {}
    for key, group in blocks:
        e = lut_entries.get(key)
        if not (isinstance(e, dict) and isinstance(e.get(stat), (int, float))):
            grouped = {}
            break
        grouped[group] = grouped.get(group, 0.0) + float(e[stat])
    if grouped:
        parts.append(_img(plots.block_latency(list(grouped.items())), "predicted latency per part"))
    legend = " ".join(f'<span class="{c}">{o}</span>' for o, c in _OP_CLASS.items())
    parts.append(f"<p class='legend'>ops: {legend}</p>")
    return _section("arch", "Derived architecture", "".join(parts))


def _exports(d: RunData) -> str:
    arts = (d.manifest or {}).get("artifacts")
    if arts is None and d.summary:
        arts = d.summary.get("exports")
    if not arts:
        return _section("exports", "Exported artifacts", _not_run("no export/manifest.json"))
    rows = []
    for e in arts:
        if not isinstance(e, dict):
            continue
        status = str(e.get("status", "?"))
        from ..verify.status import Kind, Status

        kind = Status.parse(status).kind
        cls = "ok" if kind is Kind.OK else ("warn" if kind is Kind.NOT_VERIFIED else "bad")
        size = e.get("bytes")
        rows.append([_e(e.get("format")), _e(e.get("precision", "")),
                     _num(size / 1e6 if isinstance(size, (int, float)) else None, ".3f", " MB"),
                     _num(e.get("psnr_db"), ".2f", " dB"), _num(e.get("ssim"), ".4f"),
                     _num(e.get("min_ms"), ".2f"), _num(e.get("p50_ms"), ".2f"), _num(e.get("p90_ms"), ".2f"),
                     _num(e.get("speedup_vs_fp32"), ".2f", "x"), _num(e.get("predicted_ms"), ".2f"),
                     f'<span class="{cls}">{_e(status)}</span>'])
    head = ["format", "precision", "size", "PSNR vs fp32", "SSIM vs fp32", "min ms", "p50 ms", "p90 ms",
            "speedup vs fp32", "LUT ms", "status"]
    return _section("exports", "Exported artifacts (each run on its own runtime)", _table(head, rows))


def _per_layer(d: RunData) -> str:
    """Per-layer profiles (`agd bench DIR --per-layer` wrote them into the manifest): per block, measured vs the
    table's prediction, and the nodes left in float. Empty (no section) when no artifact has one."""
    arts = [a for a in (d.manifest or {}).get("artifacts") or [] if isinstance(a, dict)
            and isinstance(a.get("per_layer"), dict)]
    if not arts:
        return ""
    parts = ["<p>Each node timed by its runtime's own profiler (mean of the profiled runs), mapped to the block "
             "of the derived net it belongs to; the latency table's prediction per block beside it (where a "
             "table of this device exists) shows where the table's error comes from.</p>"]
    for a in arts:
        pl = a["per_layer"]
        fmt = _e(a.get("format"))
        if not pl.get("available"):
            parts.append(f"<h3>{fmt}</h3>{_not_run(pl.get('reason', 'no profiler'))}")
            continue
        parts.append(f"<h3>{fmt}</h3><p>{_e(pl.get('profiler', ''))}, {_e(pl.get('runs', '?'))} runs: node sum "
                     f"{_num(pl.get('sum_ms'))} ms, the same runs end to end {_num(pl.get('whole_ms'))} ms "
                     f"(sum/whole {_num(pl.get('sum_over_whole'))}); bench p50 {_num(pl.get('bench_p50_ms'))} ms.</p>")
        rows = []
        for b in pl.get("blocks") or []:
            if not isinstance(b, dict) or not b.get("nodes"):
                continue
            m = b.get("measured_ms")
            i8 = b.get("int8_ms")
            share8 = i8 / m if isinstance(i8, (int, float)) and isinstance(m, (int, float)) and m > 0 else None
            err = b.get("rel_error")
            rows.append([_e(b.get("block")), _e(b.get("lut_key") or ""), _num(m, ".3f"),
                         _num(100 * b["share"] if isinstance(b.get("share"), (int, float)) else None, ".1f", "%"),
                         _num(100 * share8 if share8 is not None else None, ".0f", "%"),
                         _num(b.get("predicted_ms"), ".3f"),
                         _num(100 * err if isinstance(err, (int, float)) else None, "+.0f", "%")])
        parts.append(_table(["block", "table entry", "measured ms", "share", "int8 share", "LUT ms", "error"], rows))
        fb = [f for f in pl.get("float_fallback") or [] if isinstance(f, dict)]
        if fb:
            frows = [[_e(f.get("node")), _e(f.get("op")), _e(f.get("block")), _num(f.get("ms"), ".3f"),
                      _num(100 * f["share"] if isinstance(f.get("share"), (int, float)) else None, ".1f", "%")]
                     for f in sorted(fb, key=lambda f: -(f.get("ms") or 0))]
            parts.append(f"<p>float fallback: {len(fb)} node(s) executed in float "
                         f"({_num(100 * (pl.get('float_share') or 0), '.1f', '%')} of node time)</p>")
            parts.append(_table(["node", "op", "block", "ms", "share"], frows))
    return _section("per-layer", "Per-layer profile of the artifacts", "".join(parts))


def _quality(d: RunData) -> str:
    s = d.summary or {}
    q = {k: s[k] for k, _ in QUALITY_ROWS if isinstance(s.get(k), dict)}
    if not q:
        return _section("quality", "Fidelity", _not_run("no evaluation in summary.json"))
    rgb = s.get("metric") == "rgb"  # image-to-image (agd demo --task denoise): "bicubic" is the input itself
    labels = dict(QUALITY_ROWS, **({"bicubic": "input (do nothing)", "teacher": f"teacher ({s.get('teacher_spec')})"}
                                   if rgb else {}))
    rows = [[labels[k], _num(q[k].get("psnr"), ".2f", " dB"), _num(q[k].get("ssim"), ".4f"),
             _num(q[k].get("psnr_vs_teacher"), ".2f", " dB"), _num(q[k].get("ssim_vs_teacher"), ".4f")]
            for k, label in QUALITY_ROWS if k in q]
    metric = ("RGB PSNR/SSIM over the whole image (peak 255 on the clipped outputs)" if rgb else
              "Y-channel PSNR/SSIM (border of 4 px cropped)")
    body = (f"<p>{_e(s.get('eval_images', 'Held-out images'))}; {metric} "
            "against the ground-truth HR, and against the teacher's output (what distillation optimises).</p>")
    body += _table(["model", "PSNR vs HR", "SSIM vs HR", "PSNR vs teacher", "SSIM vs teacher"], rows)
    st, bi = q.get("student", {}).get("psnr_vs_teacher"), q.get("bicubic", {}).get("psnr_vs_teacher")
    if isinstance(st, (int, float)) and isinstance(bi, (int, float)):
        ok = st - bi >= 1.0
        body += (f'<p>Student vs bicubic fidelity to the teacher: <span class="{"ok" if ok else "bad"}">'
                 f'{st - bi:+.2f} dB</span> (bar: +1 dB).</p>')
    body += _img(plots.quality_bars(q), "fidelity bars")
    body += _protocols(s.get("protocols"), s.get("degradation"))
    return _section("quality", "Fidelity", body)


PROTOCOL_ROWS = (("bicubic", "clean bicubic LR (the published tables' protocol)"),
                 ("degraded", "degraded held-out LR"), ("native", "photos at native resolution (no ground truth)"))


def _protocols(p: Any, deg: Any) -> str:
    """Fidelity to the teacher on the three kinds of input (train/evaluate.py), bicubic's beside the student's:
    a student is only a compressed teacher on the inputs it was distilled on."""
    if not isinstance(p, dict) or not p:
        return ""
    rows = []
    for k, label in PROTOCOL_ROWS:
        q = p.get(k)
        if not isinstance(q, dict):
            continue
        st, i8, bi = (q.get(m) if isinstance(q.get(m), dict) else {} for m in ("student", "student_int8", "bicubic"))
        gain = (st.get("psnr_vs_teacher") - bi.get("psnr_vs_teacher")
                if isinstance(st.get("psnr_vs_teacher"), (int, float))
                and isinstance(bi.get("psnr_vs_teacher"), (int, float)) else None)
        rows.append([_e(label), _num(st.get("psnr_vs_teacher"), ".2f", " dB"), _num(i8.get("psnr_vs_teacher"), ".2f", " dB"),
                     _num(bi.get("psnr_vs_teacher"), ".2f", " dB"), _num(gain, "+.2f", " dB"),
                     _num(st.get("ssim_vs_teacher"), ".4f"), _num(bi.get("ssim_vs_teacher"), ".4f")])
    trained = deg.get("train") if isinstance(deg, dict) else None
    note = f" The student was distilled on <b>{_e(trained)}</b> LR inputs." if trained else ""
    return (f"<h3>Fidelity to the teacher by input</h3><p>The same student on clean, degraded and native-resolution "
            f"inputs; the teacher's output on the same input is the reference.{note}</p>"
            + _table(["input", "student fp32", "student int8", "bicubic", "student - bicubic", "SSIM student",
                      "SSIM bicubic"], rows))


def _crops(d: RunData) -> str:
    if not d.crops:
        return _section("crops", "Side-by-side crops", _not_run("no crops/"))
    parts = []
    kinds = CROP_KINDS if (d.summary or {}).get("metric") != "rgb" else \
        tuple((k, {"lr": "degraded input", "hr": "clean image"}.get(k, label)) for k, label in CROP_KINDS)
    for name, files in d.crops:
        figs = "".join(f"<figure>{_img(files[k].read_bytes(), label, 'crop')}<figcaption>{_e(label)}</figcaption>"
                       f"</figure>" for k, label in kinds if k in files)
        parts.append(f"<h3>{_e(name)}</h3><div class='crops'>{figs}</div>")
    return _section("crops", "Side-by-side crops", "".join(parts))


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;
color:#222;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
nav a{margin-right:1em}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
table.kv thead{display:none}table.arch td{text-align:center;min-width:5em}
img.plot{max-width:100%;display:block;margin:.6em 0}img.crop{width:192px;height:192px;image-rendering:pixelated;
border:1px solid #ccc}.crops{display:flex;flex-wrap:wrap;gap:.6em}figure{margin:0}figcaption{font-size:.8em;
text-align:center}.notrun{color:#888;font-style:italic}.ok{color:#1a7f37;font-weight:600}.bad{color:#c62828;
font-weight:600}.warn{color:#b26a00;font-weight:600}.op-conv{color:#1565c0}.op-res{color:#6a1b9a}
.op-dws{color:#2e7d32}.op-skip{color:#888}.legend span{margin-right:1em}code{font-size:.9em}
.problems{color:#c62828}
"""


def render(d: RunData) -> str:
    """The whole report as one HTML string."""
    per_layer = _per_layer(d)
    sections = [_overview(d), _profile(d), _search(d), _arch(d), _exports(d), per_layer, _quality(d), _crops(d)]
    nav = " ".join(f'<a href="#{i}">{t}</a>' for i, t in (("overview", "Overview"), ("profile", "Latency table"),
                   ("search", "Search"), ("arch", "Architecture"), ("exports", "Exports"), ("quality", "Fidelity"),
                   ("crops", "Crops")))
    if per_layer:
        nav += ' <a href="#per-layer">Per-layer</a>'
    problems = ""
    if d.problems:
        problems = "<ul class='problems'>" + "".join(f"<li>{_e(p)}</li>" for p in d.problems) + "</ul>"
    made = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>agd-deploy report: {_e(d.root.name)}</title><style>{CSS}</style></head><body>"
            f"<h1>agd-deploy run report</h1><p>run folder <code>{_e(d.root)}</code>, made {made}</p>"
            f"<nav>{nav}</nav>{problems}{''.join(sections)}</body></html>\n")
