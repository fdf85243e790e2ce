"""Hostile YAML against the loader: CPU time, peak RSS and the error of each, one fresh process per file.

    .venv/bin/python bench/yaml_limits.py          # about 15 s
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ONE = """
import resource, sys, time
from featureline.errors import SpecError
from featureline.yamlio import load_file
t = time.process_time()
try:
    load_file(sys.argv[1], "f.yaml")
    out = "loaded"
except SpecError as e:
    out = e.problems[-1].render(snippet=False)
dt = time.process_time() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{dt * 1000:8.0f} ms {peak:4.0f} MB peak RSS  {out[:90]}")
"""

EXAMPLE = """
import glob, time
from featureline.yamlio import load_file
files = ["featureline.yaml", *sorted(glob.glob("features/*.yaml")), *sorted(glob.glob("contracts/*.yaml"))]
best = 1e9
for _ in range(40):
    t = time.process_time()
    for f in files:
        load_file(f)
    best = min(best, time.process_time() - t)
print(f"{best * 1000:8.1f} ms  the example project's {len(files)} files (best of 40)")
"""


def cases() -> dict[str, bytes]:
    laughs = ['a0: &a0 ["lol"' + ', "lol"' * 8 + "]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return {
        "billion laughs (9^8)": ("\n".join(laughs) + "\n").encode(),
        "recursive alias": b"a: &x [1, *x]\n",
        "5,000 deep [": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        "100,000 deep [": b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
        "1,000 deep block": "".join(" " * i + "k:\n" for i in range(1000)).encode(),
        "4,301-digit int": b"a: " + b"1" * 4301 + b"\n",
        "tag on a mapping": b"a: !!python/object/apply:os.system {args: [echo]}\n",
        "200,000 tiny values": b"a: [" + b",".join([b"1"] * 200_000) + b"]\n",
        "20,000 errors": "".join(f"k{i}: !Ref x\n" for i in range(20_000)).encode(),
        "not UTF-8": b"name: caf\xe9\n",
    }


def main() -> None:
    env_path = str(REPO / "src")
    with tempfile.TemporaryDirectory() as d:
        for name, data in cases().items():
            p = Path(d) / "f.yaml"
            p.write_bytes(data)
            r = subprocess.run([sys.executable, "-c", ONE, str(p)], capture_output=True, text=True, env={"PYTHONPATH": env_path}, timeout=120)
            print(f"{name:22}{(r.stdout or r.stderr).strip().splitlines()[-1]}")
        p = Path(d) / "f.yaml"
        with open(p, "wb") as fh:
            fh.write(b"a: ")
            fh.truncate(100 << 20)  # sparse
        r = subprocess.run([sys.executable, "-c", ONE, str(p)], capture_output=True, text=True, env={"PYTHONPATH": env_path}, timeout=120)
        print(f"{'100 MB file':22}{r.stdout.strip()}")
    r = subprocess.run([sys.executable, "-c", EXAMPLE], capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": env_path}, timeout=300)
    print(f"{'normal files':22}{(r.stdout or r.stderr).strip()}")


if __name__ == "__main__":
    main()
