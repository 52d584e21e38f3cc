"""monitor: a longitudinal monitoring scheduler for patients on high-risk drugs."""

__version__ = "0.1.0"
