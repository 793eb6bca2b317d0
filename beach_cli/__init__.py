"""beach: share a terminal peer-to-peer over WebRTC, sealed end to end."""

__version__ = "0.1.0"
