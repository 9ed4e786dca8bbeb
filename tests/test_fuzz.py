"""Fuzzing user inputs through the CLI (tests/fuzzing.py says what and how): mutated arch JSON, LUT JSON,
recipe YAML, export-profile YAML and odd or damaged images. Every case must end in exit 0/1/2 with at most a
one-line error: no traceback, no temp file left. The default suite runs a bounded budget (~1200 cases,
derandomized: the same cases every run); `pytest -m slow tests/test_fuzz.py` runs 10x more, random. The totals
go to <pytest tmp>/fuzz-summary.json and are printed (`-s` shows them); `python benchmarks/fuzz.py` runs N
cases outside pytest."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzing import Cases, Tally

BUDGET = {"arch": 250, "lut": 250, "recipe": 250, "profile": 200, "image": 250}  # >= 1000 cases in all
SLOW_FACTOR = 10
TALLY = Tally()


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    c = Cases(tmp_path_factory.mktemp("fuzz"), TALLY)
    yield c
    summary = TALLY.summary()
    out = tmp_path_factory.getbasetemp() / "fuzz-summary.json"
    out.write_text(json.dumps(summary, indent=1))
    print(f"\nfuzz: {summary['cases']} cases tried, {summary['tracebacks']} tracebacks, "
          f"{summary['findings']} findings, exit codes {summary['exit_codes']} ({out})")
    c.cleanup()


def _fuzz(cases, kind: str, n: int, derandomize: bool) -> None:
    before = len(TALLY.findings)

    @settings(max_examples=n, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data):
        getattr(cases, kind)(data)

    one()
    new = TALLY.findings[before:]
    assert not new, f"{len(new)} finding(s) for {kind}; first: " + json.dumps(new[0].__dict__, indent=1)[:4000]
    assert TALLY.cases[kind] >= n * 0.9  # hypothesis ran (nearly) the whole budget


@pytest.mark.parametrize("kind", list(BUDGET))
def test_fuzz_cli(cases, kind):
    _fuzz(cases, kind, BUDGET[kind], derandomize=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(BUDGET))
def test_fuzz_cli_long(cases, kind):
    _fuzz(cases, kind, BUDGET[kind] * SLOW_FACTOR, derandomize=False)
