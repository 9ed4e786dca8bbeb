"""Fuzz the CLI with N mutated inputs per kind and print cases tried, tracebacks and the exit code histogram.

    python benchmarks/fuzz.py --n 200                 # 200 cases of each kind (arch, lut, recipe, profile, image)
    python benchmarks/fuzz.py --n 2000 --kinds image --json

The cases and the oracle are tests/fuzzing.py's (the same as tests/test_fuzz.py, which runs a bounded budget in
the default suite). Findings are printed with the input's first bytes; exit 1 when there is any."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fuzzing import KINDS, Cases, Tally  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="cases per kind")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = ap.parse_args()
    tally = Tally()
    cases = Cases(Path(tempfile.mkdtemp(prefix="agd-fuzz-")), tally)
    seconds = {}
    try:
        for kind in a.kinds.split(","):
            t0 = time.perf_counter()
            s = settings(max_examples=a.n, deadline=None, database=None, suppress_health_check=list(HealthCheck))

            run = getattr(cases, kind)

            @s
            @given(st.data())
            def one(data):
                run(data)

            if a.seed is not None:
                from hypothesis import seed
                one = seed(a.seed)(one)
            one()
            seconds[kind] = round(time.perf_counter() - t0, 1)
    finally:
        cases.cleanup()
    summary = {**tally.summary(), "seconds": seconds}
    if a.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"cases tried: {summary['cases']} {summary['cases_by_kind']}")
        print(f"tracebacks: {summary['tracebacks']}  (findings of any kind: {summary['findings']})")
        print(f"exit code histogram: {summary['exit_codes']}")
        print(f"seconds per kind: {seconds}")
        for f in tally.findings[:10]:
            print(f"\n--- {f.kind}: {f.problem}: agd {' '.join(f.args)}\n    input: {f.sample[:200]}\n"
                  + "\n".join("    " + ln for ln in f.detail.strip().splitlines()[-6:]))
    return 1 if tally.findings else 0


if __name__ == "__main__":
    sys.exit(main())
