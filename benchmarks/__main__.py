"""``python -m benchmarks [--size small|full] [--output markdown|json]``: run every benchmark and
print target vs measured, with PASS/MISS per row (docs/benchmarks.md). Exit 1 if a row missed."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from benchmarks import run_all
from benchmarks.common import SIZES, machine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="full: the documented sizes (about 2 minutes); small: a quick check")
    parser.add_argument("--output", choices=["markdown", "json"], default="markdown")
    parser.add_argument("--only", choices=["plan", "apply", "turn", "startup", "upstream", "sandbox", "retrieval", "replicas",
                                            "operations", "vector_stores", "ingestion"], action="append",
                        help="run only these benchmarks (repeatable)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    rows = run_all(SIZES[args.size], args.only, progress=lambda name: print(f"running {name} ...", file=sys.stderr))
    info = machine()
    if args.output == "json":
        print(json.dumps({"size": args.size, "machine": info, "rows": [row.to_dict() for row in rows]}, indent=2))
    else:
        print(markdown(rows, info, args.size))
    return 1 if any(row.passed is False for row in rows) else 0


def markdown(rows, info: dict, size: str) -> str:
    lines = [f"Size `{size}` on {info['nproc']} x {info['cpu']}, Python {info['python']}, {info['date']}", "",
             "| Benchmark | Measured | Baseline | Ratio | Target | Result |", "|---|---|---|---|---|---|"]
    for row in rows:
        result = {True: "PASS", False: "MISS", None: "n/a"}[row.passed]
        lines.append(f"| {row.name} | {row.measured} | {row.baseline} | {row.ratio} | {row.target} | {result} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
