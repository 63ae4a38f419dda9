"""Who a subject access request is about: an email address and/or an E.164 phone number,
normalised as LQS stores them; anything else refused naming the field."""

from __future__ import annotations

import pytest

from lqs.domain.subject_access import Subject, SubjectQueryError, subject_of


def test_the_email_is_normalised_and_lower_cased() -> None:
    assert subject_of(" Ada@Example.COM ", None) == Subject("ada@example.com", None)


def test_a_phone_alone_or_with_the_email() -> None:
    assert subject_of(None, "+1 415 555 0100") == Subject(None, "+14155550100")
    both = subject_of("ada@example.com", "+14155550100")
    assert both.addresses == ["ada@example.com", "+14155550100"]


@pytest.mark.parametrize(
    ("email", "phone", "field"),
    [
        (None, None, "email"),
        ("  ", "", "email"),
        ("not an address", None, "email"),
        (None, "4155550100", "phone"),
        (None, "+1", "phone"),
        ("ada@example.com", "+1 000", "phone"),
    ],
)
def test_bad_input_names_the_field(email: str | None, phone: str | None, field: str) -> None:
    with pytest.raises(SubjectQueryError) as raised:
        subject_of(email, phone)
    assert raised.value.error.field == field
