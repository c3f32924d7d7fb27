from __future__ import annotations

import pytest

from liebian.kit.errors import Invalid
from liebian.risk.normalize import (
    disposable_domains,
    is_disposable_email,
    normalize_email,
    normalize_phone,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John.Doe@Gmail.com", "johndoe@gmail.com"),
        ("j.o.h.n.d.o.e+promo@gmail.com", "johndoe@gmail.com"),
        ("johndoe+a+b@googlemail.com", "johndoe@gmail.com"),
        ("  JOHNDOE@GMAIL.COM  ", "johndoe@gmail.com"),
        ("jane.doe+shop@outlook.com", "jane.doe@outlook.com"),
        ("jane.doe+x@icloud.com", "jane.doe@icloud.com"),
        ("jane.doe+x@proton.me", "jane.doe@proton.me"),
        # Providers without plus addressing keep the whole local part (dots too).
        ("zhang.san+1@qq.com", "zhang.san+1@qq.com"),
        ("Li.Si@163.COM", "li.si@163.com"),
        ("a-b@yahoo.com", "a-b@yahoo.com"),
    ],
)
def test_normalize_email(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


def test_gmail_variants_collapse_to_one_mailbox() -> None:
    variants = [
        "zhangwei@gmail.com",
        "zhang.wei@gmail.com",
        "Z.H.A.N.G.W.E.I@GMAIL.COM",
        "zhangwei+liebian@gmail.com",
        "zhang.wei+1+2@googlemail.com",
    ]
    assert {normalize_email(v) for v in variants} == {"zhangwei@gmail.com"}


def test_different_gmail_mailboxes_stay_different() -> None:
    assert normalize_email("zhangwei1@gmail.com") != normalize_email("zhangwei@gmail.com")


@pytest.mark.parametrize(
    "raw", ["", "no-at-sign", "a@b", "a@@b.com", "a b@c.com", "+tag@gmail.com"]
)
def test_normalize_email_rejects_garbage(raw: str) -> None:
    with pytest.raises(Invalid) as err:
        normalize_email(raw)
    assert err.value.status == 422
    assert err.value.details == {"field": "email"}


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138 0013 8000",
        "+86-13800138000",
        "0086 13800138000",
        "008613800138000",
        "8613800138000",
        "(+86) 138.0013.8000",
        "＋８６ １３８００１３８０００",  # full-width from a Chinese IME
    ],
)
def test_chinese_mobile_variants(raw: str) -> None:
    assert normalize_phone(raw) == "13800138000"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (415) 555-2671", "+14155552671"),
        ("001 415 555 2671", "+14155552671"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+852 6123 4567", "+85261234567"),
        ("010-8888 6666", "01088886666"),  # Beijing landline, national format
    ],
)
def test_other_phones(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["", "abc", "138001380OO", "123", "+1234567890123456", "1-2"])
def test_normalize_phone_rejects_garbage(raw: str) -> None:
    with pytest.raises(Invalid):
        normalize_phone(raw)


def test_disposable_list_is_shipped_and_sane() -> None:
    domains = disposable_domains()
    assert len(domains) >= 100
    assert all("." in d and d == d.lower() and " " not in d for d in domains)
    # Real mailbox providers must never be on it.
    for real in [
        "gmail.com",
        "qq.com",
        "163.com",
        "126.com",
        "outlook.com",
        "icloud.com",
        "foxmail.com",
    ]:
        assert real not in domains


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mailinator.com", True),
        ("MAILINATOR.COM", True),
        ("user@yopmail.com", True),
        ("abc.mailinator.com", True),  # random subdomains count
        ("guerrillamail.com.", True),
        ("gmail.com", False),
        ("qq.com", False),
        ("notmailinator.com.cn", False),
        ("com", False),
        ("user@163.com", False),
    ],
)
def test_is_disposable_email(value: str, expected: bool) -> None:
    assert is_disposable_email(value) is expected
