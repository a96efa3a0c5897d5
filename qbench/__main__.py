"""``python -m qbench``: the Hydra app (:mod:`qbench.app.main`)."""

from qbench.app.main import main

if __name__ == "__main__":
    main()
