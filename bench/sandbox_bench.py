"""The code sandbox's throughput: HumanEval's 164 canonical solutions, each in its own bwrap sandbox.

Prints wall time and samples/s at each concurrency, next to the same programs run with a bare
``python3 -I -S -`` subprocess (no sandbox, no limits) as the baseline: the difference is the
sandbox's own cost (namespaces, mounts, uid switch).

    .venv/bin/python bench/sandbox_bench.py [--concurrency 1 2 4] [--rounds 1]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from evaluators import benchmarks, sandbox
from evaluators.benchmarks.code import CODE_LIMITS, humaneval_program


def _bare(program: str) -> bool:
    r = subprocess.run([sandbox.sandbox_python(), "-I", "-S", "-"], input=program.encode(), capture_output=True,
                       timeout=60)
    return r.returncode == 0


def _sandboxed(program: str) -> bool:
    return sandbox.run_python(program, limits=CODE_LIMITS).ok


def _measure(fn, programs: list[str], concurrency: int) -> tuple[float, int]:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        passed = sum(pool.map(fn, programs))
    return time.perf_counter() - started, passed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    items = benchmarks.load("humaneval").items
    programs = [humaneval_program(i, i["expected_output"]) for i in items]
    print(f"{len(programs)} HumanEval canonical solutions; bwrap {sandbox.bwrap_path()}; python {sandbox.sandbox_python()}")
    print(f"{'mode':<10} {'conc':>4} {'wall s':>8} {'samples/s':>10} {'passed':>7}")
    for concurrency in args.concurrency:
        for mode, fn in (("bare", _bare), ("sandbox", _sandboxed)):
            best = min((_measure(fn, programs, concurrency) for _ in range(args.rounds)), key=lambda r: r[0])
            print(f"{mode:<10} {concurrency:>4} {best[0]:>8.2f} {len(programs) / best[0]:>10.1f} {best[1]:>7}")


if __name__ == "__main__":
    main()
