"""The one error type of the benchmark: a measurement that could not be taken."""

from __future__ import annotations


class BenchError(Exception):
    """A step failed or timed out; the message says which and what was last seen."""
