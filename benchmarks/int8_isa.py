"""int8 per ISA: the onnx-int8 lowering agd picks for THIS CPU beside the one it picks for the other ISA, fp32
alongside, side by side in one run (PSNR vs fp32, min ms, speed-up, size).

    python benchmarks/int8_isa.py runs/demo/train realesrgan-x4plus --input 1x3x32x32 --out benchmarks/results

For each MODEL: its export profile (`default` for a CKPT, `teacher` for a named teacher, as `agd export`
chooses) resolved by `export.profile.resolve_int8` for this machine's identity and for the other ISA's (a
VNNI machine's if this one has no int8 dot products, else one without: the Zen 4 / Zen 1 cpuinfo fixtures in
tests/fixtures/cpuinfo), quantized from one fp32 ONNX on the same calibration crops and timed interleaved
with it through benchmarks/export_int8.py's sweep. Writes int8-isa-<device_class>.md/.json under --out.
Run it alone on the machine: speed-ups on a busy CPU are noise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIX = HERE.parent / "tests" / "fixtures" / "cpuinfo"


def other_isa(me):
    """An identity of the other kind: with int8 dot products if this CPU has none, else without."""
    from agd_deploy.device import parse_cpuinfo

    name = "amd-epyc-zen1-2c.cpuinfo" if me.int8_dot else "amd-epyc-zen4-2c.cpuinfo"
    return parse_cpuinfo((FIX / name).read_text(), source=str(FIX / name))


def lowerings(model: str, me, other) -> dict[str, tuple[dict, int, str]]:
    """The two lowerings as export_int8.SWEEP entries: name -> (OrtInt8Config fields, crops, what)."""
    from agd_deploy.export.profile import load_profile, resolve_int8

    prof = load_profile("default" if Path(model).exists() else "teacher")  # a folder is a CKPT, else a teacher
    out = {}
    for tag, ident in (("this-cpu", me), ("other-isa", other)):
        cfg, _ = resolve_int8(prof, None, ident)
        kw = {k: v for k, v in cfg.to_dict().items() if k != "keep_fp32"}
        weight, bits = cfg.weight, "7-bit" if cfg.reduce_range else "8-bit"
        scheme = "u8s8" if weight == "int8" else "u8u8"
        out[tag] = (kw, prof.calib_crops, f"picked for {ident.device_class}: {scheme} {bits} weights, "
                                          f"{cfg.calibration} ({prof.name} profile)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="CKPT folders and/or teacher names")
    ap.add_argument("--input", default="1x3x32x32")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--work", default=None, help="keep the quantized files here (a rerun re-times them)")
    a = ap.parse_args()

    sys.path.insert(0, str(HERE))
    import export_int8 as E

    from agd_deploy.device import identify
    from agd_deploy.utils import atomic_write_json, atomic_write_text, parse_shape

    me = identify()
    other = other_isa(me)
    report = {"this_device": me.to_dict(), "other_isa": other.device_class, "input": a.input, "models": {}}
    lines = [f"# int8 per ISA on {me.describe()}", "",
             f"`python benchmarks/int8_isa.py {' '.join(a.models)} --input {a.input} --rounds {a.rounds}`; "
             f"min of {a.rounds} interleaved rounds, 1 thread, CPU clock. 'other-isa' = the lowering agd picks for "
             f"{other.device_class}, run here.", ""]
    for model in a.models:
        E.SWEEP.update(lowerings(model, me, other))
        work = Path(a.work or "/tmp/agd-int8-isa") / Path(model).name
        rows = E.sweep(model, "this-cpu,other-isa", parse_shape(a.input), 1, a.rounds, work)
        report["models"][model] = rows
        lines += [f"## {model}", "", E.sweep_table(rows), ""]
        print("\n".join(lines[-4:]))
    out = Path(a.out)
    atomic_write_json(out / f"int8-isa-{me.device_class}.json", report)
    atomic_write_text(out / f"int8-isa-{me.device_class}.md", "\n".join(lines) + "\n")
    print(f"wrote {out / f'int8-isa-{me.device_class}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
