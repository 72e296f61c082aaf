"""Speed and memory benchmarks of ntk-limits: ``python -m benchmarks.run`` (``make bench``)."""
