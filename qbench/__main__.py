"""``python -m qbench``: the Hydra app (:mod:`qbench.app.main`)."""

import sys

if __name__ == "__main__":
    try:
        from qbench.app.main import main
    except KeyboardInterrupt:  # Ctrl-C while the app is still loading: nothing has started
        print("qbench: interrupted (SIGINT) while starting; nothing was run", file=sys.stderr)
        sys.exit(130)
    main()
