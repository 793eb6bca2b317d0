"""The wire format in `beach_cli/protocol.py`: signaling messages, key-plane payloads, sealed
plaintexts and data-channel frames. Everything malformed must become a `ProtocolError`."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

import pytest

from beach_cli.errors import ProtocolError
from beach_cli.wire.frames import (
    FRAME_VERSION,
    MAX_FRAME_BYTES,
    Frame,
    Hello,
    decode_ack,
    decode_exit,
    decode_frame,
    decode_hello,
    decode_input,
    decode_resize,
    encode_ack,
    encode_exit,
    encode_frame,
    encode_hello,
    encode_input,
    encode_resize,
)
from beach_cli.wire.keyplane import PAYLOADS, SEALED_TYPES, parse_payload, parse_sealed, payload
from beach_cli.wire.signaling import (
    CLIENT_MESSAGES,
    MAX_MESSAGE_BYTES,
    MAX_SERVER_MESSAGE_BYTES,
    SERVER_MESSAGES,
    VERSION,
    client_message,
    parse_client_message,
    parse_server_message,
    server_message,
)

Fields = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Signaling messages
# ---------------------------------------------------------------------------------------------

# Valid field sets for every message type; the last sample of each type has every field.
CLIENT_SAMPLES: dict[str, list[Fields]] = {
    "host": [{}, {"session": "abc234", "reclaim": "r" * 64}],
    "join": [{"session": "abc234"}],
    "signal": [{"to": "host", "data": {"k": "confirm", "mac": "bWFj"}}],
    "drop": [{"peer": "p7"}, {"peer": "p7", "reason": "wrong token"}],
    "relay": [{"to": "host", "data": "c2VhbGVk"}],
}
SERVER_SAMPLES: dict[str, list[Fields]] = {
    "welcome": [
        {"server": "beach/0.1.0", "ice_servers": []},
        {"server": "beach/0.1.0", "ice_servers": [{"urls": ["stun:stun.example.org:3478"]}]},
    ],
    "registered": [
        {"session": "abc234", "reclaim": "k" * 64},
        {"session": "abc234", "reclaim": "k" * 64, "ice_servers": [{"urls": ["stun:s"]}]},
    ],
    "joined": [
        {"session": "abc234", "peer": "p1"},
        {"session": "abc234", "peer": "p1", "ice_servers": []},
    ],
    "peer_joined": [
        {"peer": "p1"},
        {"peer": "p1", "addr": "203.0.113.7", "ice_servers": [{"urls": ["turn:t"]}]},
    ],
    "peer_left": [{"peer": "p1"}],
    "host_left": [{}, {"reason": "the host quit"}],
    "signal": [{"from": "p1", "data": {"k": "sealed", "n": 0, "c": "Y2lwaGVy"}}],
    "relay": [{"from": "p1", "data": "c2VhbGVk"}],
    "error": [{"code": "unknown_session", "message": "no such session"}],
    "joins_refused": [{"code": "rate_limited", "count": 3}],
}

Encoder = Callable[..., str]
Parser = Callable[[str | bytes], dict[str, Any]]

SIDES: dict[str, tuple[dict[str, Any], dict[str, list[Fields]], Encoder, Parser]] = {
    "client": (CLIENT_MESSAGES, CLIENT_SAMPLES, client_message, parse_client_message),
    "server": (SERVER_MESSAGES, SERVER_SAMPLES, server_message, parse_server_message),
}
PARSERS = [
    pytest.param(parse_client_message, id="client"),
    pytest.param(parse_server_message, id="server"),
]

# Ids are 1-32 lowercase letters and digits (docs/protocol.md).
ID_FIELDS = [
    ("client", "host", "session"),
    ("client", "join", "session"),
    ("client", "signal", "to"),
    ("client", "drop", "peer"),
    ("server", "registered", "session"),
    ("server", "joined", "session"),
    ("server", "joined", "peer"),
    ("server", "peer_joined", "peer"),
    ("server", "peer_left", "peer"),
    ("server", "signal", "from"),
]

# Values of the wrong JSON type for a field of each Python type (bool is never an int or str).
WRONG_VALUES: dict[type, list[Any]] = {
    str: [1, 1.5, True, False, None, ["abc234"], {"abc234": 1}],
    int: ["1", 1.5, True, False, None, [1], {"n": 1}],
    dict: ["{}", 1, True, None, []],
    list: ["[]", 1, True, None, {}],
}


def wire(mtype: str, **fields: Any) -> str:
    """A message as a peer would put it on the wire, bypassing the encoder's own checks."""
    return json.dumps({"type": mtype, "v": VERSION, **fields})


def python_type(ftype: type) -> type:
    return str if issubclass(ftype, str) else ftype


def message_cases() -> list[Any]:
    """(side, type, fields) for every sample message."""
    return [
        pytest.param(side, mtype, fields, id=f"{side}-{mtype}-{i}")
        for side, (_, samples, _, _) in SIDES.items()
        for mtype, field_sets in samples.items()
        for i, fields in enumerate(field_sets)
    ]


def field_cases(only_required: bool = False) -> list[Any]:
    """(side, type, full fields, field name, field type, max length) for every field."""
    return [
        # A type without samples fails test_samples_cover_every_message_type, not collection.
        pytest.param(
            side,
            mtype,
            samples.get(mtype, [{}])[-1],
            name,
            ftype,
            maxlen,
            id=f"{side}-{mtype}-{name}",
        )
        for side, (specs, samples, _, _) in SIDES.items()
        for mtype, spec in specs.items()
        for name, (ftype, required, maxlen) in spec.items()
        if required or not only_required
    ]


def wrong_type_cases() -> list[Any]:
    """(side, type, full fields, field name, wrongly typed value)."""
    return [
        pytest.param(side, mtype, fields, name, value, id=f"{p.id}-{value!r}")
        for p in field_cases()
        for side, mtype, fields, name, ftype, _ in [p.values]
        for value in WRONG_VALUES[python_type(ftype)]
    ]


def long_string_cases() -> list[Any]:
    """(side, type, full fields, field name, max length) for every length-limited string."""
    return [
        pytest.param(side, mtype, fields, name, maxlen, id=p.id)
        for p in field_cases()
        for side, mtype, fields, name, ftype, maxlen in [p.values]
        if python_type(ftype) is str and maxlen
    ]


@pytest.mark.parametrize("side", SIDES)
def test_samples_cover_every_message_type(side: str) -> None:
    specs, samples, _, _ = SIDES[side]
    assert set(samples) == set(specs)
    for mtype, field_sets in samples.items():
        assert set(field_sets[-1]) == set(specs[mtype]), f"{mtype}: last sample lacks fields"


@pytest.mark.parametrize(("side", "mtype", "fields"), message_cases())
def test_message_round_trip(side: str, mtype: str, fields: Fields) -> None:
    _, _, encode, parse = SIDES[side]
    text = encode(mtype, **fields)
    assert isinstance(text, str)
    expected = {"type": mtype, "v": VERSION, **fields}
    assert parse(text) == expected
    assert parse(text.encode()) == expected


def test_encode_leaves_out_fields_that_are_none() -> None:
    msg = parse_client_message(client_message("host", session=None, reclaim=None))
    assert msg == {"type": "host", "v": VERSION}


@pytest.mark.parametrize(
    ("mtype", "fields"),
    [
        ("nope", {}),
        ("join", {}),
        ("join", {"session": "Not An Id"}),
        ("join", {"session": "abc234", "extra": 1}),
        ("drop", {"peer": "p1", "reason": "x" * 201}),
        ("welcome", {"server": "s", "ice_servers": []}),  # a server message, not a client one
    ],
)
def test_encode_refuses_what_the_other_side_would_refuse(mtype: str, fields: Fields) -> None:
    with pytest.raises(ProtocolError):
        client_message(mtype, **fields)


def test_encode_refuses_messages_over_max_message_bytes() -> None:
    data = {"k": "sealed", "n": 0, "c": "A" * MAX_MESSAGE_BYTES}
    with pytest.raises(ProtocolError, match="too large"):
        client_message("signal", to="host", data=data)


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(
    "raw", ["", "{", "not json", '{"type": "join",}', "{'type': 'join'}", b"\xff\xfe{}", b"\x00"]
)
def test_parse_rejects_non_json(parse: Parser, raw: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(raw)


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(
    "raw", ["[]", "1", "1.5", '"join"', "null", "true", '[{"type":"join","v":1,"session":"a"}]']
)
def test_parse_rejects_json_that_is_not_an_object(parse: Parser, raw: str) -> None:
    with pytest.raises(ProtocolError):
        parse(raw)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(nested(100_000), id="100000-lists"),
        # Small enough to pass the size check, so the JSON decoder itself hits its depth limit.
        pytest.param(nested(30_000), id="30000-lists"),
        pytest.param(
            '{"type":"signal","v":1,"to":"host","data":{"k":' + nested(30_000) + "}}",
            id="inside-data",
        ),
    ],
)
def test_parse_rejects_deeply_nested_json(parse: Parser, raw: str) -> None:
    with pytest.raises(ProtocolError):
        parse(raw)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("version", [0, 2, -1, "1", None, [1], {"v": 1}])
def test_parse_rejects_other_versions(side: str, version: Any) -> None:
    _, samples, _, parse = SIDES[side]
    mtype = next(iter(samples))
    msg = {"type": mtype, "v": version, **samples[mtype][-1]}
    with pytest.raises(ProtocolError, match="version"):
        parse(json.dumps(msg))


@pytest.mark.parametrize("side", SIDES)
def test_parse_rejects_missing_version(side: str) -> None:
    _, samples, _, parse = SIDES[side]
    mtype = next(iter(samples))
    with pytest.raises(ProtocolError, match="version"):
        parse(json.dumps({"type": mtype, **samples[mtype][-1]}))


def test_parse_rejects_bool_version() -> None:
    with pytest.raises(ProtocolError):
        parse_client_message(json.dumps({"type": "join", "v": True, "session": "abc234"}))


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("mtype", ["nope", "", "JOIN", "Signal", 1, True, None, ["join"]])
def test_parse_rejects_unknown_type(parse: Parser, mtype: Any) -> None:
    with pytest.raises(ProtocolError, match="unknown message type"):
        parse(json.dumps({"type": mtype, "v": VERSION}))


@pytest.mark.parametrize("parse", PARSERS)
def test_parse_rejects_missing_type(parse: Parser) -> None:
    with pytest.raises(ProtocolError, match="unknown message type"):
        parse(json.dumps({"v": VERSION, "session": "abc234"}))


def test_parse_rejects_message_types_of_the_other_direction() -> None:
    with pytest.raises(ProtocolError, match="unknown message type"):
        parse_client_message(wire("joined", session="abc234", peer="p1"))
    with pytest.raises(ProtocolError, match="unknown message type"):
        parse_server_message(wire("join", session="abc234"))


@pytest.mark.parametrize(
    ("side", "mtype", "fields", "name", "ftype", "maxlen"), field_cases(only_required=True)
)
def test_parse_rejects_missing_required_field(
    side: str, mtype: str, fields: Fields, name: str, ftype: type, maxlen: int
) -> None:
    parse = SIDES[side][3]
    incomplete = {k: v for k, v in fields.items() if k != name}
    with pytest.raises(ProtocolError, match="missing field"):
        parse(wire(mtype, **incomplete))


@pytest.mark.parametrize(("side", "mtype", "fields", "name", "value"), wrong_type_cases())
def test_parse_rejects_wrong_field_type(
    side: str, mtype: str, fields: Fields, name: str, value: Any
) -> None:
    parse = SIDES[side][3]
    with pytest.raises(ProtocolError, match="must be"):
        parse(wire(mtype, **{**fields, name: value}))


@pytest.mark.parametrize(("side", "mtype", "fields", "name", "maxlen"), long_string_cases())
def test_parse_accepts_strings_of_exactly_max_length(
    side: str, mtype: str, fields: Fields, name: str, maxlen: int
) -> None:
    parse = SIDES[side][3]
    assert parse(wire(mtype, **{**fields, name: "a" * maxlen}))[name] == "a" * maxlen


@pytest.mark.parametrize(("side", "mtype", "fields", "name", "maxlen"), long_string_cases())
def test_parse_rejects_over_long_strings(
    side: str, mtype: str, fields: Fields, name: str, maxlen: int
) -> None:
    parse = SIDES[side][3]
    with pytest.raises(ProtocolError, match="too long"):
        parse(wire(mtype, **{**fields, name: "a" * (maxlen + 1)}))


BAD_IDS = ["", "ABC234", "abc-234", "abc 234", "abc_234", "ab.c", "../x", "abc\x00", "ab\tc", "é"]


@pytest.mark.parametrize(("side", "mtype", "name"), ID_FIELDS)
@pytest.mark.parametrize("bad", BAD_IDS)
def test_parse_rejects_ids_with_invalid_characters(
    side: str, mtype: str, name: str, bad: str
) -> None:
    _, samples, _, parse = SIDES[side]
    with pytest.raises(ProtocolError, match="not a valid id"):
        parse(wire(mtype, **{**samples[mtype][-1], name: bad}))


@pytest.mark.parametrize(("side", "mtype", "name"), [ID_FIELDS[1], ID_FIELDS[-1]])
def test_parse_rejects_id_with_trailing_newline(side: str, mtype: str, name: str) -> None:
    _, samples, _, parse = SIDES[side]
    with pytest.raises(ProtocolError):
        parse(wire(mtype, **{**samples[mtype][-1], name: "abc234\n"}))


@pytest.mark.parametrize(("side", "mtype", "fields"), message_cases())
@pytest.mark.parametrize("extra", ["extra", "Type", "V", "data_"])
def test_parse_rejects_unexpected_fields(side: str, mtype: str, fields: Fields, extra: str) -> None:
    parse = SIDES[side][3]
    with pytest.raises(ProtocolError, match="unexpected fields"):
        parse(wire(mtype, **fields, **{extra: "x"}))


def padded(size: int) -> str:
    """A valid `join` message made exactly `size` bytes long with trailing whitespace."""
    text = wire("join", session="abc234")
    return text + " " * (size - len(text))


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_parse_accepts_message_of_exactly_max_message_bytes(as_bytes: bool) -> None:
    raw = padded(MAX_MESSAGE_BYTES)
    msg = parse_client_message(raw.encode() if as_bytes else raw)
    assert msg == {"type": "join", "v": VERSION, "session": "abc234"}


@pytest.mark.parametrize(
    ("parse", "limit"),
    [
        pytest.param(parse_client_message, MAX_MESSAGE_BYTES, id="client"),
        # The server's messages may carry a relayed payload plus its envelope.
        pytest.param(parse_server_message, MAX_SERVER_MESSAGE_BYTES, id="server"),
    ],
)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_parse_rejects_messages_over_max_message_bytes(
    parse: Parser, limit: int, as_bytes: bool
) -> None:
    raw = padded(limit + 1)
    with pytest.raises(ProtocolError, match="too large"):
        parse(raw.encode() if as_bytes else raw)


# ---------------------------------------------------------------------------------------------
# Key-plane payloads
# ---------------------------------------------------------------------------------------------

PAYLOAD_SAMPLES: dict[str, list[Fields]] = {
    "pake": [{"m": "bWVzc2FnZQ=="}, {"role": "view", "m": "bWVzc2FnZQ=="}],
    "confirm": [{"mac": "bWFj"}],
    "sealed": [{"n": 0, "c": "Y2lwaGVy"}, {"n": 2**63, "c": "Y2lwaGVy"}],
    "reject": [{"reason": "wrong token"}],
    "hold": [{"s": 4}],
}


def payload_field_cases(only_required: bool = False) -> list[Any]:
    """(kind, full fields, field name, field type, max length) for every payload field."""
    return [
        pytest.param(
            kind, PAYLOAD_SAMPLES.get(kind, [{}])[-1], name, ftype, maxlen, id=f"{kind}-{name}"
        )
        for kind, spec in PAYLOADS.items()
        for name, (ftype, required, maxlen) in spec.items()
        if required or not only_required
    ]


def test_payload_samples_cover_every_kind() -> None:
    assert set(PAYLOAD_SAMPLES) == set(PAYLOADS)
    for kind, field_sets in PAYLOAD_SAMPLES.items():
        assert set(field_sets[-1]) == set(PAYLOADS[kind])


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        pytest.param(kind, fields, id=f"{kind}-{i}")
        for kind, field_sets in PAYLOAD_SAMPLES.items()
        for i, fields in enumerate(field_sets)
    ],
)
def test_payload_round_trip(kind: str, fields: Fields) -> None:
    data = payload(kind, **fields)
    assert data == {"k": kind, **fields}
    # As the other side gets it: through JSON inside a `signal` message.
    relayed = parse_server_message(server_message("signal", **{"from": "host", "data": data}))
    assert parse_payload(relayed["data"]) == data


@pytest.mark.parametrize(("kind", "fields"), [("nope", {}), ("pake", {}), ("sealed", {"n": 0})])
def test_payload_refuses_invalid_payloads(kind: str, fields: Fields) -> None:
    with pytest.raises(ProtocolError):
        payload(kind, **fields)


@pytest.mark.parametrize("data", [None, [], "pake", 1, True, b"{}"])
def test_parse_payload_rejects_non_objects(data: Any) -> None:
    with pytest.raises(ProtocolError, match="must be an object"):
        parse_payload(data)


@pytest.mark.parametrize("data", [{}, {"k": "nope"}, {"k": "PAKE"}, {"k": 1}, {"k": None}])
def test_parse_payload_rejects_unknown_kind(data: Fields) -> None:
    with pytest.raises(ProtocolError, match="unknown signal payload"):
        parse_payload({**data, "m": "bQ=="})


@pytest.mark.parametrize(
    ("kind", "fields", "name", "ftype", "maxlen"), payload_field_cases(only_required=True)
)
def test_parse_payload_rejects_missing_required_field(
    kind: str, fields: Fields, name: str, ftype: type, maxlen: int
) -> None:
    data = {"k": kind, **{k: v for k, v in fields.items() if k != name}}
    with pytest.raises(ProtocolError, match="missing field"):
        parse_payload(data)


@pytest.mark.parametrize(
    ("kind", "fields", "name", "value"),
    [
        pytest.param(*p.values[:3], value, id=f"{p.id}-{value!r}")
        for p in payload_field_cases()
        for value in WRONG_VALUES[p.values[3]]
    ],
)
def test_parse_payload_rejects_wrong_field_type(
    kind: str, fields: Fields, name: str, value: Any
) -> None:
    with pytest.raises(ProtocolError, match="must be"):
        parse_payload({"k": kind, **fields, name: value})


@pytest.mark.parametrize(
    ("kind", "fields", "name", "maxlen"),
    [
        pytest.param(*p.values[:3], p.values[4], id=p.id)
        for p in payload_field_cases()
        if p.values[3] is str and p.values[4]
    ],
)
def test_parse_payload_rejects_over_long_strings(
    kind: str, fields: Fields, name: str, maxlen: int
) -> None:
    assert parse_payload({"k": kind, **fields, name: "a" * maxlen})[name] == "a" * maxlen
    with pytest.raises(ProtocolError, match="too long"):
        parse_payload({"k": kind, **fields, name: "a" * (maxlen + 1)})


@pytest.mark.parametrize("kind", PAYLOAD_SAMPLES)
def test_parse_payload_rejects_unexpected_fields(kind: str) -> None:
    with pytest.raises(ProtocolError):
        parse_payload({"k": kind, **PAYLOAD_SAMPLES[kind][-1], "extra": "x"})


# ---------------------------------------------------------------------------------------------
# Sealed plaintexts
# ---------------------------------------------------------------------------------------------

SEALED_SAMPLES: list[Fields] = [
    {"t": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n"},
    {"t": "answer", "sdp": "v=0\r\n"},
    {
        "t": "candidate",
        "candidate": "candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    },
    {"t": "candidate", "candidate": "", "sdpMid": None, "sdpMLineIndex": None},
    {"t": "wait"},
    {"t": "join", "resume": None},
    {"t": "join", "resume": "0123456789abcdef" * 2},
    {"t": "relay"},
    {"t": "prove", "hints": ["AAAAAAAAAAAAAAAA"]},
    {"t": "proof", "key": "AAAAC3NzaC1lZDI1NTE5", "sig": "AAAAC3NzaC1lZDI1NTE5"},
]


def test_sealed_samples_cover_every_type() -> None:
    assert {s["t"] for s in SEALED_SAMPLES} == SEALED_TYPES


@pytest.mark.parametrize("msg", SEALED_SAMPLES, ids=lambda m: m["t"])
def test_parse_sealed_round_trip(msg: Fields) -> None:
    assert parse_sealed(json.dumps(msg, separators=(",", ":")).encode()) == msg


@pytest.mark.parametrize(
    "plain",
    [
        b"",
        b"{",
        b"\xff\xfe",
        b"[]",
        b"1",
        b"null",
        b'"offer"',
        b'{"sdp": "v=0"}',
        b'{"t": "bye"}',
        b'{"t": 1}',
        b'{"t": null}',
        b'{"t": "offer"}',
        b'{"t": "offer", "sdp": 0}',
        b'{"t": "offer", "sdp": null}',
        b'{"t": "answer", "sdp": ["v=0"]}',
        b'{"t": "answer", "sdp": true}',
        b'{"t": "candidate"}',
        b'{"t": "candidate", "candidate": 1}',
        b'{"t": "candidate", "candidate": null}',
    ],
)
def test_parse_sealed_rejects_malformed(plain: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_sealed(plain)


@pytest.mark.parametrize("plain", [b'{"t": ["offer"]}', b'{"t": {"offer": 1}}'])
def test_parse_sealed_rejects_unhashable_type_field(plain: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_sealed(plain)


def test_parse_sealed_rejects_deeply_nested_json() -> None:
    with pytest.raises(ProtocolError):
        parse_sealed(nested(100_000).encode())


@pytest.mark.parametrize(
    "extra", [{"sdpMid": 0}, {"sdpMid": ["0"]}, {"sdpMLineIndex": "0"}, {"sdpMLineIndex": True}]
)
def test_parse_sealed_rejects_mistyped_candidate_fields(extra: Fields) -> None:
    msg = {"t": "candidate", "candidate": "candidate:1 1 udp 1 192.0.2.1 1 typ host", **extra}
    with pytest.raises(ProtocolError):
        parse_sealed(json.dumps(msg).encode())


# ---------------------------------------------------------------------------------------------
# Data-channel frames
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Frame), ids=lambda k: k.name)
def test_frame_round_trip(kind: Frame) -> None:
    body = b"\x00\x1b[31mbody\xff"
    frame = encode_frame(kind, body)
    assert frame[0] == kind.value
    decoded_kind, decoded_body = decode_frame(frame)
    assert decoded_kind is kind
    assert decoded_body == body


@pytest.mark.parametrize("kind", list(Frame), ids=lambda k: k.name)
def test_frame_with_empty_body_round_trips(kind: Frame) -> None:
    frame = encode_frame(kind)
    assert frame == bytes([kind.value])
    assert decode_frame(frame) == (kind, b"")


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=lambda w: w.__name__)
def test_decode_frame_accepts_bytes_like_and_returns_bytes(wrap: Callable[[bytes], Any]) -> None:
    kind, body = decode_frame(wrap(b"\x02hello"))
    assert kind is Frame.OUTPUT
    assert type(body) is bytes
    assert body == b"hello"


@pytest.mark.parametrize("data", [b"", bytearray()], ids=["bytes", "bytearray"])
def test_decode_frame_rejects_empty_frame(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(data)


@pytest.mark.parametrize("data", ["", "\x02hello"])
def test_decode_frame_rejects_str_frame(data: str) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(data)


@pytest.mark.parametrize("type_byte", [0, max(Frame) + 1, 0x7F, 0xFF])
def test_decode_frame_rejects_unknown_type_byte(type_byte: int) -> None:
    with pytest.raises(ProtocolError, match="unknown frame type"):
        decode_frame(bytes([type_byte]) + b"body")


@pytest.mark.parametrize("offset", [0, 1, 2**40, 2**64 - 1])
def test_input_and_ack_round_trip(offset: int) -> None:
    kind, body = decode_frame(encode_input(offset, b"keys\x03"))
    assert kind == Frame.INPUT and decode_input(body) == (offset, b"keys\x03")
    kind, body = decode_frame(encode_ack(offset))
    assert kind == Frame.ACK and decode_ack(body) == offset


@pytest.mark.parametrize("body", [b"", b"\x00" * 7])
def test_short_input_frame_is_rejected(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_input(body)


@pytest.mark.parametrize("body", [b"", b"\x00" * 7, b"\x00" * 9])
def test_malformed_ack_is_rejected(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_ack(body)


def test_hello_carries_resume_id_and_applied_offset() -> None:
    hello = Hello(1, "rw", 80, 24, ("zlib",), applied=1234, resume="ab" * 16)
    _, body = decode_frame(encode_hello(hello))
    assert decode_hello(body) == hello


@pytest.mark.parametrize(
    "extra", [{"applied": -1}, {"applied": True}, {"resume": "short"}, {"resume": 5}]
)
def test_hello_rejects_bad_resume_fields(extra: dict) -> None:
    body = {"v": 1, "role": "rw", "cols": 80, "rows": 24, "features": [], **extra}
    with pytest.raises(ProtocolError):
        decode_hello(json.dumps(body).encode())


def test_encode_frame_accepts_exactly_max_frame_bytes() -> None:
    frame = encode_frame(Frame.OUTPUT, b"x" * (MAX_FRAME_BYTES - 1))
    assert len(frame) == MAX_FRAME_BYTES


@pytest.mark.parametrize("body_size", [MAX_FRAME_BYTES, 2 * MAX_FRAME_BYTES])
def test_encode_frame_rejects_frames_over_max_frame_bytes(body_size: int) -> None:
    with pytest.raises(ProtocolError, match="too large"):
        encode_frame(Frame.OUTPUT, b"x" * body_size)


# -- HELLO ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hello",
    [
        Hello(FRAME_VERSION, "rw", 80, 24, ("zlib",)),
        Hello(FRAME_VERSION, "view", 1, 1, ()),
        Hello(FRAME_VERSION, "host", 10_000, 10_000, ("zlib", "resync")),
        Hello(2, "rw", 132, 43, ()),  # a newer peer still decodes; the caller checks `version`
    ],
    ids=lambda h: f"v{h.version}-{h.role}-{h.cols}x{h.rows}",
)
def test_hello_round_trip(hello: Hello) -> None:
    kind, body = decode_frame(encode_hello(hello))
    assert kind is Frame.HELLO
    assert decode_hello(body) == hello


def test_decode_hello_without_features_has_none() -> None:
    body = json.dumps({"v": 1, "role": "rw", "cols": 80, "rows": 24}).encode()
    assert decode_hello(body) == Hello(1, "rw", 80, 24, ())


def test_decode_hello_truncates_overlong_role_and_features() -> None:
    body = {"v": 1, "role": "r" * 100, "cols": 80, "rows": 24, "features": ["f" * 40] * 20}
    hello = decode_hello(json.dumps(body).encode())
    assert hello.role == "r" * 16
    assert hello.features == ("f" * 32,) * 16


def hello_body(**changes: Any) -> bytes:
    body = {"v": 1, "role": "rw", "cols": 80, "rows": 24, "features": ["zlib"]}
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\xff", id="not-utf8"),
        pytest.param(b"[]", id="list"),
        pytest.param(b"null", id="null"),
        pytest.param(b'"hello"', id="string"),
        pytest.param(hello_body(v=...), id="no-version"),
        pytest.param(hello_body(v="1"), id="str-version"),
        pytest.param(hello_body(v=None), id="null-version"),
        pytest.param(hello_body(role=...), id="no-role"),
        pytest.param(hello_body(role=1), id="int-role"),
        pytest.param(hello_body(role=None), id="null-role"),
        pytest.param(hello_body(features="zlib"), id="str-features"),
        pytest.param(hello_body(features={"zlib": 1}), id="dict-features"),
        pytest.param(hello_body(features=None), id="null-features"),
        pytest.param(hello_body(cols=...), id="no-cols"),
        pytest.param(hello_body(rows=...), id="no-rows"),
        pytest.param(hello_body(cols="80"), id="str-cols"),
        pytest.param(hello_body(rows=24.0), id="float-rows"),
        pytest.param(hello_body(cols=None), id="null-cols"),
        pytest.param(hello_body(cols=0), id="zero-cols"),
        pytest.param(hello_body(rows=0), id="zero-rows"),
        pytest.param(hello_body(cols=-80), id="negative-cols"),
        pytest.param(hello_body(cols=10_001), id="huge-cols"),
        pytest.param(hello_body(rows=10_001), id="huge-rows"),
        pytest.param(hello_body(cols=2**64), id="overflow-cols"),
    ],
)
def test_decode_hello_rejects_malformed_body(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_hello(body)


@pytest.mark.parametrize("field", ["v", "cols", "rows"])
def test_decode_hello_rejects_bool_where_int_wanted(field: str) -> None:
    with pytest.raises(ProtocolError):
        decode_hello(hello_body(**{field: True}))


def test_decode_hello_rejects_deeply_nested_json() -> None:
    with pytest.raises(ProtocolError):
        decode_hello(nested(100_000).encode())


# -- RESIZE -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (1, 1), (10_000, 10_000), (132, 43), (300, 2)])
def test_resize_round_trip(size: tuple[int, int]) -> None:
    kind, body = decode_frame(encode_resize(*size))
    assert kind is Frame.RESIZE
    assert body == struct.pack("!HH", *size)
    assert decode_resize(body) == size


@pytest.mark.parametrize(
    "size", [(0, 24), (80, 0), (0, 0), (10_001, 24), (80, 10_001), (65_535, 65_535)]
)
def test_decode_resize_rejects_out_of_range_sizes(size: tuple[int, int]) -> None:
    with pytest.raises(ProtocolError, match="out of range"):
        decode_resize(struct.pack("!HH", *size))


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x50", b"\x00\x50\x00", b"\x00P\x00\x18\x00"])
def test_decode_resize_rejects_truncated_or_overlong_body(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed resize"):
        decode_resize(body)


# -- EXIT -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [(0, None), (1, None), (130, 2), (-1, 9), (137, 9)])
def test_exit_round_trip(status: tuple[int, int | None]) -> None:
    kind, body = decode_frame(encode_exit(*status))
    assert kind is Frame.EXIT
    assert decode_exit(body) == status


def test_decode_exit_without_signal_means_no_signal() -> None:
    assert decode_exit(b'{"code": 3}') == (3, None)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"nope",
        b"\xff",
        b"[]",
        b"[0]",
        b"null",
        b'"code"',
        b"0",
        b"{}",
        b'{"signal": 9}',
        b'{"code": "0"}',
        b'{"code": null}',
        b'{"code": 1.5}',
        b'{"code": [0]}',
        b'{"code": 0, "signal": "TERM"}',
        b'{"code": 0, "signal": 1.5}',
        b'{"code": 0, "signal": [9]}',
    ],
)
def test_decode_exit_rejects_malformed_body(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="exit frame"):
        decode_exit(body)


@pytest.mark.parametrize("body", [b'{"code": true}', b'{"code": 0, "signal": false}'])
def test_decode_exit_rejects_bool_where_int_wanted(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_exit(body)


def test_decode_exit_rejects_deeply_nested_json() -> None:
    with pytest.raises(ProtocolError):
        decode_exit(nested(100_000).encode())
