"""Shaped links between network namespaces for the real-link benchmark (bench/reallink.py):
a host side and a joiner side, joined through a middle namespace that delays, rate-limits and
optionally drops their frames."""
