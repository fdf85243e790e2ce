"""Fuzz the contract runtime for a while: the properties of tests/unit/test_contract_fuzz.py, long.

    .venv/bin/python bench/fuzz_contracts.py --minutes 5 [--seed N] [--batch 8]

Every example contract in turn, round after round of hypothesis examples (random, not the
test suite's fixed ones), until the time is up. Prints how many cases (batches) and records
it checked, and the first failure hypothesis found (shrunk), exiting 1 then.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from tests.contract_fuzz import STATS, batches, check_batch  # noqa: E402

from featureline.compiler import compile_project  # noqa: E402
from featureline.contracts import ContractValidator  # noqa: E402

NOW = 1_800_000_000_000_000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    ap.add_argument("--batch", type=int, default=8, help="records per case at most")
    ap.add_argument("--round", type=int, default=200, help="examples per contract per round")
    args = ap.parse_args()

    plan = compile_project(ROOT)
    validators = [ContractValidator(plan.contracts[name]) for name in sorted(plan.contracts)]
    start = time.monotonic()
    end = start + args.minutes * 60
    rounds = 0
    while time.monotonic() < end:
        for v in validators:
            run = settings(
                max_examples=args.round,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
            )(given(batch=batches(v.contract, args.batch))(_property(v)))
            if args.seed is not None:
                run = seed(args.seed + rounds)(run)
            try:
                run()
            except Exception as e:  # hypothesis has printed the shrunk falsifying example
                print(f"FAILED on contract {v.contract.id} after {STATS['cases']:,} cases: {type(e).__name__}: {e}", file=sys.stderr)
                report(start, ok=False)
                return 1
            if time.monotonic() >= end:
                break
        rounds += 1
    report(start, ok=True)
    return 0


def _property(v):
    def prop(batch):
        check_batch(v, batch, NOW)

    return prop


def report(start: float, ok: bool) -> None:
    took = time.monotonic() - start
    verdict = "no property failed" if ok else "a property failed (above)"
    print(f"checked {STATS['cases']:,} cases, {STATS['records']:,} records ({STATS['invalid']:,} invalid) on both paths in {took / 60:.1f} min: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
