"""`cdp generate`: layout, determinism, planted mess and ground truth, checked file by file."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from jobs.generate.landing import generate_landing
from tests.generate import contract_rules as cr

END = dt.date(2026, 11, 5)
DAYS = 5
MEMBERS = 200
SEED = 7
DATES = [(END - dt.timedelta(days=DAYS - 1 - i)).isoformat() for i in range(DAYS)]
NAME_PATTERNS = {
    "pos": re.compile(r"^pos_(S\d{3})_(\d{8})\.csv$"),
    "web": re.compile(r"^events_(\d{8})_[A-Za-z0-9-]+\.jsonl(\.gz)?$"),
    "crm": re.compile(r"^members_(\d{8})\.csv$"),
}


@dataclass
class Scan:
    """Every row of a generated landing zone, with the rules it breaks."""

    root: Path
    pos: list[tuple[str, int, list[str], set[str]]] = field(default_factory=list)
    web: list[tuple[str, int, bytes, set[str], dict | None]] = field(default_factory=list)
    crm: list[tuple[str, int, list[str], set[str]]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def truth(self, name: str) -> list[dict[str, str]]:
        with (self.root / "truth" / name).open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))

    @property
    def summary(self) -> dict:
        return json.loads((self.root / "truth" / "summary.json").read_text(encoding="utf-8"))


def scan(root: Path) -> Scan:
    s = Scan(root)
    for source in ("pos", "web", "crm"):
        for folder in sorted((root / source).iterdir()):
            business = dt.date.fromisoformat(folder.name)
            for path in sorted(folder.iterdir()):
                if path.name == "_SUCCESS":
                    continue
                rel = path.relative_to(root).as_posix()
                if source == "pos":
                    for line_no, fields in cr.csv_rows(path):
                        s.pos.append((rel, line_no, fields, cr.pos_reasons(fields, business)))
                elif source == "crm":
                    for line_no, fields in cr.csv_rows(path):
                        s.crm.append((rel, line_no, fields, cr.crm_reasons(fields, business)))
                elif not cr.readable(path):
                    s.unreadable.append(rel)
                else:
                    for i, line in enumerate(cr.jsonl_lines(path), start=1):
                        reasons, rec = cr.web_reasons(line, business)
                        s.web.append((rel, i, line, reasons, rec))
    return s


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "landing"
    generate_landing(out, members=MEMBERS, days=DAYS, seed=SEED, end_date=END, workers=2)
    return out


@pytest.fixture(scope="module")
def scanned(landing) -> Scan:
    return scan(landing)


# --- a somewhat larger world for behaviour that needs more than 200 people ----------------


@pytest.fixture(scope="module")
def larger(tmp_path_factory) -> Scan:
    out = tmp_path_factory.mktemp("gen") / "larger"
    generate_landing(out, members=1500, days=10, seed=3, end_date=END, workers=2)
    return scan(out)


def test_same_arguments_give_identical_bytes_whatever_the_worker_count(landing, tmp_path):
    again = tmp_path / "again"
    generate_landing(again, members=MEMBERS, days=DAYS, seed=SEED, end_date=END, workers=1)
    a, b = _tree(landing), _tree(again)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []
    # Re-running into the same folder replaces it with the same bytes.
    generate_landing(again, members=MEMBERS, days=DAYS, seed=SEED, end_date=END, workers=1)
    assert _tree(again) == a


def test_another_seed_gives_other_data(landing, tmp_path):
    other = tmp_path / "other"
    generate_landing(other, members=MEMBERS, days=DAYS, seed=SEED + 1, end_date=END, workers=1)
    a, b = _tree(landing), _tree(other)
    crm_day1 = f"crm/{DATES[0]}/members_{DATES[0].replace('-', '')}.csv"
    assert a[crm_day1] != b[crm_day1]
    assert sum(1 for k in a if k in b and a[k] == b[k] and not k.endswith("_SUCCESS")) < len(a) // 4


def test_refuses_to_wipe_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate_landing(tmp_path, members=10, days=1, seed=1, end_date=END)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_layout_and_file_names_follow_the_contract(landing, scanned):
    assert sorted(p.name for p in landing.iterdir()) == ["crm", "loyalty", "pos", "truth", "web"]
    n_stores = scanned.summary["stores"]
    assert 20 <= n_stores <= 40
    for source, pattern in NAME_PATTERNS.items():
        assert sorted(p.name for p in (landing / source).iterdir()) == DATES
        for date in DATES:
            folder = landing / source / date
            names = sorted(p.name for p in folder.iterdir())
            assert "_SUCCESS" in names
            files = [n for n in names if n != "_SUCCESS"]
            for n in files:
                m = pattern.match(n)
                assert m, f"{source}/{date}/{n}"
                assert date.replace("-", "") in m.groups()
            # _SUCCESS is the last thing written in the folder.
            success = (folder / "_SUCCESS").stat().st_mtime_ns
            assert all((folder / n).stat().st_mtime_ns <= success for n in files)
            if source == "pos":  # one export per store and day, even a quiet one
                assert len(files) == n_stores
            if source == "crm":
                assert files == [f"members_{date.replace('-', '')}.csv"]
            if source == "web":
                assert any(n.endswith(".jsonl") for n in files)
                assert any(n.endswith(".jsonl.gz") for n in files)
    header = (landing / "crm" / DATES[0] / f"members_{DATES[0].replace('-', '')}.csv").read_text(
        encoding="utf-8"
    )
    assert header.splitlines()[0].split(",") == cr.CRM_COLUMNS


def test_store_encodings_gb18030_and_bom_keep_chinese_text(landing, scanned):
    enc = scanned.summary["store_encodings"]
    gb_store, bom_store = enc["gb18030"][0], enc["utf-8-sig"][0]
    seen = Counter()
    for path in sorted((landing / "pos").rglob("pos_*.csv")):
        data = path.read_bytes()
        text, used = cr.decode_csv(data)
        store = path.name.split("_")[1]
        expected = {gb_store: "gb18030", bom_store: "utf-8-sig"}.get(store, "utf-8")
        lines = text.splitlines()
        if used != expected:  # a GB18030 file with only ASCII content also decodes as UTF-8
            assert expected == "gb18030" and data.isascii() and used == "utf-8"
        assert lines[0].replace('"', "").split(",") == cr.POS_COLUMNS
        cats = {f[9] for _, f in cr.csv_rows(path) if len(f) == 17 and f[9]}
        assert cats <= cr.CATEGORIES | {""}
        seen[expected] += len(cats)
    # Chinese categories really went through both special encodings.
    assert seen["gb18030"] > 0 and seen["utf-8-sig"] > 0 and seen["utf-8"] > 0
    some_gb = [
        p for p in (landing / "pos").rglob(f"pos_{gb_store}_*.csv") if not p.read_bytes().isascii()
    ]
    assert some_gb
    with pytest.raises(UnicodeDecodeError):
        some_gb[0].read_bytes().decode("utf-8")
    assert b"\r\n" in some_gb[0].read_bytes()  # the old till writes CRLF


def test_every_planted_bad_row_breaks_exactly_its_rule_and_no_other_row_breaks_any(scanned):
    planted = {(r["file"], r["line_no"]): r for r in scanned.truth("bad_rows.csv")}
    found = {}
    for source, rows in (("pos", scanned.pos), ("crm", scanned.crm)):
        for rel, line_no, _, reasons in rows:
            if reasons:
                found[(rel, str(line_no))] = (source, reasons)
    for rel, line_no, _, reasons, _ in scanned.web:
        if reasons:
            found[(rel, str(line_no))] = ("web", reasons)
    for rel in scanned.unreadable:
        found[(rel, "")] = ("web", {"file_unreadable"})
    assert set(found) == set(planted), "planted bad rows and rows breaking rules differ"
    for key, (source, reasons) in found.items():
        assert planted[key]["source"] == source
        assert reasons == {planted[key]["reason"]}, key
    # Every reason the brief names is planted at least once in the window.
    reasons = Counter((r["source"], r["reason"]) for r in planted.values())
    for source, names in (
        ("pos", "order_id_required line_no_invalid store_id_required order_ts_invalid "
         "txn_type_invalid ref_order_id_invalid sku_required category_required qty_invalid "
         "unit_price_invalid discount_invalid amount_invalid amount_mismatch "
         "payment_method_invalid points_invalid wrong_field_count"),
        ("web", "invalid_json event_id_required event_ts_invalid anonymous_id_required "
         "event_type_invalid channel_invalid order_id_required_for_purchase revenue_invalid "
         "file_unreadable"),
        ("crm", "crm_id_required register_ts_invalid updated_ts_invalid register_channel_invalid "
         "gender_invalid birth_date_invalid opt_in_invalid status_invalid wrong_field_count"),
    ):  # fmt: skip
        for name in names.split():
            assert reasons[(source, name)] >= 1, (source, name)
    assert reasons[("web", "file_unreadable")] == 1


def test_duplicates_list_every_redelivered_copy_in_file_order(scanned):
    seen: set[str] = set()
    copies = []
    for rel, line_no, _, reasons, rec in scanned.web:  # already in folder/file/line order
        if reasons:
            continue
        if rec["event_id"] in seen:
            copies.append((rec["event_id"], rel, str(line_no)))
        seen.add(rec["event_id"])
    truth = [(r["event_id"], r["file"], r["line_no"]) for r in scanned.truth("duplicates.csv")]
    assert truth == copies
    kinds = set()
    first_file = {}
    for rel, _, _, reasons, rec in scanned.web:
        if not reasons:
            first_file.setdefault(rec["event_id"], rel)
    for eid, rel, _ in copies:
        orig = first_file[eid]
        kinds.add(
            "same file" if orig == rel else "same day" if orig[:14] == rel[:14] else "later day"
        )
    assert kinds == {"same file", "same day", "later day"}
    # A copy is the same event, byte for byte.
    by_id = defaultdict(set)
    for _, _, line, reasons, rec in scanned.web:
        if not reasons:
            by_id[rec["event_id"]].add(line)
    assert all(len(v) == 1 for v in by_id.values())


def test_identities_cover_every_key_in_the_files(scanned):
    ids = scanned.truth("identities.csv")
    by_key = {(r["source"], r["source_key"]): r for r in ids}
    assert len(by_key) == len(ids), "an identity is listed twice"
    junk = {(r["id_type"], r["value"]): r["kind"] for r in scanned.truth("junk_values.csv")}
    placeholder = scanned.summary["placeholder_phone"]
    assert junk[("phone", placeholder)] == "placeholder"

    cards, phones = set(), set()
    placeholder_lines = 0
    for _, _, f, reasons in scanned.pos:
        if reasons:
            continue
        if f[6].strip():
            cards.add(f[6].strip().upper())
        phone = cr.canonical_phone(cr.clean(f[7]))
        if f[7].strip():
            assert phone is not None, f[7]
            if phone == placeholder:
                placeholder_lines += 1
                assert not f[6].strip()
            else:
                phones.add(phone)
    assert cards == {k for s, k in by_key if s == "pos_card"}
    assert phones == {k for s, k in by_key if s == "pos_phone"}
    assert ("pos_phone", placeholder) not in by_key
    assert placeholder_lines >= 3

    users, anons, linked = set(), set(), set()
    for _, _, _, reasons, rec in scanned.web:
        if reasons:
            continue
        anons.add(rec["anonymous_id"])
        if rec["user_id"]:
            users.add(rec["user_id"])
        if rec["event_type"] in ("login", "signup"):
            assert rec["user_id"] and rec["anonymous_id"]
            linked.add(rec["anonymous_id"])
    assert users == {k for s, k in by_key if s == "web_user"}
    assert anons == {k for s, k in by_key if s == "web_anon"}
    for (s, k), r in by_key.items():
        assert r["linkable"] == ("false" if s == "web_anon" and k not in linked else "true")
    assert any(r["linkable"] == "false" for r in ids)

    crm_ids = {cr.clean(f[0]) for _, _, f, reasons in scanned.crm if not reasons}
    assert crm_ids == {k for s, k in by_key if s == "crm"}


def test_identities_agree_with_what_the_crm_says(scanned):
    """A CRM row's card, phone and web account belong to the person of its crm_id."""
    ids = scanned.truth("identities.csv")
    person = {(r["source"], r["source_key"]): r["person_id"] for r in ids}
    phones_of = defaultdict(set)
    for _, _, f, reasons in scanned.crm:
        if reasons:
            continue
        r = dict(zip(cr.CRM_COLUMNS, (cr.clean(v) for v in f), strict=True))
        p = person[("crm", r["crm_id"])]
        if r["member_card_no"] and ("pos_card", r["member_card_no"].upper()) in person:
            assert person[("pos_card", r["member_card_no"].upper())] == p
        phone = cr.canonical_phone(r["phone"])
        if phone and ("pos_phone", phone) in person:
            assert person[("pos_phone", phone)] == p
        if r["web_user_id"] and ("web_user", r["web_user_id"]) in person:
            assert person[("web_user", r["web_user_id"])] == p
        if phone:
            phones_of[r["crm_id"]].add(phone)
    # Some people registered twice or more.
    per_person = Counter(r["person_id"] for r in ids if r["source"] == "crm")
    assert max(per_person.values()) >= 2
    # Some members changed their phone inside the window (two numbers on one crm_id).
    assert any(len(v) == 2 for v in phones_of.values())


def test_phone_spellings_and_id_cards(scanned, larger):
    for rows, col in ((larger.pos, 7), (scanned.crm, 2)):
        values = {f[col] for _, _, f, reasons in rows if not reasons and f[col]}
        shapes = {re.sub(r"[0-9]", "9", v) for v in values}
        for shape in ("99999999999", "+99 999 9999 9999", "999-9999-9999", "99-99999999999"):
            assert shape in shapes, shape
        assert any(v.startswith("0086") for v in values)
        assert all(cr.canonical_phone(v) for v in values)

    bad_listed = {
        r["value"] for r in scanned.truth("junk_values.csv") if r["kind"] == "bad_checksum"
    }
    cards = {f[4].strip() for _, _, f, reasons in scanned.crm if not reasons and f[4].strip()}
    assert cards and all(cr.id_card_ok(c) != (c in bad_listed) for c in cards)


def test_summary_counts_match_the_files(scanned):
    s = scanned.summary
    assert s["args"] == {
        "members": MEMBERS,
        "days": DAYS,
        "seed": SEED,
        "end_date": END.isoformat(),
        "start_date": DATES[0],
    }
    assert s["pos_lines"] == len(scanned.pos)
    assert s["crm_rows"] == len(scanned.crm)
    assert s["web_lines"] == len(scanned.web)
    assert s["corrupt_files"] == scanned.unreadable
    bad = scanned.truth("bad_rows.csv")
    assert s["bad_rows_total"] == len(bad)
    by = defaultdict(Counter)
    for r in bad:
        by[r["source"]][r["reason"]] += 1
    assert s["bad_rows"] == {k: dict(v) for k, v in by.items()}
    assert s["duplicates"] == len(scanned.truth("duplicates.csv"))
    ids = scanned.truth("identities.csv")
    assert s["persons"] == len({r["person_id"] for r in ids})
    assert s["identities"] == dict(Counter(r["source"] for r in ids))
    assert s["members"] == MEMBERS
    persons = scanned.truth("persons.csv")
    assert len(persons) == s["persons"]
    assert sum(1 for p in persons if p["kind"] == "member") == MEMBERS


def test_new_members_and_the_first_snapshot(scanned):
    """Day 1 holds everyone registered so far (some ~3 years back); later days only changes."""
    first = [f for rel, _, f, r in scanned.crm if not r and DATES[0] in rel]
    later = [f for rel, _, f, r in scanned.crm if not r and DATES[0] not in rel]
    reg = [dt.date.fromisoformat(f[11][:10]) for f in first]
    assert min(reg) < dt.date.fromisoformat(DATES[0]) - dt.timedelta(days=700)
    assert len(first) > 0.8 * MEMBERS
    assert 0 < len(later) < 0.2 * MEMBERS
    for f in later:  # created or changed that day
        assert f[18][:10] in DATES[1:]


def test_returns_refer_to_an_earlier_sale_of_the_same_item(larger):
    sales = {}
    returns = []
    for rel, _, f, reasons in larger.pos:
        if reasons:
            continue
        if f[4] == "SALE":
            sales[(f[0], f[8])] = (f, rel)
        else:
            returns.append(f)
    assert len(returns) >= 5
    for f in returns:
        sale, _ = sales[(f[5], f[8])]
        assert sale[3] < f[3], "a return comes after its sale"
        assert int(f[10]) <= int(sale[10]) and f[11] == sale[11]
        assert (f[6].strip().upper(), cr.canonical_phone(f[7])) == (
            sale[6].strip().upper(),
            cr.canonical_phone(sale[7]),
        )


def test_behaviour_profiles_show_in_the_data(larger):
    ids = {(r["source"], r["source_key"]): r["person_id"] for r in larger.truth("identities.csv")}
    profile = {r["person_id"]: r for r in larger.truth("persons.csv")}

    def who(f: list[str]) -> str | None:
        card, phone = f[6].strip().upper(), cr.canonical_phone(f[7])
        return ids.get(("pos_card", card)) or ids.get(("pos_phone", phone or ""))

    night = Counter()
    disc = defaultdict(lambda: [0, 0])
    member_lines = 0
    for _, _, f, reasons in larger.pos:
        if reasons or f[4] != "SALE":
            continue
        p = who(f)
        if p is None:
            continue
        member_lines += 1
        hour = int(f[3][11:13])
        night[(profile[p]["night_owl"], hour >= 21 or hour < 5)] += 1
        disc[profile[p]["discount_hunter"]][0] += int(float(f[12] or 0) * 100)
        disc[profile[p]["discount_hunter"]][1] += int(f[10]) * int(float(f[11]) * 100)
    owls = night[("true", True)] / max(1, night[("true", True)] + night[("true", False)])
    others = night[("false", True)] / max(1, night[("false", True)] + night[("false", False)])
    assert owls >= 0.5 and others < 0.1
    assert disc["true"][0] / disc["true"][1] >= 0.3 > disc["false"][0] / disc["false"][1]
    total_sales = sum(1 for _, _, f, r in larger.pos if not r and f[4] == "SALE")
    assert 0.45 <= member_lines / total_sales <= 0.75  # ~60% carry a card or phone
    channels = Counter(p["channel"] for p in profile.values() if p["kind"] == "member")
    assert {"store_only", "online_only", "omnichannel"} <= set(channels)
    activities = Counter(p["activity"] for p in profile.values() if p["kind"] == "member")
    assert {"heavy", "light", "stopper", "browser", "inactive"} <= set(activities)


def test_lines_of_one_order_agree_on_its_header_fields(larger):
    """Order id, store, time, type, reference, card, phone and payment repeat on every line."""
    header = defaultdict(set)
    line_nos = defaultdict(list)
    for _, _, f, reasons in larger.pos:
        if not reasons:
            header[f[0]].add((f[2], f[3], f[4], f[5], f[6], f[7], f[14]))
            line_nos[f[0]].append(int(f[1]))
    assert all(len(v) == 1 for v in header.values())
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in line_nos.values())
    assert max(len(v) for v in line_nos.values()) >= 4
