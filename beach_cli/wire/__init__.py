"""The wire, in one place, one module per plane: `signaling` (client <-> server JSON, the only
plane the server reads), `keyplane` (host <-> joiner payloads the server relays unread),
`frames` (the data channel), `compression` (how OUTPUT frames are deflated) and `ids`.
Everything that crosses a process boundary is encoded and validated here.
"""
