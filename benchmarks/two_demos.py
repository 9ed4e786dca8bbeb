"""Two `agd demo` runs started together on one fresh cache (issue 17: locks on shared caches).

Starts `agd -v demo --out RUN/A` and `agd -v demo --out RUN/B` at the same moment with one fresh AGD_CACHE_DIR,
then reports each one's exit code, wall time and the seconds it waited on a lock (parsed from the
`waited N s for ...` lines that `utils.file_lock` logs at -v), and checks that the cache holds ONE converted
teacher and ONE latency table of this device (the second demo reused the first one's).

    python benchmarks/two_demos.py --run /tmp/two_demos                 # the full demo twice (~15 min each)
    python benchmarks/two_demos.py --run /tmp/two --train-steps 2 --formats onnx-int8   # cheaper

Timings on a shared machine are not comparable: run it on a quiet one. Writes RUN/two_demos.json."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

WAITED = re.compile(r"waited ([0-9.]+) s for (.+)")


def run_two(run: Path, extra: list[str]) -> dict:
    cache = run / "cache"
    if cache.exists():
        shutil.rmtree(cache)  # a fresh cache: both demos must build the teacher and the table
    env = dict(os.environ, AGD_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")
    procs, logs, t0 = {}, {}, {}
    for name in ("A", "B"):
        log = open(run / f"{name}.stderr.log", "w")
        logs[name] = log
        t0[name] = time.perf_counter()
        procs[name] = subprocess.Popen([sys.executable, "-m", "agd_deploy", "-v", "demo", "--out", str(run / name),
                                        *extra], env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    wall: dict[str, float] = {}

    def wait(name: str) -> None:
        procs[name].wait()
        wall[name] = time.perf_counter() - t0[name]

    threads = [threading.Thread(target=wait, args=(n,)) for n in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {}
    for name, p in procs.items():
        logs[name].close()
        text = (run / f"{name}.stderr.log").read_text(errors="replace")
        waits = [{"seconds": float(m.group(1)), "for": m.group(2).strip()} for m in WAITED.finditer(text)]
        out[name] = {"exit": p.returncode, "wall_s": round(wall[name], 1),
                     "waited_s": round(sum(w["seconds"] for w in waits), 1), "waits": waits,
                     "warnings": [ln for ln in text.splitlines() if ln.startswith("warning:")
                                  and "waiting for another agd process" not in ln]}
    teachers = sorted(p.name for p in (cache / "teachers").glob("*.safetensors"))
    tables = sorted(str(p.relative_to(cache)) for p in (cache / "latency_tables").rglob("*.json")
                    if not any(part.endswith(".work") for part in p.parts))
    out["cache"] = {"teachers": teachers, "tables": tables}
    out["ok"] = (all(out[n]["exit"] == 0 for n in procs) and len(teachers) == 1 and len(tables) >= 1
                 and any(out[n]["waited_s"] > 0 for n in procs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="Folder for A/, B/, cache/ and two_demos.json.")
    ap.add_argument("--train-steps", type=int, default=None, help="Passed to agd demo (fewer = cheaper).")
    ap.add_argument("--formats", default=None, help="Passed to agd demo (e.g. onnx-int8).")
    ap.add_argument("--shipped-lut", action="store_true", help="Passed to agd demo.")
    a = ap.parse_args()
    a.run.mkdir(parents=True, exist_ok=True)
    extra = ([f"--train-steps={a.train_steps}"] if a.train_steps else []) + (
        [f"--formats={a.formats}"] if a.formats else []) + (["--shipped-lut"] if a.shipped_lut else [])
    res = run_two(a.run, extra)
    (a.run / "two_demos.json").write_text(json.dumps(res, indent=2))
    for n in ("A", "B"):
        r = res[n]
        print(f"{n}: exit {r['exit']}, wall {r['wall_s']:.0f} s, waited {r['waited_s']:.0f} s "
              + "; ".join(f"{w['seconds']:.0f} s for {w['for']}" for w in r["waits"]))
    print(f"cache: {len(res['cache']['teachers'])} teacher(s), {len(res['cache']['tables'])} table(s): "
          f"{res['cache']['tables']}")
    print("ok" if res["ok"] else "NOT ok")
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    main()
