"""Storable text: the one place that knows what PostgreSQL's text and jsonb refuse."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lqs.domain.text import describe_error, first_unstorable, storable, unstorable_text


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
