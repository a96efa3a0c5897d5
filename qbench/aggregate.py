"""``python -m qbench.aggregate DIR [DIR ...] [--out OUT] [--knee-fraction 0.95] ...``

Aggregate sweeps into a summary, scaling fits, recommendations and a report
(:mod:`qbench.analysis.pipeline`).
"""

from qbench.analysis.cli import aggregate_main

if __name__ == "__main__":
    raise SystemExit(aggregate_main())
