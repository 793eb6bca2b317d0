"""The links a benchmark run is measured on: round trip, rate and loss of each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    rtt_ms: float  # the round trip the bridge adds: half of it each way
    mbit: float  # the rate each direction is shaped to
    loss: float = 0.0  # share of frames dropped at random, each direction

    @property
    def delay_ms(self) -> float:
        return self.rtt_ms / 2

    @property
    def rate_bytes(self) -> float:
        return self.mbit * 1e6 / 8

    def describe(self) -> str:
        if self.mbit == 0:
            return "no delay, no rate limit"
        loss = f" / {100 * self.loss:g}% loss" if self.loss else ""
        rate = f"{self.mbit / 1000:g} Gbit/s" if self.mbit >= 1000 else f"{self.mbit:g} Mbit/s"
        return f"{self.rtt_ms:g} ms RTT / {rate}{loss}"


LAN = Profile("LAN", 1.0, 1000.0)
BROADBAND = Profile("broadband", 40.0, 20.0)
MOBILE = Profile("mobile", 150.0, 2.0, 0.01)
PROFILES = (LAN, BROADBAND, MOBILE)
BRIDGE_ALONE = Profile("bridge alone", 0.0, 0.0)  # no delay, no rate limit
