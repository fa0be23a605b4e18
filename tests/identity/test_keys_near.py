"""jobs.identity.fuzzy.keys_near: the members of the blocking keys a night's records hold,
found without computing every record's keys, are exactly those of the plain way
(block_keys of every record, filtered by the owners' keys)."""

from __future__ import annotations

import datetime as dt
import random

from jobs.identity.conf import load_identity_conf
from jobs.identity.fuzzy import block_keys, keys_near

FP = (
    "crm_id string, birth_date date, city_key string, phone string, name_sorted string, "
    "first string, last string, card string, id_raw string"
)
DIGITS = "0123456789"


def _typo(rng: random.Random, text: str | None) -> str | None:
    """``text`` with one character replaced, two neighbours swapped, or unchanged."""
    if not text or len(text) < 2:
        return text
    i = rng.randrange(len(text) - 1)
    roll = rng.random()
    if roll < 0.4:
        return text[:i] + rng.choice(DIGITS + "ab") + text[i + 1 :]
    if roll < 0.8:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text


def _records(rng: random.Random, n_people: int) -> list[tuple]:
    """A few registrations per person, each with typos in its card, ID, phone or name,
    some fields missing; a handful of shared cities, birth dates and surnames."""
    rows = []
    for p in range(n_people):
        first, last = (
            rng.choice(["王", "li", "maria", "zhang"]),
            rng.choice(["梅", "chen", "carbone"]),
        )
        card = "".join(rng.choice(DIGITS) for _ in range(rng.choice([2, 5, 10])))
        id_raw = "".join(rng.choice(DIGITS) for _ in range(rng.choice([1, 4, 18])))
        phone = "1" + "".join(rng.choice(DIGITS) for _ in range(10))
        dob = dt.date(1980, 1, 1) + dt.timedelta(rng.randrange(40))
        for r in range(rng.randint(1, 4)):
            f, la = (first, last) if rng.random() < 0.8 else (last, first)
            rows.append((
                f"c{p}-{r}",
                None if rng.random() < 0.1 else dob,
                rng.choice(["sydney", "上海", None]),
                None if rng.random() < 0.2 else _typo(rng, phone),
                " ".join(sorted([f, la])),
                f,
                la,
                None if rng.random() < 0.2 else _typo(rng, card),
                None if rng.random() < 0.2 else _typo(rng, id_raw),
            ))  # fmt: skip
    return rows


def test_keys_near_equals_every_records_keys_filtered_by_the_owners_keys(spark):
    rng = random.Random(3)
    conf = load_identity_conf()
    rows = _records(rng, 120)
    # Only an identifier links each pair, and its difference cuts both halves: two
    # neighbours swapped across the middle of an ID card (other initials, so its sorted
    # characters share no key), the last character of a member card replaced (a card's
    # masked keys hold a name initial: the same here).
    swap = ("110105198001011238", "110105190801011238")
    end = ("4562990001", "4562990007")
    cases = [(swap, ("xa yb", "uc vd")), (end, ("xa yb", "xc yd"))]
    for i, (texts, names) in enumerate(cases):
        for j, (text, name) in enumerate(zip(texts, names, strict=True)):
            card, id_raw = (text, None) if i else (None, text)
            rows.append((f"only{i}{j}", None, None, None, name, *name.split(), card, id_raw))
    fp = spark.createDataFrame(rows, FP)
    # Owners: some records as they are today, and some as "yesterday" (other typos); of
    # the pairs above, the first record only.
    plain = [r for r in rows if not r[0].startswith("only")]
    today = [*rng.sample(plain, 15), *(r for r in rows if r[0] in ("only00", "only10"))]
    yesterday = [(r[0], *(_typo(rng, v) if isinstance(v, str) else v for v in r[1:]))
                 for r in rng.sample(plain, 10)]  # fmt: skip
    owners = spark.createDataFrame(today + yesterday, FP)
    wanted = block_keys(owners, conf).select("block").distinct()
    expected = {(r.crm_id, r.block) for r in block_keys(fp, conf, wanted=wanted).collect()}
    got = [(r.crm_id, r.block) for r in keys_near(fp, owners, conf).collect()]
    assert len(expected) > len(today) * 5  # the owners share keys with other records
    assert sorted(got) == sorted(expected)
    assert {"only01", "only11"} <= {r[0] for r in got}
