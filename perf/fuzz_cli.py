"""Long run of the CLI fuzz properties of tests/unit/cli/test_fuzz_cli.py (issue #15).

Hypothesis draws hostile values (empty, negative, zero, huge, NaN, inf, unicode, control characters,
markup brackets, hostile targets) for every option of every command and checks, for as many
examples as asked:

1. parsing (the real hardened click command) accepts or gives a usage error, in under 2 s, and an
   accepted float is finite;
2. whole in-process runs of the cheap commands (scan, ports, map, doctor --rung 1, simulate with
   few requests, probe on a closed port) end with 0, 1 or 2, no traceback, no "internal error",
   and strict JSON (no NaN/Infinity) with --json.

Counts by category go to stdout as JSON and to perf/results/fuzz_cli.json.

Usage: ``python perf/fuzz_cli.py --parse-examples 20000 --run-examples 1500``
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "cli"))

import test_fuzz_cli as fuzz  # noqa: E402  (after the sys.path line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parse-examples", type=int, default=5000)
    parser.add_argument("--run-examples", type=int, default=500)
    args = parser.parse_args()
    tried: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()
    failures: list[str] = []

    @settings(
        max_examples=args.parse_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(fuzz._cases())
    def parse(case: tuple[str, list[str]]) -> None:
        tried[f"parse {case[0]}"] += 1
        try:
            fuzz.test_parsing_accepts_or_gives_a_usage_error_quickly.hypothesis.inner_test(case)  # type: ignore[attr-defined]
        except Exception as exc:  # count and keep going: this is a survey, not a test
            failed[f"parse {case[0]}"] += 1
            failures.append(f"{case}: {type(exc).__name__}: {str(exc)[:300]}")

    @settings(
        max_examples=args.run_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(fuzz._run_cases())
    def run(argv: list[str]) -> None:
        code, stdout, stderr = fuzz._run_cli(argv)
        tried[f"run {argv[0]} exit {code}"] += 1
        try:
            fuzz._assert_clean_end(argv, code, stdout, stderr)
        except Exception as exc:
            failed[f"run {argv[0]}"] += 1
            failures.append(f"{argv}: {type(exc).__name__}: {str(exc)[:300]}")

    t0 = time.monotonic()
    parse()
    t1 = time.monotonic()
    run()
    t2 = time.monotonic()
    result = {
        "parse_examples": args.parse_examples,
        "run_examples": args.run_examples,
        "parse_s": round(t1 - t0, 1),
        "run_s": round(t2 - t1, 1),
        "tried": dict(sorted(tried.items())),
        "failed": dict(sorted(failed.items())),
        "failures": failures[:50],
    }
    text = json.dumps(result, indent=2)
    print(text)
    out = ROOT / "perf" / "results" / "fuzz_cli.json"
    out.write_text(text + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
