"""Durations as people write them (beach_cli/durations.py), and `beach host --size`'s values:
what they accept, and the hostile rest, refused in one line."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from beach_cli.cli import _Size, _sizes
from beach_cli.durations import (
    MAX_LENGTH,
    MAX_SECONDS,
    BadDuration,
    Duration,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2d", 172_800),
        ("1d2h3m4s", 93_784),
        ("90", 90),
        ("0.5", 0.5),
        ("1.5h", 5400),
        ("  10m\n", 600),  # what a shell variable or a config line may carry around it
        ("365d", MAX_SECONDS),
        ("007s", 7),
    ],
)
def test_durations_people_write(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-5s", "not a duration"),
        ("+5s", "not a duration"),
        ("-5", "not a duration"),
        ("0", "longer than 0"),
        ("0s", "longer than 0"),
        ("0h0m", "longer than 0"),
        ("0.0", "longer than 0"),
        ("10x", "not a duration"),
        ("10", None),  # (valid: a control for the list)
        ("1h30", "not a duration"),  # a bare number after a unit: minutes? seconds?
        ("h", "not a duration"),
        ("1h1h", "each unit once"),
        ("30m1h", "largest first"),
        ("1e3", "not a duration"),
        ("inf", "not a duration"),
        ("nan", "not a duration"),
        ("1..5s", "not a duration"),
        ("1.s", "not a duration"),
        (".5s", "not a duration"),
        ("10 m", "not a duration"),
        ("1h 30m", "not a duration"),
        ("10M", "not a duration"),
        ("\u0661\u0660m", "not a duration"),  # Arabic-Indic digits: int() would take them
        ("\uff11\uff10", "not a duration"),  # fullwidth digits
        ("1\u00b2s", "not a duration"),  # superscript two
        ("\u0967h", "not a duration"),  # Devanagari one
        ("10m\x00", "not a duration"),
        ("99999999999999h", "longer than 365d"),
        ("365d1s", "longer than 365d"),
        ("9" * 30, "longer than 365d"),
        ("9" * (MAX_LENGTH + 1), "too long"),
        ("1" * 5000 + "s", "too long"),  # past int()'s digit limit: refused before it
    ],
)
def test_hostile_durations_are_refused_with_a_reason(text: str, says: str | None) -> None:
    if says is None:
        assert parse_duration(text) > 0
        return
    with pytest.raises(BadDuration, match=says):
        parse_duration(text)


@given(st.text(max_size=40))
def test_any_text_is_a_duration_in_range_or_refused(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except BadDuration as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert 0 < seconds <= MAX_SECONDS


@given(st.integers(1, int(MAX_SECONDS)))
def test_formatted_durations_read_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_formatted_durations_are_short() -> None:
    assert format_duration(90) == "1m30s"
    assert format_duration(3600) == "1h"
    assert format_duration(5400) == "1h30m"
    assert format_duration(0.5) == "0.5s"
    assert format_duration(2.5) == "2.5s"


def _command(**kw: object) -> click.Command:
    @click.command()
    @click.option("--wait", type=Duration(), **kw)  # type: ignore[arg-type]
    @click.option("--size", type=_Size(), multiple=True, callback=_sizes)
    def command(wait: float | None, size: tuple) -> None:
        click.echo(f"{wait!r} {size!r}")

    return command


def test_the_click_type_gives_seconds() -> None:
    done = CliRunner().invoke(_command(), ["--wait", "1h30m"])
    assert done.exit_code == 0 and done.output == "5400.0 ('smallest', None)\n"


@pytest.mark.parametrize("value", ["10x", "", "-1", "0", "\u0661m", "1" * 100])
def test_a_bad_duration_is_one_line_and_exit_2(value: str) -> None:
    done = CliRunner().invoke(_command(), ["--wait", value])
    assert done.exit_code == 2
    lines = done.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("beach: Invalid value for '--wait': "), lines


@pytest.mark.parametrize(
    ("args", "value"),
    [
        ([], ("smallest", None)),
        (["--size", "host"], ("host", None)),
        (["--size", "HOST"], ("host", None)),
        (["--size", "120x40"], ("smallest", (120, 40))),
        (["--size", "1x1"], ("smallest", (1, 1))),
        (["--size", "10000x10000"], ("smallest", (10_000, 10_000))),
        (["--size", "100x30", "--size", "host"], ("host", (100, 30))),
        (["--size", "host", "--size", "80x24", "--size", "90x30"], ("host", (90, 30))),
    ],
)
def test_size_takes_a_mode_a_size_or_both(args: list[str], value: tuple) -> None:
    done = CliRunner().invoke(_command(), args)
    assert done.exit_code == 0, done.output
    assert done.output == f"None {value!r}\n"


@pytest.mark.parametrize(
    "value", ["0x10", "10x0", "10001x10", "120x", "x40", "120X40x", "biggest", "\u0661\u0662x40"]
)
def test_a_bad_size_is_one_line_and_exit_2(value: str) -> None:
    done = CliRunner().invoke(_command(), ["--size", value])
    assert done.exit_code == 2
    lines = done.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("beach: Invalid value for '--size': "), lines
