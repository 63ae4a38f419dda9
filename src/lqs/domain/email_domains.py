"""Is an address free-mail, disposable, or a company's own? (No DNS: lists only.)"""

from __future__ import annotations

from typing import Literal

from disposable_email_domains import blocklist as _DISPOSABLE

EmailDomainType = Literal["free", "disposable", "corporate"]

FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de",
        "yahoo.es", "yahoo.it", "yahoo.co.jp", "yahoo.com.br", "ymail.com", "rocketmail.com",
        "outlook.com", "outlook.de", "outlook.fr", "hotmail.com", "hotmail.co.uk",
        "hotmail.fr", "hotmail.de", "hotmail.it", "hotmail.es", "live.com", "live.co.uk",
        "live.fr", "live.de", "msn.com", "passport.com", "aol.com", "aim.com", "icloud.com",
        "me.com", "mac.com", "proton.me", "protonmail.com", "protonmail.ch", "pm.me",
        "tutanota.com", "tuta.io", "gmx.com", "gmx.net", "gmx.de", "gmx.at", "gmx.ch",
        "web.de", "t-online.de", "freenet.de", "yandex.com", "yandex.ru", "ya.ru", "mail.ru",
        "bk.ru", "inbox.ru", "list.ru", "rambler.ru", "zoho.com", "zohomail.com", "qq.com",
        "163.com", "126.com", "sina.com", "naver.com", "daum.net", "hanmail.net",
        "libero.it", "virgilio.it", "orange.fr", "wanadoo.fr", "free.fr", "laposte.net",
        "sfr.fr", "seznam.cz", "wp.pl", "o2.pl", "interia.pl", "onet.pl", "rediffmail.com",
        "fastmail.com", "fastmail.fm", "hushmail.com", "mail.com", "email.com", "usa.com",
        "comcast.net", "verizon.net", "att.net", "sbcglobal.net", "bellsouth.net",
        "cox.net", "btinternet.com", "sky.com", "virginmedia.com", "bigpond.com",
        "shaw.ca", "rogers.com", "sympatico.ca", "uol.com.br", "bol.com.br", "terra.com.br",
    }
)  # fmt: skip


def _domain(email_or_domain: str) -> str:
    return email_or_domain.rpartition("@")[2].strip().lower().rstrip(".")


def _is_disposable(domain: str) -> bool:
    labels = domain.split(".")
    # A subdomain of a disposable domain is disposable too (x.mailinator.com).
    return any(".".join(labels[i:]) in _DISPOSABLE for i in range(len(labels) - 1))


def classify_email_domain(email_or_domain: str) -> EmailDomainType:
    """``disposable`` (throwaway inbox services), ``free`` (webmail), else ``corporate``."""
    domain = _domain(email_or_domain)
    if _is_disposable(domain):
        return "disposable"
    if domain in FREE_MAIL_DOMAINS:
        return "free"
    return "corporate"
