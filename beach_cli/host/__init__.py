"""`beach host`: the shared program on a PTY (session.py, the hot path), its registration with
the server (registration.py), and per joiner a handshake (handshake.py) then a stream
(stream.py), tied together by joiner.py and limited to what contract.py allows."""
