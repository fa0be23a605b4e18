"""One business day of CRM exports: ``crm/<date>/members_<YYYYMMDD>.csv``.

The first day is a full snapshot of every account registered by then; later days
carry only the accounts created or changed that day (phone change, profile/consent
change, closure). A row shows the account's state as of its ``updated_ts``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from jobs.generate import reference as ref
from jobs.generate.fmt import (
    PHONE_STYLE_WEIGHTS,
    card_text,
    crm_id_text,
    phone_text,
    times_of_day,
    user_id_text,
    ymd,
)
from jobs.generate.world import World

COLUMNS = (
    "crm_id",
    "member_card_no",
    "phone",
    "email",
    "id_card_no",
    "web_user_id",
    "name",
    "gender",
    "birth_date",
    "province",
    "city",
    "register_ts",
    "register_channel",
    "home_store_id",
    "opt_in_sms",
    "opt_in_email",
    "opt_in_push",
    "status",
    "updated_ts",
)
BAD_REASONS = (
    "crm_id_required",
    "register_ts_invalid",
    "updated_ts_invalid",
    "register_channel_invalid",
    "gender_invalid",
    "birth_date_invalid",
    "opt_in_invalid",
    "status_invalid",
    "wrong_field_count",
)
BAD_RATE = 0.005
CHUNK = 20_000  # rows rendered at a time
_OPT_SPELLINGS = (("Y", "N"), ("true", "false"), ("1", "0"), ("y", "n"), ("TRUE", "FALSE"))
_EPOCH = dt.date(1970, 1, 1)


def crm_file_name(day: dt.date) -> str:
    return f"members_{ymd(day)}.csv"


@lru_cache(maxsize=65536)
def epoch_day_iso(days: int) -> str:
    """'YYYY-MM-DD' of a day number (days since 1970-01-01); few distinct values, cached."""
    return (_EPOCH + dt.timedelta(days=days)).isoformat()


def id_card_number(w: World, person: int) -> str:
    """The person's 18-character resident ID (area, birth date, sequence, check)."""
    area = ref.CITIES[int(w.city[person])][2]
    birth = epoch_day_iso(int(w.birth[person])).replace("-", "")
    seq = int(w.idc_seq[person]) * 2 + (0 if w.gender[person] == 1 else 1)  # odd = male
    first17 = f"{area}{birth}{seq % 1000:03d}"
    check = ref.id_card_check_char(first17)
    if w.idc_bad[person]:
        check = ref.ID_CARD_CHECK[(ref.ID_CARD_CHECK.index(check) + 3) % 11]
    return first17 + check


def email_address(w: World, person: int) -> str | None:
    kind = int(w.email_kind[person])
    if kind < 0:
        return None
    if kind == 0:
        return f"{int(w.email_num[person])}@qq.com"
    rom_last, rom_first = ref.romanized_pools()
    return (
        f"{rom_first[int(w.email_rom2[person])]}.{rom_last[int(w.email_rom1[person])]}"
        f"{int(w.email_num[person])}@{ref.EMAIL_DOMAINS[int(w.email_dom[person])]}"
    )


def person_name(w: World, person: int) -> str:
    surnames, _, male, female = ref.name_pools()
    pool = female if w.gender[person] == 1 else male
    given = pool[int(w.given1[person])]
    if w.given2[person] >= 0:
        second = pool[int(w.given2[person])]
        if len(given) == 1 and len(second) == 1:  # 2-character given names are common
            given += second
    return surnames[int(w.surname[person])] + given


def birth_iso(w: World, person: int) -> str:
    return epoch_day_iso(int(w.birth[person]))


@dataclass
class CrmDay:
    file: str
    rows: int
    bad: list[tuple[str, str, int | None, str]]
    accounts: np.ndarray  # accounts with a valid row in this file


def _account_fields(
    w: World, a: int, upd_day: int, upd_sec: int, r: list[float], phone_style: int
) -> dict[str, str]:
    """The CRM row of account ``a`` as of (upd_day, upd_sec), spelled like real exports.

    ``r`` holds 12 uniform draws and ``phone_style`` a spelling, drawn vectorised by the caller.
    """
    tod = times_of_day()
    p = int(w.acct_owner[a])
    share = int(w.acct_share[a])
    primary = share == 0
    phone_num = 0
    if share in (0, 1):
        phone_num = int(w.phone2[p] if w.phone_day[p] <= upd_day else w.phone[p])
    phone = phone_text(phone_num, phone_style) if phone_num else ""
    email = ""
    if share in (0, 2):
        e = email_address(w, p)
        if e:
            if share == 2 or r[0] < 0.15:  # the duplicate was typed differently
                e = e.upper() if r[1] < 0.5 else e.capitalize()
            email = f" {e} " if (share == 2 and r[2] < 0.6) or r[2] < 0.05 else e
    idc = id_card_number(w, p) if (share in (0, 3) and w.idc_has[p]) else ""
    gender_style = r[4]
    g = int(w.gender[p])
    gender = "" if gender_style < 0.15 else (("M", "F") if gender_style < 0.55 else ("男", "女"))[g]
    if not primary and r[5] < 0.5:
        gender = ""
    birth_style = r[6]
    birth = birth_iso(w, p)
    if birth_style < 0.2 or (not primary and r[7] < 0.5):
        birth = ""
    elif birth_style < 0.55:
        birth = birth.replace("-", "")
    city_i = int(w.city[p])
    city_name, province, _, _ = ref.CITIES[city_i]
    city = city_name + ("市" if r[8] < 0.5 else "")
    if r[9] < 0.08:
        province = ""
    bits = int(w.opt_bits[p])
    if w.update_day[p] <= upd_day:
        bits ^= 0b011  # a consent change: SMS and e-mail flipped
    spell = _OPT_SPELLINGS[int(r[10] * len(_OPT_SPELLINGS))]
    opts = []
    for i in range(3):
        on = (bits >> i) & 1
        # An empty opt-in means no consent; exporters write that as "" or the "no" spelling.
        opts.append(spell[0] if on else ("" if r[11] < 0.3 else spell[1]))
    status = "closed" if primary and w.close_day[p] <= upd_day else "active"
    reg_day = int(w.acct_reg_day[a])
    start = w.start_epoch_day
    reg_ts = f"{epoch_day_iso(start + reg_day)} {tod[int(w.acct_reg_sec[a])]}"
    upd_ts = f"{epoch_day_iso(start + upd_day)} {tod[upd_sec]}"
    card = int(w.acct_card[a])
    fields = {
        "crm_id": crm_id_text(int(w.acct_num[a])),
        "member_card_no": card_text(card) if card else "",
        "phone": phone,
        "email": email,
        "id_card_no": idc,
        "web_user_id": user_id_text(int(w.user_num[p])) if primary and w.user_num[p] else "",
        "name": person_name(w, p),
        "gender": gender,
        "birth_date": birth,
        "province": province,
        "city": city,
        "register_ts": reg_ts,
        "register_channel": ref.REGISTER_CHANNELS[int(w.acct_channel[a])],
        "home_store_id": w.store_ids[int(w.acct_store[a])] if r[8] < 0.9 else "",
        "opt_in_sms": opts[0],
        "opt_in_email": opts[1],
        "opt_in_push": opts[2],
        "status": status,
        "updated_ts": upd_ts,
    }
    if not primary and w.extras.get("dirty_identity"):
        _dirty_fields(np.random.default_rng([w.seed, a, 0xD1]), fields)
    return fields


PLACEHOLDER_PHONE = "13800000000"


def _typo(rng: np.random.Generator, text: str, first: int) -> str:
    """One digit of ``text`` (at or after index ``first``) replaced by another digit, or
    two neighbours swapped."""
    digits = [i for i in range(first, len(text)) if text[i].isdigit()]
    if not digits:
        return text
    i = int(rng.choice(digits))
    if rng.random() < 0.5 and i + 1 < len(text) and text[i] != text[i + 1]:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    new = str((int(text[i]) + int(rng.integers(1, 10))) % 10)
    return text[:i] + new + text[i + 1 :]


def _swap_day_month(birth: str) -> str:
    """``yyyy-MM-dd`` / ``yyyyMMdd`` with day and month swapped (when still a date)."""
    digits = birth.replace("-", "")
    y, m, d = digits[:4], digits[4:6], digits[6:8]
    if int(d) > 12 or m == d:
        return birth
    return f"{y}-{d}-{m}" if "-" in birth else f"{y}{d}{m}"


def _dirty_fields(rng: np.random.Generator, f: dict[str, str]) -> None:
    """Typos of a duplicate registration (``--dirty-identity``), in place: a digit off or
    two swapped in the phone or ID card (the ID then fails its checksum), day and month
    swapped, a name character replaced or the given name first, missing fields, the
    placeholder phone."""
    r = rng.random(8)
    if f["phone"] and r[0] < 0.2:
        f["phone"] = _typo(rng, f["phone"], 3)
    elif r[0] > 0.97:
        f["phone"] = PLACEHOLDER_PHONE
    if f["id_card_no"] and r[1] < 0.25:
        f["id_card_no"] = _typo(rng, f["id_card_no"], 6)
    if f["birth_date"] and r[2] < 0.15:
        f["birth_date"] = _swap_day_month(f["birth_date"])
    name = f["name"]
    if len(name) >= 3 and r[3] < 0.15:
        f["name"] = name[0] + name[2] + name[1] + name[3:]  # a slip of the input method
    elif len(name) >= 2 and r[3] > 0.92:
        f["name"] = name[1:] + " " + name[0]  # given name first, surname last
    for column, p in (("city", 0.1), ("name", 0.05), ("email", 0.1)):
        if r[4 + ("city", "name", "email").index(column)] < p:
            f[column] = ""


def _break(rng: np.random.Generator, reason: str, f: dict[str, str]) -> list[str]:
    pick = int(rng.integers(0, 1000))
    if reason == "crm_id_required":
        f["crm_id"] = ""
    elif reason == "register_ts_invalid":
        f["register_ts"] = ("", "2026-13-45 25:61:00", "yesterday", f["register_ts"][:10])[pick % 4]
    elif reason == "updated_ts_invalid":
        f["updated_ts"] = ("", "2026-02-30 10:00:00", "now", f["updated_ts"].replace(" ", "T"))[
            pick % 4
        ]
    elif reason == "register_channel_invalid":
        f["register_channel"] = ("tmall", "douyin", "STORE", "门店")[pick % 4]
    elif reason == "gender_invalid":
        f["gender"] = ("male", "U", "未知", "f")[pick % 4]
    elif reason == "birth_date_invalid":
        f["birth_date"] = ("1990-02-30", "19901332", "30/02/1990", "1990年5月")[pick % 4]
    elif reason == "opt_in_invalid":
        f["opt_in_sms"] = ("yes", "是", "2", "no")[pick % 4]
    elif reason == "status_invalid":
        f["status"] = ("frozen", "deleted", "ACTIVE", "冻结")[pick % 4]
    elif reason == "wrong_field_count":
        return [f[c] for c in COLUMNS[: len(COLUMNS) - int(rng.integers(1, 6))]]
    else:  # pragma: no cover
        raise ValueError(reason)
    return [f[c] for c in COLUMNS]


def _csv_field(value: str) -> str:
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def generate_crm_day(w: World, d: int, out: Path) -> CrmDay:
    day = w.date(d)
    rng = np.random.default_rng([w.seed, d, 3])
    owner = w.acct_owner
    upd_day = np.full(len(owner), -1, dtype=np.int64)
    upd_sec = np.zeros(len(owner), dtype=np.int64)
    if d == 0:
        snap = np.flatnonzero(w.acct_reg_day <= 0)
        upd_day[snap] = w.acct_upd_day[snap]
        upd_sec[snap] = w.acct_upd_sec[snap]
    new = np.flatnonzero(w.acct_reg_day == d) if d > 0 else np.zeros(0, np.int64)
    upd_day[new] = d
    upd_sec[new] = np.minimum(w.acct_reg_sec[new] + rng.integers(0, 900, len(new)), 86399)
    if d > 0:
        # Changes of existing accounts (only the primary registration carries them).
        primary = w.acct_share == 0
        changed = (
            primary
            & (w.acct_reg_day < d)
            & ((w.phone_day[owner] == d) | (w.update_day[owner] == d) | (w.close_day[owner] == d))
        )
        ch = np.flatnonzero(changed)
        upd_day[ch] = d
        upd_sec[ch] = rng.integers(8 * 3600, 86400, len(ch))
    rows_a = np.flatnonzero(w.acct_reg_day <= 0) if d == 0 else np.flatnonzero(upd_day >= 0)
    n_valid = len(rows_a)

    # Bad rows: another version of a snapshot account with one field broken, placed before
    # valid row number ``at`` (0-based; n_valid = after the last one).
    # Every reason is planted within the first days (n_min a day, in turn). After that, a
    # day without changes exports no rows at all, bad ones included: a file of bad rows
    # only is a broken export, which the quality step rightly fails.
    n_min = -(-len(BAD_REASONS) // w.days)
    cycle_done = d * n_min >= len(BAD_REASONS)
    n_bad = 0 if n_valid == 0 and cycle_done else max(n_min, int(rng.binomial(n_valid, BAD_RATE)))
    pool = np.flatnonzero(w.acct_reg_day <= 0)
    inserts = []
    for k in range(n_bad):
        reason = BAD_REASONS[(d * n_min + k) % len(BAD_REASONS)]
        a = int(pool[int(rng.integers(0, len(pool)))])
        f = _account_fields(w, a, d, int(rng.integers(8 * 3600, 86400)), rng.random(12).tolist(), 0)
        fields = _break(rng, reason, f)
        at = int(rng.integers(0, n_valid + 1))
        inserts.append((at, k, ",".join(map(_csv_field, fields)), reason))
    inserts.sort()

    # Stream the rows in chunks: the first day's snapshot holds every member.
    folder = out / "crm" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    rel = f"crm/{day.isoformat()}/{crm_file_name(day)}"
    bad: list[tuple[str, str, int | None, str]] = []
    line_no = 1
    j = 0
    with (folder / crm_file_name(day)).open("wb") as fh:
        fh.write((",".join(COLUMNS) + "\n").encode("utf-8"))
        for c0 in range(0, n_valid + 1, CHUNK):
            chunk = rows_a[c0 : c0 + CHUNK]
            r_all = rng.random((len(chunk), 12)).tolist()
            styles = rng.choice(len(PHONE_STYLE_WEIGHTS), len(chunk), p=PHONE_STYLE_WEIGHTS)
            styles_l = styles.tolist()
            ud, us = upd_day[chunk].tolist(), upd_sec[chunk].tolist()
            lines = []
            for i, a in enumerate(chunk.tolist()):
                while j < len(inserts) and inserts[j][0] == c0 + i:
                    line_no += 1
                    lines.append(inserts[j][2])
                    bad.append(("crm", rel, line_no, inserts[j][3]))
                    j += 1
                f = _account_fields(w, a, ud[i], us[i], r_all[i], styles_l[i])
                # Generated values hold no comma or quote: no CSV quoting needed on valid rows.
                lines.append(",".join([f[c] for c in COLUMNS]))
                line_no += 1
            if c0 + CHUNK > n_valid:  # the last chunk: bad rows placed after every valid row
                while j < len(inserts):
                    line_no += 1
                    lines.append(inserts[j][2])
                    bad.append(("crm", rel, line_no, inserts[j][3]))
                    j += 1
            if lines:
                fh.write(("\n".join(lines) + "\n").encode("utf-8"))
    return CrmDay(file=rel, rows=line_no - 1, bad=bad, accounts=rows_a.astype(np.int64))
