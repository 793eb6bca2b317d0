"""The beach benchmark suite: `python -m bench` (see docs/performance.md)."""
