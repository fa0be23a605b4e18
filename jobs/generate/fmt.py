"""Small, fast text formatters shared by the day generators (hot loops: keep them cheap)."""

from __future__ import annotations

import datetime as dt
from functools import cache

import numpy as np

BIG = 10**6  # "never" for day indexes


@cache
def times_of_day() -> tuple[str, ...]:
    """'HH:MM:SS' for every second of a day: a table lookup beats formatting per row."""
    return tuple(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400))


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def money_list(cents: np.ndarray) -> list[str]:
    return [f"{c // 100}.{c % 100:02d}" for c in cents.tolist()]


# Phone spellings seen at tills and in CRM exports, with how often each shows up.
PHONE_STYLE_WEIGHTS = np.array([0.58, 0.10, 0.10, 0.08, 0.04, 0.04, 0.03, 0.03])


def phone_text(number: int, style: int) -> str:
    """One spelling of an 11-digit mainland mobile number (all mean the same number)."""
    s = str(number)
    if style == 0:
        return s
    if style == 1:
        return f"+86 {s[:3]} {s[3:7]} {s[7:]}"
    if style == 2:
        return f"{s[:3]}-{s[3:7]}-{s[7:]}"
    if style == 3:
        return f"86-{s}"
    if style == 4:
        return f"0086{s}"
    if style == 5:
        return f"+86{s}"
    if style == 6:
        return f"0086 {s[:3]} {s[3:7]} {s[7:]}"
    return f"{s[:3]} {s[3:7]} {s[7:]}"


def canonical_phone(text: str) -> str | None:
    """The 11-digit number behind any spelling (used by tests and truth checks)."""
    digits = "".join(ch for ch in text if ch.isdigit())
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) == 11 and digits.startswith("1"):
        return digits
    return None


def card_text(card: int) -> str:
    return f"VIP{card:08d}"


def crm_id_text(num: int) -> str:
    return str(num)


def user_id_text(num: int) -> str:
    return f"u{num:09d}"


def uuid_text(hi: int, lo: int) -> str:
    h = f"{hi:016x}{lo:016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def scramble(values: np.ndarray | int, mult: int, add: int, modulus: int) -> np.ndarray | int:
    """A bijection of [0, modulus) (mult coprime to modulus): unique ids that look random."""
    if isinstance(values, np.ndarray):
        return (values.astype(np.int64) * mult + add) % modulus
    return (values * mult + add) % modulus


def ymd(day: dt.date) -> str:
    return day.strftime("%Y%m%d")
