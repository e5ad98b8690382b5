"""Trainer throughput without Ray or Optuna (for a GPU machine that has only PyTorch).

    PYTHONPATH=. python benchmarks/run_bench.py --paper-size --P 16,64,128,256 --procs 8 --json

takes the same arguments as `nasdun bench`.
"""

import sys

from nasdun.interfaces.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
