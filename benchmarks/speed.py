"""This machine's speed in one run: matmul peak, inference paths and backends, training steps.

    .venv/bin/python benchmarks/speed.py --out benchmarks/results/speed_cpu.json   # = exda bench
    python benchmarks/speed.py --device cuda --compile --out benchmarks/results/speed_h100.json

The same as ``exda bench`` (``exda/commands/bench.py``); ``--help`` lists the options.
"""

import sys

from exda.commands.bench import main

if __name__ == "__main__":
    sys.exit(main())
