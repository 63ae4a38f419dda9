"""Storable text: the one place that knows what PostgreSQL's text and jsonb refuse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lqs.domain.text import (
    MAX_WHOLE_NUMBER_DIGITS,
    describe_error,
    first_unstorable,
    storable,
    unstorable_text,
    whole_number,
)


def test_first_unstorable_finds_nul_first_then_lone_surrogates() -> None:
    assert first_unstorable("Grüße, 東京 😀") is None
    assert first_unstorable("ab\x00c") == (2, "\x00")
    assert first_unstorable("é\ud800") == (1, "\ud800")
    assert first_unstorable("\udfff\x00") == (1, "\x00")
    assert unstorable_text("é\ud800") == "a lone surrogate (U+D800) at character 2"


@given(st.text(alphabet=st.characters(codec=None)))
def test_storable_text_always_encodes_and_has_no_nul(text: str) -> None:
    result = storable(text)
    assert first_unstorable(result) is None
    result.encode("utf-8")
    if first_unstorable(text) is None:
        assert result == text


def test_describe_error_is_one_storable_line() -> None:
    error = ValueError("bad \x00 value\ud800\nsecond line")
    assert describe_error(error) == "ValueError: bad \\x00 value\\ud800"
    assert len(describe_error(ValueError("x" * 2000))) == 500


@pytest.mark.parametrize(
    ("text", "number"),
    [("0", 0), ("7", 7), ("0050", 50), ("1000000000", 1_000_000_000), ("9" * 12, 10**12 - 1)],
)
def test_a_whole_number_is_ascii_digits(text: str, number: int) -> None:
    assert whole_number(text) == number


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\u00b2",  # SUPERSCRIPT TWO: str.isdigit() says yes, int() refuses it
        "\u0661",  # ARABIC-INDIC DIGIT ONE: int() reads it as 1
        "\uff15",  # FULLWIDTH DIGIT FIVE
        "9" * 5000,  # int() refuses more than 4,300 digits
        "9" * (MAX_WHOLE_NUMBER_DIGITS + 1),
        "-1",
        "+1",
        " 1",
        "1\n",
        "1_000",
        "1.0",
        "0x10",
    ],
)
def test_anything_else_is_no_whole_number(text: str) -> None:
    assert whole_number(text) is None


@given(st.text(max_size=20))
def test_whole_number_never_raises_and_agrees_with_int_on_what_it_reads(text: str) -> None:
    number = whole_number(text)
    assert number is None or (text.isascii() and number == int(text))
