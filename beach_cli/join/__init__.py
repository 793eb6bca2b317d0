"""`beach join`: one join attempt as named steps (handshake.py, behind dialer.py), then the
session that mirrors the shared terminal here (session.py, viewport.py, wrap.py)."""
