"""Join tokens and the key exchange in `beach_cli/keys.py`: SPAKE2, key confirmation, sealing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from beach_cli.errors import ProtocolError, SecurityError, WrongToken
from beach_cli.keys import KeyExchange, Role, Token, parse_token
from beach_cli.wire.ids import ALPHABET, random_code
from beach_cli.wire.keyplane import parse_payload
from beach_cli.wire.signaling import parse_server_message, server_message

SESSION = "abc234"
PEER = "p1"
SECRET = "xyz789"

OFFER = {"t": "offer", "sdp": "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"}
ANSWER = {"t": "answer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}
CANDIDATE = {
    "t": "candidate",
    "candidate": "candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
}

# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "text"),
    [
        (Token(SESSION, "rw", SECRET), "abc234-xyz789"),
        (Token(SESSION, "view", SECRET), "abc234-v-xyz789"),
    ],
)
def test_token_str_and_parse_round_trip(token: Token, text: str) -> None:
    assert str(token) == text
    assert parse_token(text) == token
    assert parse_token(str(token)) == token


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ABC234-XYZ789", Token(SESSION, "rw", SECRET)),
        ("  abc234-xyz789\n", Token(SESSION, "rw", SECRET)),
        ("\tAbC234-V-xYz789  ", Token(SESSION, "view", SECRET)),
        ("abc234-V-XYZ789\r\n", Token(SESSION, "view", SECRET)),
    ],
)
def test_parse_token_ignores_case_and_surrounding_whitespace(text: str, expected: Token) -> None:
    assert parse_token(text) == expected


def test_parse_token_accepts_parts_of_32_characters() -> None:
    text = f"{'a' * 32}-v-{'b' * 32}"
    assert parse_token(text) == Token("a" * 32, "view", "b" * 32)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc234",
        "abc234-",
        "-xyz789",
        "abc234--xyz789",
        "abc234-x-xyz789",
        "abc234-rw-xyz789",
        "abc234-v-",
        "-v-xyz789",
        "abc234-v-xyz789-1",
        "abc 234-xyz789",
        "abc234 - xyz789",
        "abc_234-xyz789",
        "abc234-xyz789!",
        "abc234-xyz.789",
        "abc234-xyzé89",
        "abc234-\u0661\u0662\u0663",  # Arabic-Indic digits: str.isalnum() but not ASCII
        f"{'a' * 33}-xyz789",
        f"abc234-{'x' * 33}",
    ],
)
def test_parse_token_rejects_malformed_tokens(text: str) -> None:
    with pytest.raises(WrongToken):
        parse_token(text)


@pytest.mark.parametrize("length", [0, 1, 6, 32, 100])
def test_random_code_has_the_requested_length_and_only_alphabet_characters(length: int) -> None:
    code = random_code(length)
    assert len(code) == length
    assert set(code) <= set(ALPHABET)


def test_alphabet_has_no_easily_misread_characters() -> None:
    assert not set(ALPHABET) & set("01ilo")
    assert ALPHABET == ALPHABET.lower()
    assert len(set(ALPHABET)) == len(ALPHABET)


def test_random_code_draws_from_the_whole_alphabet() -> None:
    # 31 * (30/31)**3000 ~ 1e-41: a missing character would mean a biased generator.
    assert set(random_code(3000)) == set(ALPHABET)
    assert random_code(32) != random_code(32)


def test_random_codes_make_parseable_tokens() -> None:
    token = Token(random_code(8), "view", random_code(6))
    assert parse_token(str(token)) == token


# ---------------------------------------------------------------------------------------------
# Key exchange
# ---------------------------------------------------------------------------------------------


def exchange(host: KeyExchange, joiner: KeyExchange) -> None:
    """SPAKE2 both ways, in the order of a real join: the joiner speaks first."""
    joiner_msg = joiner.start()
    host_msg = host.start()
    host.finish(joiner_msg)
    joiner.finish(host_msg)


def confirm(host: KeyExchange, joiner: KeyExchange) -> None:
    joiner.verify(host.confirmation())
    host.verify(joiner.confirmation())


def pair(
    session: str = SESSION, peer: str = PEER, role: Role = "rw", secret: str = SECRET
) -> tuple[KeyExchange, KeyExchange]:
    """A host and a joiner of one attempt, exchanged and confirmed."""
    host = KeyExchange("host", session, peer, role, secret)
    joiner = KeyExchange("joiner", session, peer, role, secret)
    exchange(host, joiner)
    confirm(host, joiner)
    return host, joiner


def relayed(data: dict[str, Any]) -> dict[str, Any]:
    """`data` as the other side receives it: JSON inside a `signal` message from the server."""
    return parse_server_message(server_message("signal", **{"from": "host", "data": data}))["data"]


def tampered(sealed: dict[str, Any]) -> dict[str, Any]:
    cipher = bytearray(base64.b64decode(sealed["c"]))
    cipher[0] ^= 0x01
    return {**sealed, "c": base64.b64encode(bytes(cipher)).decode()}


def test_start_messages_are_pake_payloads_and_only_the_joiner_claims_a_role() -> None:
    host = KeyExchange("host", SESSION, PEER, "view", SECRET)
    joiner = KeyExchange("joiner", SESSION, PEER, "view", SECRET)
    joiner_msg = parse_payload(joiner.start())
    host_msg = parse_payload(host.start())
    assert joiner_msg["k"] == host_msg["k"] == "pake"
    assert joiner_msg["role"] == "view"
    assert "role" not in host_msg
    assert joiner_msg["m"] != host_msg["m"]


@pytest.mark.parametrize("role", ["rw", "view"])
def test_host_and_joiner_with_the_same_token_confirm_each_other(role: Role) -> None:
    host = KeyExchange("host", SESSION, PEER, role, SECRET)
    joiner = KeyExchange("joiner", SESSION, PEER, role, SECRET)
    exchange(host, joiner)
    assert not host.confirmed and not joiner.confirmed
    joiner.verify(relayed(host.confirmation()))
    host.verify(relayed(joiner.confirmation()))
    assert host.confirmed and joiner.confirmed


def test_confirmations_differ_by_side() -> None:
    host, joiner = pair()
    assert host.confirmation() != joiner.confirmation()


def test_sealed_messages_open_in_both_directions() -> None:
    host, joiner = pair()
    assert joiner.open(relayed(host.seal(OFFER))) == OFFER
    assert host.open(relayed(joiner.seal(ANSWER))) == ANSWER
    assert joiner.open(relayed(host.seal(CANDIDATE))) == CANDIDATE
    assert host.open(relayed(joiner.seal(CANDIDATE))) == CANDIDATE
    assert joiner.open(relayed(host.seal({"t": "candidate", "candidate": ""}))) == {
        "t": "candidate",
        "candidate": "",
    }


def test_sealed_messages_are_numbered_from_zero_and_hide_the_plaintext() -> None:
    host, joiner = pair()
    first, second = host.seal(OFFER), host.seal(CANDIDATE)
    assert (first["k"], first["n"], second["n"]) == ("sealed", 0, 1)
    assert "v=0" not in json.dumps(first)
    assert "candidate:1" not in json.dumps(second)
    assert joiner.open(first) == OFFER
    assert joiner.open(second) == CANDIDATE


def test_the_same_message_seals_differently_each_time() -> None:
    host, _ = pair()
    assert host.seal(OFFER)["c"] != host.seal(OFFER)["c"]


@pytest.mark.parametrize("role", ["rw", "view"])
def test_different_secret_fails_verification_on_both_sides(role: Role) -> None:
    host = KeyExchange("host", SESSION, PEER, role, SECRET)
    joiner = KeyExchange("joiner", SESSION, PEER, role, "xyz788")
    exchange(host, joiner)
    with pytest.raises(WrongToken):
        joiner.verify(host.confirmation())
    with pytest.raises(WrongToken):
        host.verify(joiner.confirmation())
    assert not host.confirmed and not joiner.confirmed


def test_view_token_cannot_pass_for_a_read_write_one_with_the_same_secret() -> None:
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    joiner = KeyExchange("joiner", SESSION, PEER, "view", SECRET)
    exchange(host, joiner)
    with pytest.raises(WrongToken):
        host.verify(joiner.confirmation())
    with pytest.raises(WrongToken):
        joiner.verify(host.confirmation())


@pytest.mark.parametrize(
    ("host_ids", "joiner_ids"),
    [
        pytest.param((SESSION, "p1"), (SESSION, "p2"), id="peer"),
        pytest.param(("abc234", PEER), ("abc235", PEER), id="session"),
    ],
)
def test_different_peer_or_session_fails_verification(
    host_ids: tuple[str, str], joiner_ids: tuple[str, str]
) -> None:
    host = KeyExchange("host", *host_ids, "rw", SECRET)
    joiner = KeyExchange("joiner", *joiner_ids, "rw", SECRET)
    exchange(host, joiner)
    with pytest.raises(WrongToken):
        host.verify(joiner.confirmation())
    with pytest.raises(WrongToken):
        joiner.verify(host.confirmation())


def test_failed_verification_leaves_sealing_disabled() -> None:
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    joiner = KeyExchange("joiner", SESSION, PEER, "rw", "wrong0")
    exchange(host, joiner)
    with pytest.raises(WrongToken):
        host.verify(joiner.confirmation())
    with pytest.raises(SecurityError):
        host.seal(OFFER)


def test_tampered_ciphertext_is_refused() -> None:
    host, joiner = pair()
    with pytest.raises(SecurityError):
        joiner.open(tampered(host.seal(OFFER)))


def test_changed_sequence_number_is_refused() -> None:
    host, joiner = pair()
    sealed = host.seal(OFFER)
    with pytest.raises(SecurityError):
        joiner.open({**sealed, "n": sealed["n"] + 1})


def test_truncated_ciphertext_is_refused() -> None:
    host, joiner = pair()
    sealed = host.seal(OFFER)
    short = base64.b64encode(base64.b64decode(sealed["c"])[:-1]).decode()
    with pytest.raises(SecurityError):
        joiner.open({**sealed, "c": short})


def test_replayed_sealed_message_is_refused() -> None:
    host, joiner = pair()
    sealed = host.seal(OFFER)
    assert joiner.open(sealed) == OFFER
    with pytest.raises(SecurityError, match="replayed"):
        joiner.open(sealed)


def test_reordered_sealed_messages_are_refused() -> None:
    host, joiner = pair()
    first, second = host.seal(OFFER), host.seal(CANDIDATE)
    assert joiner.open(second) == CANDIDATE
    with pytest.raises(SecurityError):
        joiner.open(first)


def test_a_failed_open_does_not_advance_the_sequence() -> None:
    host, joiner = pair()
    sealed = host.seal(OFFER)
    with pytest.raises(SecurityError):
        joiner.open(tampered(sealed))
    assert joiner.open(sealed) == OFFER


@pytest.mark.parametrize("side", ["host", "joiner"])
def test_a_side_cannot_open_its_own_sealed_message(side: str) -> None:
    host, joiner = pair()
    me = host if side == "host" else joiner
    with pytest.raises(SecurityError):
        me.open(me.seal(OFFER))


def test_seal_before_the_exchange_is_refused() -> None:
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    with pytest.raises(SecurityError):
        host.seal(OFFER)


def test_seal_before_confirmation_is_refused() -> None:
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    joiner = KeyExchange("joiner", SESSION, PEER, "rw", SECRET)
    exchange(host, joiner)
    with pytest.raises(SecurityError):
        host.seal(OFFER)
    with pytest.raises(SecurityError):
        joiner.seal(ANSWER)


def test_a_joiner_may_start_before_the_server_names_it() -> None:
    joiner = KeyExchange("joiner", SESSION, "", "rw", SECRET)
    ours = joiner.start()  # sent with the join, before the server said who we are
    joiner.introduced(PEER)
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    theirs = host.start()
    host.finish(ours)
    joiner.finish(theirs)
    confirm(host, joiner)  # the same key as a joiner that knew its peer id from the start
    assert joiner.open(host.seal(OFFER)) == OFFER


def test_a_joiner_started_early_is_bound_to_the_peer_id_it_is_given() -> None:
    joiner = KeyExchange("joiner", SESSION, "", "rw", SECRET)
    ours = joiner.start()
    joiner.introduced("0ther9ee")  # the server named us one thing and told the host another
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    theirs = host.start()
    host.finish(ours)
    joiner.finish(theirs)
    with pytest.raises(WrongToken):
        joiner.verify(host.confirmation())


def test_a_peer_id_is_learnt_once_and_needed_for_the_key() -> None:
    joiner = KeyExchange("joiner", SESSION, "", "rw", SECRET)
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    joiner.start()
    with pytest.raises(ProtocolError):
        joiner.finish(host.start())
    joiner.introduced(PEER)
    with pytest.raises(ProtocolError):
        joiner.introduced(PEER)
    with pytest.raises(ProtocolError):
        host.introduced(PEER)


def test_an_early_offer_is_sealed_unconfirmed_and_opened_only_once_confirmed() -> None:
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    joiner = KeyExchange("joiner", SESSION, PEER, "rw", SECRET)
    exchange(host, joiner)
    early = host.seal(OFFER, unconfirmed=True)  # the host's offer, ahead of the confirmations
    with pytest.raises(SecurityError):
        joiner.open(early)  # opening still waits for the key to be confirmed
    confirm(host, joiner)
    assert joiner.open(early) == OFFER


def test_an_early_offer_to_a_wrong_token_cannot_be_opened() -> None:
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    guesser = KeyExchange("joiner", SESSION, PEER, "rw", "wrong0")
    exchange(host, guesser)
    early = host.seal(OFFER, unconfirmed=True)
    with pytest.raises(WrongToken):
        guesser.verify(host.confirmation())
    guesser.confirmed = True  # even a guesser that ignores the failed confirmation
    with pytest.raises(SecurityError):
        guesser.open(early)


def test_unconfirmed_sealing_still_needs_the_exchange() -> None:
    with pytest.raises(SecurityError):
        KeyExchange("host", SESSION, PEER, "rw", SECRET).seal(OFFER, unconfirmed=True)


def test_open_before_confirmation_is_refused() -> None:
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    joiner = KeyExchange("joiner", SESSION, PEER, "rw", SECRET)
    exchange(host, joiner)
    joiner.verify(host.confirmation())  # the joiner is confirmed, the host not yet
    sealed = joiner.seal(ANSWER)
    with pytest.raises(SecurityError):
        host.open(sealed)


@pytest.mark.parametrize(
    ("session", "peer"),
    [
        pytest.param(SESSION, "p2", id="other-peer"),
        pytest.param("abc235", PEER, id="other-session"),
        pytest.param(SESSION, PEER, id="same-ids-new-attempt"),
    ],
)
def test_sealed_message_of_one_attempt_does_not_open_in_another(session: str, peer: str) -> None:
    host_a, joiner_a = pair()
    host_b, joiner_b = pair(session=session, peer=peer)
    with pytest.raises(SecurityError):
        host_b.open(joiner_a.seal(ANSWER))
    with pytest.raises(SecurityError):
        joiner_b.open(host_a.seal(OFFER))


def test_confirmation_of_one_attempt_does_not_verify_another() -> None:
    host_a, joiner_a = pair()
    host_b = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    joiner_b = KeyExchange("joiner", SESSION, PEER, "rw", SECRET)
    exchange(host_b, joiner_b)
    with pytest.raises(WrongToken):
        host_b.verify(joiner_a.confirmation())
    with pytest.raises(WrongToken):
        joiner_b.verify(host_a.confirmation())


def test_finish_before_start_is_refused() -> None:
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    joiner = KeyExchange("joiner", SESSION, PEER, "rw", SECRET)
    with pytest.raises(ProtocolError):
        host.finish(joiner.start())


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param({"k": "confirm", "mac": "bWFj"}, ProtocolError, id="not-pake"),
        pytest.param({"k": "pake", "m": "not base64!"}, ProtocolError, id="bad-base64"),
        pytest.param({"k": "pake"}, ProtocolError, id="no-message"),
        pytest.param({"k": "pake", "m": "AAAA"}, SecurityError, id="short-message"),
        pytest.param({"k": "pake", "m": base64.b64encode(b"\xff" * 33).decode()}, SecurityError),
    ],
)
def test_finish_refuses_malformed_key_exchange_messages(
    data: dict[str, Any], error: type[Exception]
) -> None:
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    host.start()
    with pytest.raises(error):
        host.finish(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"k": "sealed", "n": 0, "c": "AAAA"}, id="not-confirm"),
        pytest.param({"k": "confirm", "mac": "***"}, id="bad-base64"),
        pytest.param({"k": "confirm"}, id="no-mac"),
    ],
)
def test_verify_refuses_malformed_confirmations(data: dict[str, Any]) -> None:
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    joiner = KeyExchange("joiner", SESSION, PEER, "rw", SECRET)
    exchange(host, joiner)
    with pytest.raises(ProtocolError):
        host.verify(data)
    assert not host.confirmed


def test_verify_refuses_an_empty_mac() -> None:
    host = KeyExchange("host", SESSION, PEER, "rw", SECRET)
    joiner = KeyExchange("joiner", SESSION, PEER, "rw", SECRET)
    exchange(host, joiner)
    with pytest.raises(WrongToken):
        host.verify({"k": "confirm", "mac": ""})


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"k": "confirm", "mac": "bWFj"}, id="not-sealed"),
        pytest.param({"k": "sealed", "n": "0", "c": "AAAA"}, id="str-sequence"),
        pytest.param({"k": "sealed", "n": 0, "c": "***"}, id="bad-base64"),
    ],
)
def test_open_refuses_malformed_sealed_payloads(data: dict[str, Any]) -> None:
    _, joiner = pair()
    with pytest.raises(ProtocolError):
        joiner.open(data)


@pytest.mark.parametrize("n", [-1, 2**64])
def test_open_refuses_sequence_numbers_outside_the_nonce_space(n: int) -> None:
    _, joiner = pair()
    with pytest.raises(SecurityError):
        joiner.open({"k": "sealed", "n": n, "c": "AAAA"})


def test_opened_message_is_validated_after_decryption() -> None:
    host, joiner = pair()
    with pytest.raises(ProtocolError):
        joiner.open(host.seal({"t": "offer"}))  # authentic, but no sdp
