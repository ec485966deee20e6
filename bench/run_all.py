"""Run every benchmark and print one table of ratios against its baseline.

    $ python -m bench.run_all            # full sizes
    $ python -m bench.run_all --quick    # smaller shapes, for a smoke check
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform

import torch

MODULES = ("bench.startup", "bench.hooks", "bench.spectra", "bench.forward", "bench.conditions",
           "bench.decode", "bench.threads", "bench.workers", "bench.memory")


def print_rows(rows: list[dict]) -> None:
    width = max(len(r["benchmark"]) for r in rows)
    for r in rows:
        print(f"{r['benchmark']:<{width}}  {r['ratio']:7.3f}x  {r['method']} vs {r['baseline']}"
              f"  ({r['detail']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", default=None, help="module names to run")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor()
    print(f"device: {device or platform.machine()}; torch {torch.__version__}; "
          f"threads {torch.get_num_threads()}")
    rows: list[dict] = []
    for name in MODULES:
        if args.only and name.split(".")[-1] not in args.only:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            print(f"skipped {name}: {err}")
            continue
        rows += module.run(quick=args.quick)
    print_rows(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
