"""``python -m qbench.compare BASELINE CANDIDATE [--threshold 0.05] [--alpha 0.05]``

Compare two sweeps config by config, so a slowdown can gate CI
(:mod:`qbench.analysis.compare`).
"""

from qbench.analysis.cli import compare_main

if __name__ == "__main__":
    raise SystemExit(compare_main())
