"""Counters for `/metrics`, in Prometheus' text exposition format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

HELP = {
    "beach_joins_total": ("counter", "Joiners introduced to a host."),
    "beach_join_failures_total": ("counter", "Join attempts refused, by reason."),
    "beach_signals_total": ("counter", "Handshake messages relayed."),
    "beach_relayed_messages_total": (
        "counter",
        "Sealed frames relayed for peers without a direct path.",
    ),
    "beach_relayed_bytes_total": ("counter", "Bytes of sealed frames relayed."),
    "beach_rate_limited_total": ("counter", "Messages refused by a rate limit."),
    "beach_bad_messages_total": ("counter", "Messages refused as malformed."),
    "beach_paced_messages_total": (
        "counter",
        "Messages the server waited for, their connection over its byte or frame budget.",
    ),
    "beach_connections_refused_total": (
        "counter",
        "Connections closed before their upgrade: too many unfinished from one address.",
    ),
    "beach_connections_timed_out_total": (
        "counter",
        "Connections closed for not finishing their upgrade within the header timeout.",
    ),
}


class Metrics:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()  # (name, label value) -> count

    def inc(self, name: str, amount: int = 1, reason: str = "") -> None:
        self.counts[(name, reason)] += amount

    def render(self, gauges: Mapping[str, tuple[str, float]]) -> str:
        """`gauges`: name -> (help, value), measured at scrape time."""
        lines: list[str] = []
        for name, (help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        for name, (kind, help_text) in HELP.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            series = sorted((r, c) for (n, r), c in self.counts.items() if n == name)
            if not series:
                lines.append(f"{name} 0")
            for reason, count in series:
                label = f'{{reason="{reason}"}}' if reason else ""
                lines.append(f"{name}{label} {count}")
        return "\n".join(lines) + "\n"
