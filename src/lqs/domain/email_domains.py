"""Is an address free-mail, disposable, or a company's own? (Lists only: no DNS.)

Disposable domains come from the ``disposable-email-domains`` package; free-mail
domains from the list below, plus the country variants of the big webmail brands
(``yahoo.co.uk``, ``hotmail.fr``, ``gmx.at`` …).
"""

from __future__ import annotations

import re
from typing import Literal

from disposable_email_domains import blocklist as _DISPOSABLE_DOMAINS

EmailDomainType = Literal["free", "disposable", "corporate"]
EMAIL_DOMAIN_TYPES: tuple[EmailDomainType, ...] = ("free", "disposable", "corporate")

FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    {
        # Google, Microsoft, Yahoo, Apple, AOL
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
        "passport.com", "windowslive.com", "yahoo.com", "ymail.com", "rocketmail.com",
        "icloud.com", "me.com", "mac.com", "aol.com", "aim.com",
        # Privacy-minded and independent providers
        "proton.me", "protonmail.com", "protonmail.ch", "pm.me", "tutanota.com",
        "tutanota.de", "tuta.io", "tuta.com", "fastmail.com", "fastmail.fm", "hushmail.com",
        "mailfence.com", "posteo.de", "posteo.net", "mailbox.org", "runbox.com",
        "zoho.com", "zohomail.com", "mail.com", "email.com", "usa.com", "inbox.com",
        # Germany, Austria, Switzerland
        "gmx.com", "gmx.net", "web.de", "t-online.de", "freenet.de", "arcor.de",
        "bluewin.ch", "gmx.ch",
        # Russia and neighbours
        "yandex.com", "yandex.ru", "ya.ru", "mail.ru", "bk.ru", "inbox.ru", "list.ru",
        "rambler.ru", "ukr.net",
        # China, Korea, Japan, India
        "qq.com", "163.com", "126.com", "yeah.net", "sina.com", "sina.cn", "sohu.com",
        "aliyun.com", "naver.com", "daum.net", "hanmail.net", "nate.com",
        "rediffmail.com",
        # France, Italy, Spain, Netherlands, Belgium
        "orange.fr", "wanadoo.fr", "free.fr", "laposte.net", "sfr.fr", "neuf.fr",
        "libero.it", "virgilio.it", "alice.it", "tiscali.it", "telefonica.net",
        "ziggo.nl", "kpnmail.nl", "hetnet.nl", "telenet.be", "skynet.be",
        # Central and northern Europe
        "seznam.cz", "centrum.cz", "wp.pl", "o2.pl", "interia.pl", "onet.pl",
        "op.pl", "tlen.pl",
        # UK, North America, Australia, Latin America
        "btinternet.com", "sky.com", "virginmedia.com", "ntlworld.com", "talktalk.net",
        "comcast.net", "verizon.net", "att.net", "sbcglobal.net", "bellsouth.net",
        "cox.net", "charter.net", "earthlink.net", "juno.com", "shaw.ca", "rogers.com",
        "sympatico.ca", "bigpond.com", "optusnet.com.au", "uol.com.br", "bol.com.br",
        "terra.com.br", "ig.com.br", "prodigy.net.mx",
    }
)  # fmt: skip

# Brands whose webmail exists under many country domains: yahoo.co.uk, hotmail.fr, gmx.at.
_FREE_MAIL_BRANDS = frozenset({"yahoo", "hotmail", "outlook", "live", "gmx", "yandex", "aol"})
_COUNTRY_SUFFIX = re.compile(r"[a-z]{2,3}(\.[a-z]{2})?")


def _domain_of(email_or_domain: str) -> str:
    domain = email_or_domain.rpartition("@")[2].strip().lower().rstrip(".")
    if not domain:
        raise ValueError(f"no domain in {email_or_domain[:100]!r}")
    return domain


def _is_disposable(domain: str) -> bool:
    labels = domain.split(".")
    # A subdomain of a disposable domain is disposable too (inbox.mailinator.com); the
    # bare top-level label alone is never looked up.
    return any(".".join(labels[i:]) in _DISPOSABLE_DOMAINS for i in range(len(labels) - 1))


def _is_free(domain: str) -> bool:
    if domain in FREE_MAIL_DOMAINS:
        return True
    brand, _, suffix = domain.partition(".")
    return brand in _FREE_MAIL_BRANDS and _COUNTRY_SUFFIX.fullmatch(suffix) is not None


def classify_email_domain(email_or_domain: str) -> EmailDomainType:
    """Classify an address (``ann@acme.com``) or a bare domain (``acme.com``).

    Returns ``"disposable"`` for throwaway-inbox services and their subdomains,
    ``"free"`` for webmail providers, and ``"corporate"`` for everything else.
    Disposable wins over free; case and surrounding spaces are ignored.

    Raises:
        ValueError: the text has no domain (empty, or nothing after the ``@``).
    """
    domain = _domain_of(email_or_domain)
    if _is_disposable(domain):
        return "disposable"
    if _is_free(domain):
        return "free"
    return "corporate"
