"""``python -m qbench.plan FILE``: run a plan (:mod:`qbench.plan.cli`, :mod:`qbench.plan.runner`)."""

from qbench.plan.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
