"""The deploy pipeline (`agd export`, `agd bench` as library calls): export the requested formats (export/),
verify each on its runtime (verify/, which only checks), write manifest.json and the Markdown table.
The CLI only parses and prints."""

from __future__ import annotations

import contextlib
import datetime as _dt
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import AgdError
from ..utils import check_writable
from ..export import Artifact, ExportConfig, get_exporter, parse_formats
from ..export.profile import Profile, load_profile
from ..export.source import Source, load_source
from ..verify import manifest as mf
from ..verify.check import Job, reference_outputs, verify
from ..verify.status import Status, failed, not_verified


def conversion_error(fmt: str, e: BaseException) -> str:
    """One line naming the op that blocked a conversion when the converter's message names one."""
    import re

    text = " ".join(str(e).split())
    ops = re.findall(r"(aten[:.]{1,2}[A-Za-z0-9_]+(?:\.[A-Za-z_]+)?)", text)
    op = f" (op {ops[0]})" if ops else ""
    return f"{fmt} conversion failed{op}: {type(e).__name__}: {text[:200]}"


# Manifest entry keys that verification computes afresh (`agd bench` re-measures them; the others describe
# how the file was made and are carried over).
MEASURED = {"format", "precision", "file", "sha256", "bytes", "input_shape", "runtime", "status", "versions",
            "psnr_db", "psnr_min_db", "ssim", "max_abs_err", "min_psnr_db", "min_ms", "p50_ms", "p90_ms",
            "speedup_vs_fp32", "speedup_p50_vs_fp32", "fp32_min_ms", "smaller_than_fp32", "timing_rounds", "clock",
            "checked_on", "not_verified_reason", "speedup_note", "predicted_ms", "predicted_by",
            "prediction_note", "per_layer"}
TEACHER_PROFILE = "teacher"  # the shipped profile a teacher is exported with when no --profile is given


def export_one(fmt: str, source: Source, example, out_dir: Path, cfg: ExportConfig) -> tuple[Artifact | None,
                                                                                           Status | None]:
    """(artifact, None), or (None, why there is none: not verified when a converter is missing, else failed)."""
    from ..errors import MissingRuntimeError

    exp = get_exporter(fmt)
    try:
        if source.onnx is not None:  # a user's ONNX generator: the formats that read ONNX start from its graph
            return exp.export_from_onnx(_prepared_onnx(source, cfg), source.info, out_dir, cfg), None
        return exp.export(source.module, example, source.info, out_dir, cfg), None
    except MissingRuntimeError as e:  # the converter package is not installed: nothing to verify here
        return None, not_verified(str(e))
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("agd_deploy."):
            return None, not_verified(f"{fmt} needs {e.name}, which this build of agd-deploy does not have")
        return None, not_verified(f"{fmt} needs the {e.name!r} package, which is not installed")
    except AgdError:
        raise
    except Exception as e:  # a converter's failure is a manifest status, not a crash
        return None, failed(conversion_error(fmt, e))


def _prepared_onnx(source: Source, cfg: ExportConfig) -> Path:
    """The normalised fp32 copy of an ONNX source (names, fixed shape, metadata), made once per scratch folder."""
    if cfg.fp32_onnx is None:
        from ..export.onnx_source import prepare_onnx

        if cfg.work_dir is None:
            raise AgdError("internal: exporting an ONNX source needs a scratch folder (ExportConfig.work_dir)")
        cfg.fp32_onnx = prepare_onnx(source.onnx, source.info, Path(cfg.work_dir) / "source.fp32.onnx")
    return cfg.fp32_onnx


def _onnx_request(source: Source, fmts: list[str], out: Path, keep_fp32: str | None) -> None:
    """What an ONNX source cannot do, refused in one line before any work: formats whose converters need torch,
    --keep-fp32 auto (its per-layer search runs the torch module), an output that would replace the input."""
    from ..errors import AgdUsageError
    from ..export.onnx_source import check_formats

    check_formats(fmts, source.spec)
    if keep_fp32 and keep_fp32.startswith("auto"):
        raise AgdUsageError("--keep-fp32 auto needs a torch model; for an ONNX file name the nodes to keep in "
                            "float (--keep-fp32 NODE,NODE)")
    for fmt in fmts:
        if (out / get_exporter(fmt).filename(source.info.name)).resolve() == Path(source.spec).resolve():
            raise AgdUsageError(f"--out {out}: the {fmt} artifact would replace the model itself "
                                f"({source.spec}); choose another --out")


def _partners(jobs: list[Job], source, example, work: Path, cfg: ExportConfig) -> dict[str, Artifact]:
    """fp32 artifacts that speedups are measured against: the requested ones, else made in scratch."""
    have = {j.format: j.art for j in jobs if j.art is not None}
    out: dict[str, Artifact] = {}
    for j in jobs:
        fp32 = get_exporter(j.format).fp32_format if j.art is not None else None
        if not fp32 or fp32 in out:
            continue
        if fp32 in have:
            out[fp32] = have[fp32]
            continue
        art, _ = export_one(fp32, source, example, work / "partners", cfg)
        if art is not None:
            out[fp32] = art
    return out


def run_export(model: str, formats: str | list[str] | None, out: str | Path, input_shape: list[int] | None = None,
               calib: str | Path | None = None, profile: str | Path | None = None, keep_fp32: str | None = None,
               threads: int | None = None, rounds: int | None = None, progress: bool = True,
               log=None, calibration: str | None = None, strict: bool = False,
               value_range=None) -> tuple[dict[str, Any], int]:
    """Export MODEL to `formats` in `out`, verify, write manifest.json + benchmark.md. Returns (manifest, exit).

    Without `profile`, a named teacher (e.g. realesrgan-x4plus) gets the shipped `teacher` profile (see
    export/teacher.yaml), anything else the `default` one. `calibration` overrides the profile's method.
    `log` takes progress notes (default: the agd_deploy logger's info); `strict`: "not verified" exits 1.
    MODEL may be a user's ONNX generator (export/onnx_source.py): `value_range` ("LO,HI") is read for it only."""
    from ..log import get as _logger

    log = log or _logger(__name__).info
    if formats:
        parse_formats(formats)  # a bad format name fails before a teacher is loaded
    out = Path(out)
    check_writable(out)
    prof, source = _profile_and_source(model, profile, input_shape, value_range)
    if calibration:
        prof.onnx_int8["calibration"] = calibration
    fmts = parse_formats(formats if formats else prof.formats)
    if source.onnx is not None:
        _onnx_request(source, fmts, out, keep_fp32)
        lo, hi = source.info.value_range
        log(f"{Path(source.spec).name}: ONNX generator, x{source.info.scale} (output H / input H), input values "
            f"{lo:g}..{hi:g} (--value-range LO,HI to change)")
    threads, rounds = threads or prof.threads, rounds or prof.rounds
    _torch_threads(threads)
    from ..export.calib import calibration_inputs, heldout_inputs, input_degradation

    info = source.info
    deg = input_degradation(source)  # a real-world model: calibrated and gated on degraded inputs too
    calib_arrays, calib_meta = calibration_inputs(calib, info.input_shape, info.scale, info.value_range,
                                                  prof.calib_crops, degradation=deg)
    inputs, names = heldout_inputs(info.input_shape, info.scale, info.value_range, prof.heldout_per_image,
                                   degradation=deg)
    log(f"exporting {source.spec} ({info.space}, x{info.scale}, "
        f"{'trained' if source.trained else 'untrained: seeded random weights'}) at "
        f"{'x'.join(map(str, info.input_shape))} to {', '.join(fmts)}")
    int8, lowering_from = _int8_lowering(prof, source, log)
    work = Path(tempfile.mkdtemp(prefix="agd-export-"))
    try:
        cfg = ExportConfig(calib=calib_arrays, int8=int8, threads=threads, work_dir=work)
        sensitivity = None
        if keep_fp32:
            cfg.keep_fp32, sensitivity = _keep_fp32(keep_fp32, source, calib_arrays[0], cfg, prof, log, progress)
        entries = _export_and_verify(fmts, source, cfg, inputs, prof, threads, rounds, out, progress)
        manifest = _manifest(source, prof, threads, calib_meta, names, entries, sensitivity)
        manifest["profile"]["calibration"] = int8.calibration
        manifest["profile"]["onnx_int8"] = {"weights": int8.weight, "activations": int8.activation,
                                            "per_channel": int8.per_channel, "reduce_range": int8.reduce_range,
                                            "op_types": int8.op_types, "lowering_from": lowering_from}
        _remove_stale(out, manifest)
        mf.write(out, manifest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest, mf.exit_code(manifest["artifacts"], strict)


def _profile_and_source(model: str, profile, input_shape, value_range=None) -> tuple[Profile, Source]:
    prof: Profile = load_profile(profile)
    source = load_source(model, input_shape or prof.input_shape, value_range=value_range)
    if profile is None and source.kind == "teacher":
        prof = load_profile(TEACHER_PROFILE)
        if input_shape is None and prof.input_shape:
            source = load_source(model, prof.input_shape)
    return prof, source


def _export_and_verify(fmts: list[str], source: Source, cfg: ExportConfig, inputs, prof: Profile, threads: int,
                       rounds: int, out: Path, progress: bool) -> list[dict[str, Any]]:
    """Each format exported into `out`, its fp32 partner found or made in scratch, all verified together."""
    example = cfg.calib[0]
    refs = reference_outputs(_reference_model(source), inputs, threads)
    jobs = []
    for fmt in _progress(fmts, progress, "exporting"):
        art, err = export_one(fmt, source, example, out, cfg)
        jobs.append(Job(art, fmt, get_exporter(fmt).precision, err))
    partners = _partners(jobs, source, example, cfg.work_dir, cfg)
    entries = verify(jobs, partners, inputs, refs, source.info.value_range, prof.min_psnr, source.trained, threads,
                     rounds, out, progress)
    _add_predictions(entries, source, threads)
    return entries


def _reference_model(source: Source):
    """What every artifact is compared with: the fp32 torch module, or for an ONNX source the user's own file
    run by onnxruntime (verify.check.reference_outputs takes either)."""
    return source.module if source.onnx is None else source.onnx.path


def _int8_lowering(prof: Profile, source: Source, log):
    """onnx-int8's weight type and reduce_range: the lowering of the table the arch was searched with (so the
    table predicts the shipped file), else the one chosen for this device; the profile's explicit ones win."""
    from ..device import identify
    from ..export.profile import resolve_int8
    from ..profiling.lut import LUT, LUTError
    from ..profiling.profile import table_lowering

    table_int8, table = None, None
    meta = source.arch.meta if source.arch is not None else {}
    if meta.get("lut") and meta.get("target") == "ort-cpu-int8":
        try:
            lut = LUT.load(meta["lut"])
            table_int8, table = table_lowering(lut), meta["lut"]
        except LUTError as e:
            from ..log import warn

            warn(f"the latency table the arch was searched with is not readable here ({e}); onnx-int8 "
                 "uses the lowering chosen for this device")
    return resolve_int8(prof, table_int8, identify(), table)


def _add_predictions(entries: list[dict[str, Any]], source: Source, threads: int) -> None:
    """`predicted_ms` from a latency table of this device for the artifact's target, where one matches the
    arch, input shape and thread count (derived generators only)."""
    if source.arch is None:
        return
    from ..profiling import tables
    from ..profiling.predictor import predict_ms

    for e in entries:
        if not e.get("runtime"):
            continue
        try:
            found = tables.find(e["runtime"], source.info.space, source.info.input_shape, threads,
                                this_device_only=True)
            if found is None:
                continue
            e["predicted_ms"] = round(predict_ms(found.lut, source.arch), 3)
            e["predicted_by"] = str(found.path)
        except Exception as ex:  # a stale or foreign table is a note, never an export failure
            e["prediction_note"] = f"no prediction: {str(ex).splitlines()[0][:160]}"


def _remove_stale(out: Path, manifest: dict[str, Any]) -> None:
    """Artifacts an earlier export listed in this folder's manifest but this one did not make: removed, so the
    folder holds exactly what the new manifest describes. Files no manifest lists are never touched."""
    from ..export import artifact_files

    try:
        old = mf.read(out)
    except AgdError:
        return
    keep = {a.get("file") for a in manifest["artifacts"]}
    for a in old.get("artifacts", []):
        f = a.get("file")
        if not f or f in keep or "/" in f or f.startswith("."):
            continue
        p = out / f
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            for q in artifact_files(p):
                q.unlink(missing_ok=True)


def _per_layer(entries, d: Path, source: Source, x, cfg: ExportConfig, threads: int, runs: int) -> None:
    """`agd bench --per-layer`: per-node profiles mapped to the arch's blocks (at the exported shape), saved
    into the manifest. The int8 file's compacted node names are matched against an fp32 ONNX: the folder's
    `onnx` artifact, the user's ONNX source, else one exported in scratch."""
    import dataclasses

    from ..verify import layers

    arch = dataclasses.replace(source.arch, input_shape=list(source.info.input_shape)) if source.arch else None

    def reference():
        fp32 = [e for e in entries if e.get("format") == "onnx" and e.get("file") and (d / e["file"]).is_file()]
        if fp32:
            return d / fp32[0]["file"]
        if source.kind == "onnx":
            return Path(source.spec)
        from ..export.onnx import fp32_onnx_in

        return fp32_onnx_in(cfg, source.module, x, source.info)

    layers.add_per_layer(entries, d, x, threads, arch, reference, runs=runs)
    layers.save_to_manifest(d, entries)


def _deg_name(key: str) -> str:
    """A manifest's degradation key (`realesrgan:v1:<hash>`, `jpeg:50`) -> the name that makes it again."""
    from ..data.degrade import get_degradation

    for name in ("realesrgan", "realesrgan+clean", "photo"):
        if get_degradation(name).key == key:
            return name
    return "realesrgan" if key.startswith("realesrgan:") else key


def _torch_threads(threads: int) -> None:
    """The fp32 reference and sensitivity runs use as many torch threads as the runtimes get: on a shared
    box an unbounded pool mostly spins."""
    import torch

    torch.set_num_threads(max(1, threads))


def _keep_fp32(spec: str, source, example, cfg, prof, log, progress):
    """--keep-fp32 LAYERS (comma separated module paths / node names) or auto[:N]."""
    if not spec.startswith("auto"):
        return [s.strip() for s in spec.split(",") if s.strip()], None
    from ..verify.sensitivity import choose_fp32_layers

    return choose_fp32_layers(spec, source, example, cfg, prof, log=log, progress=progress)


def _manifest(source, prof, threads, calib_meta, names, entries, sensitivity) -> dict[str, Any]:
    from ..runtimes import device_fingerprint

    m: dict[str, Any] = {
        "schema": 1, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": source.to_dict(), "input_shape": source.info.input_shape, "threads": threads,
        "profile": {"name": prof.name, "thresholds": prof.thresholds, "calibration": prof.calibration,
                    "onnx_int8": {}, "rounds": prof.rounds, "heldout_per_image": prof.heldout_per_image},
        "calibration": calib_meta, "heldout": names, "device": device_fingerprint(), "artifacts": entries}
    if sensitivity:
        m["sensitivity"] = sensitivity
    return m


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="format", leave=False)


def run_bench(directory: str | Path, threads: int | None = None, rounds: int | None = None,
              progress: bool = True, strict: bool = False, per_layer: bool = False,
              per_layer_runs: int = 10) -> tuple[dict[str, Any], int]:
    """Re-verify and re-time the artifacts of a manifest on this machine (sha256 checked first); `strict`:
    "not verified" exits 1. `per_layer`: each artifact's per-node profile (verify/layers.py) as `per_layer`,
    also written into DIR/manifest.json."""
    d = Path(directory)
    old = mf.read(d)
    model = old.get("model") or {}
    if "spec" not in model:
        raise AgdError(f"{d}/manifest.json does not say which model it holds (no model.spec)")
    source = load_source(model["spec"], old.get("input_shape"), seed=model.get("seed") or 0,
                         value_range=model.get("value_range") if model.get("kind") == "onnx" else None)
    prof = Profile()
    pd = old.get("profile") or {}
    prof.thresholds.update(pd.get("thresholds") or {})
    prof.heldout_per_image = int(pd.get("heldout_per_image", prof.heldout_per_image))
    threads = threads or int(old.get("threads", 1))
    rounds = rounds or int(pd.get("rounds", prof.rounds))
    _torch_threads(threads)
    from ..export.calib import heldout_inputs

    info = source.info
    deg = (old.get("calibration") or {}).get("degradation")  # the export's held-out set, degraded ones included
    inputs, names = heldout_inputs(info.input_shape, info.scale, info.value_range, prof.heldout_per_image,
                                   degradation=None if deg in (None, "bicubic") else _deg_name(deg))
    refs = reference_outputs(_reference_model(source), inputs, threads)
    jobs = []
    for e in old["artifacts"]:
        fmt = e.get("format")
        exp = get_exporter(fmt)
        if not e.get("file"):
            jobs.append(Job(None, fmt, exp.precision, error=failed("no file in the manifest (its export had failed)")))
            continue
        path = d / e["file"]
        extra = {k: v for k, v in e.items() if k not in MEASURED}  # what the export recorded about the file
        extra["expected_sha256"] = e.get("sha256")
        if fmt == "tensorrt-int8":
            extra["check_target"] = "ort-cpu-int8"
        skip = ""
        if Status.parse(e.get("status")).kind.value == "not verified" and fmt.startswith("coreml"):
            from ..export.coreml import _skip

            skip = _skip()
        jobs.append(Job(Artifact(fmt, exp.precision, path, exp.target, skip, extra), fmt, exp.precision))
    work = Path(tempfile.mkdtemp(prefix="agd-bench-"))
    try:
        calib_arrays = [inputs[0]]  # only used if an fp32 partner must be re-made (fp32 needs no calibration)
        cfg = ExportConfig(calib=calib_arrays, threads=threads, work_dir=work)
        partners = _partners(jobs, source, inputs[0], work, cfg)
        entries = verify(jobs, partners, inputs, refs, info.value_range, prof.min_psnr, source.trained, threads,
                         rounds, d, progress)
        if per_layer:
            _per_layer(entries, d, source, inputs[0], cfg, threads, per_layer_runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = dict(old)
    result.update({"benched": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "threads": threads,
                   "heldout": names, "artifacts": entries})
    with contextlib.suppress(Exception):
        from ..runtimes import device_fingerprint

        result["device"] = device_fingerprint()
    return result, mf.exit_code(entries, strict)
