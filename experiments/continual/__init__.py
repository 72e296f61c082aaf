"""Study 3 — continual learning: does width reduce forgetting only when under-trained (C4)?

``config.py`` holds the three profiles, ``study.py`` the runner contract (``STUDY``),
``analysis.py`` the forgetting-vs-width slopes, tables and verdict, ``plots.py`` the figures.
"""
