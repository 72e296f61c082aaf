"""``python -m ntk_limits_experiments``: the ``ntk-limits`` command line (see :mod:`.cli`)."""

from ntk_limits_experiments.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
