"""Join links (beach_cli/invite.py): what `beach host` prints and `beach join LINK` reads."""

from __future__ import annotations

import pytest

from beach_cli.invite import BadLink, is_link, join_link, parse_link

TOKEN = "k7m2qx-h4tz9p"


@pytest.mark.parametrize(
    ("server_url", "link", "back"),
    [
        ("ws://192.168.1.20:7777/ws", "http://192.168.1.20:7777/j/#", None),
        ("192.168.1.20:7777", "http://192.168.1.20:7777/j/#", "ws://192.168.1.20:7777/ws"),
        ("wss://beach.example.com/ws", "https://beach.example.com/j/#", None),
        ("wss://beach.example.com", "https://beach.example.com/j/#", "wss://beach.example.com/ws"),
        ("wss://example.com/beach/ws", "https://example.com/beach/j/#", None),
        ("ws://[fd00::1]:7777/ws", "http://[fd00::1]:7777/j/#", None),
    ],
)
def test_a_link_is_the_servers_page_with_the_token_in_the_fragment(
    server_url: str, link: str, back: str | None
) -> None:
    made = join_link(server_url, TOKEN)
    assert made == link + TOKEN
    assert is_link(made)
    assert parse_link(made) == (back or server_url, TOKEN)


def test_a_view_only_token_travels_the_same_way() -> None:
    made = join_link("ws://10.0.0.1:7777/ws", "k7m2qx-v-abcdef")
    assert made == "http://10.0.0.1:7777/j/#k7m2qx-v-abcdef"
    assert parse_link(made)[1] == "k7m2qx-v-abcdef"


def test_a_page_hosted_elsewhere_carries_the_server_in_the_fragment() -> None:
    made = join_link("wss://beach.example.com/ws", TOKEN, "https://pages.example.org/beach/")
    assert made == (
        "https://pages.example.org/beach/#" + TOKEN + "&server=wss%3A%2F%2Fbeach.example.com%2Fws"
    )
    # Nothing of the token or the server is in what the browser requests (the fragment).
    assert made.split("#")[0] == "https://pages.example.org/beach/"
    assert parse_link(made) == ("wss://beach.example.com/ws", TOKEN)


def test_a_bare_token_is_not_a_link() -> None:
    assert not is_link(TOKEN)
    # A URL is read as a link, and a URL that is not one says what a link looks like.
    assert is_link("ws://10.0.0.1:7777/ws") and is_link("http://10.0.0.1:7777/j/")


@pytest.mark.parametrize(
    "text",
    [
        "javascript:alert(1)#abc-def",
        "http://10.0.0.1:7777/j/",  # no fragment, no token
        "http://10.0.0.1:7777/other/#" + TOKEN,  # not the page
        "ftp://10.0.0.1/j/#" + TOKEN,
        "http:///j/#" + TOKEN,  # no host
        "http://10.0.0.1:7777/j/#" + TOKEN + "&server=file%3A%2F%2F%2Fetc%2Fpasswd",
        "http://" + "a" * 5000 + "/j/#" + TOKEN + "&server=" + "x" * 5000,
    ],
)
def test_a_bad_link_is_one_clear_error(text: str) -> None:
    with pytest.raises(BadLink) as info:
        parse_link(text)
    assert len(info.value.message) < 300  # one line, never the whole hostile text
