"""The paths between a host and one joiner: what every path shares (base.py), the WebRTC data
channel (rtc.py), the sealed relay through the server (relay.py), and whether a direct path can
open at all (reach.py)."""
