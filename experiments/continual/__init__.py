"""Study 3 — continual learning: does width reduce forgetting only when under-trained (C4)?

``config.py`` holds the typed config, its three profiles and the typed run specs,
``study.py`` the runner contract (``STUDY``: expand, execute, summarize), ``networks.py``
the compiled programs (SP and NTP members in one program, infinite-width kernels),
``analysis.py`` the forgetting-vs-width slopes, tables and verdict, ``plots.py`` the figures.
"""
