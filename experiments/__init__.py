"""Experiments of ntk-limits: one sub-package per study, all run by one runner."""
