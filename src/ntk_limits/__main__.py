"""``python -m ntk_limits``: the ntk-limits command line (see :mod:`ntk_limits.cli`)."""

from ntk_limits.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
