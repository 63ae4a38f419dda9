"""Classifying an address's domain as free-mail, disposable or corporate."""

from __future__ import annotations

import pytest
from disposable_email_domains import blocklist
from hypothesis import given
from hypothesis import strategies as st

from lqs.domain.email_domains import FREE_MAIL_DOMAINS, classify_email_domain

# A stable sample, so the property below does not depend on set iteration order.
_DISPOSABLE_SAMPLE = sorted(blocklist)[::50]


@pytest.mark.parametrize(
    "address",
    [
        "ann@gmail.com", "ann@googlemail.com", "ann@outlook.com", "ann@hotmail.com",
        "ann@live.com", "ann@msn.com", "ann@yahoo.com", "ann@aol.com", "ann@icloud.com",
        "ann@me.com", "ann@mac.com", "ann@proton.me", "ann@protonmail.com", "ann@gmx.net",
        "ann@web.de", "ann@yandex.ru", "ann@mail.ru", "ann@zoho.com", "ann@qq.com",
        "ann@163.com", "ann@126.com",
    ],
)  # fmt: skip
def test_webmail_providers_are_free(address: str) -> None:
    assert classify_email_domain(address) == "free"


@pytest.mark.parametrize(
    "domain",
    ["yahoo.co.uk", "yahoo.fr", "yahoo.com.br", "hotmail.co.uk", "hotmail.it", "gmx.at",
     "gmx.de", "yandex.kz", "outlook.de", "live.fr", "aol.de"],
)  # fmt: skip
def test_country_variants_of_webmail_brands_are_free(domain: str) -> None:
    assert classify_email_domain(domain) == "free"


def test_every_listed_free_domain_is_classified_free() -> None:
    # Fails if an upgrade of the disposable list starts claiming a webmail provider.
    assert {d for d in FREE_MAIL_DOMAINS if classify_email_domain(d) != "free"} == set()


@pytest.mark.parametrize(
    "address", ["ann@mailinator.com", "ann@guerrillamail.com", "ann@10minutemail.com"]
)
def test_throwaway_inbox_services_are_disposable(address: str) -> None:
    assert classify_email_domain(address) == "disposable"


@given(
    domain=st.sampled_from(_DISPOSABLE_SAMPLE), sub=st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True)
)
def test_listed_disposable_domains_and_their_subdomains_are_disposable(
    domain: str, sub: str
) -> None:
    assert classify_email_domain(f"x@{domain}") == "disposable"
    assert classify_email_domain(f"x@{sub}.{domain}") == "disposable"


def test_disposable_wins_over_a_webmail_brand() -> None:
    # outlook.com.pl looks like Microsoft webmail; outlook.edu.pl is on the disposable list.
    assert classify_email_domain("ann@outlook.com.pl") == "free"
    assert classify_email_domain("ann@outlook.edu.pl") == "disposable"


@pytest.mark.parametrize(
    "address", ["ann@acme.com", "ann@mail.acme.co.uk", "ann@notgmail.com", "ann@yahoo.acme.com"]
)
def test_company_domains_and_lookalikes_are_corporate(address: str) -> None:
    assert classify_email_domain(address) == "corporate"


@pytest.mark.parametrize(
    "text", ["ANN@GMAIL.COM", "  ann@Gmail.com  ", "gmail.com", "GMAIL.COM.", "a@b@gmail.com"]
)
def test_case_spaces_a_trailing_dot_and_bare_domains_are_accepted(text: str) -> None:
    assert classify_email_domain(text) == "free"


def test_inbox_subdomain_of_a_disposable_domain_is_disposable() -> None:
    assert classify_email_domain("Ann@Inbox.Mailinator.COM") == "disposable"


@pytest.mark.parametrize("text", ["", "   ", "ann@", "ann@ ", "ann@."])
def test_text_without_a_domain_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="no domain"):
        classify_email_domain(text)
