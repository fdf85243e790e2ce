"""Time the example generator at benchmark size: 2M events, 20k users, 300 days.

    .venv/bin/python bench/generate_history.py [--events N] [--users N] [--days N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from featureline.generator import write_history


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--merchants", type=int, default=300)
    ap.add_argument("--days", type=int, default=300)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        info = write_history(Path(d), events=a.events, users=a.users, merchants=a.merchants, days=a.days)
        dt = time.perf_counter() - t0
    print(f"write_history: {info['transactions']:,} events, {a.users:,} users, {a.days} days: {dt:.2f} s ({info['transactions'] / dt:,.0f} events/s)")


if __name__ == "__main__":
    main()
