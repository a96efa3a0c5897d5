"""``python -m qbench.plan FILE``: run a plan (:mod:`qbench.plan.runner`)."""

from qbench.plan.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
