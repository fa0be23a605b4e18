"""`cdp generate`: write a sample landing zone (CONTRACT section 1) and its ground truth.

Layout written under ``out``::

    pos/<date>/pos_<store>_<YYYYMMDD>.csv      one per store and day
    web/<date>/events_<YYYYMMDD>_<part>.jsonl[.gz]
    crm/<date>/members_<YYYYMMDD>.csv          day 1 full snapshot, then changes
    loyalty/<date>/points_<YYYYMMDD>.csv       the points ledger (jobs.generate.loyalty)
    <source>/<date>/_SUCCESS                    written last, in every day folder
    truth/identities.csv, persons.csv, junk_values.csv, bad_rows.csv, duplicates.csv,
    truth/summary.json

Truth (``truth/``):

- ``identities.csv`` person_id, source, source_key, linkable: one row per source identity
  that appears on a *valid* row of the landing zone (crm_id; web user_id and
  anonymous_id seen in events; POS card upper-cased; POS phone as 11 digits). A
  ``web_user`` is listed when its user_id shows up in events (CRM's web_user_id is an
  attribute of the crm identity). ``linkable`` is false for devices with no
  login/signup event: nothing ties them to anyone.
- ``junk_values.csv`` values that identify nobody: the till's placeholder phone, and
  ID card numbers with a wrong check character (ignored for matching).
- ``bad_rows.csv`` every planted invalid row (file, physical line, the one rule it
  breaks); ``duplicates.csv`` every re-delivered web event copy (2nd, 3rd... in
  folder/file/line order); ``persons.csv`` the behaviour profile of each person;
  ``summary.json`` counts and arguments (no timings: the truth is deterministic too).

Days are generated in parallel (``multiprocessing``, fork) from per-(seed, day)
random streams, so the bytes depend on the arguments only, never on the worker
count. Rows are streamed to files day by day; the main process only keeps compact
"seen" flags per identity for the truth files.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import multiprocessing as mp
import os
import resource
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from jobs.generate import crm as crm_mod
from jobs.generate import loyalty as loyalty_mod
from jobs.generate import pos as pos_mod
from jobs.generate import reference as ref
from jobs.generate import web as web_mod
from jobs.generate.fmt import card_text, crm_id_text, user_id_text, uuid_text, ymd
from jobs.generate.world import (
    ACTIVITY_NAMES,
    CHANNEL_NAMES,
    KIND_NAMES,
    World,
    build_world,
)
from jobs.sources import SOURCE_NAMES

SOURCES = SOURCE_NAMES  # every source of the registry gets its day folders and _SUCCESS
SUCCESS = "_SUCCESS"
GENERATED_DIRS = (*SOURCES, "truth")

_WORLD: World | None = None
_PARAMS: tuple | None = None


def _init(params: tuple) -> None:
    """Worker start: reuse the forked world, or rebuild it (spawn start method)."""
    global _WORLD, _PARAMS
    if _WORLD is None or _PARAMS != params:
        _WORLD = build_world(*params)
        _PARAMS = params


def _run_day(args: tuple[int, str]) -> dict:
    d, out = args
    assert _WORLD is not None
    root = Path(out)
    return {
        "day": d,
        "pos": pos_mod.generate_pos_day(_WORLD, d, root),
        "web": web_mod.generate_web_day(_WORLD, d, root),
        "crm": crm_mod.generate_crm_day(_WORLD, d, root),
    }


def _prepare_out(out: Path) -> None:
    """Start from a clean slate so a re-run gives identical bytes, but never wipe a folder
    that is not a generated landing zone."""
    out.mkdir(parents=True, exist_ok=True)
    entries = [p.name for p in out.iterdir()]
    foreign = [e for e in entries if e not in GENERATED_DIRS]
    if entries and (foreign or not (out / "truth" / "summary.json").exists()):
        raise FileExistsError(
            f"{out} is not empty and not a generated landing zone; choose an empty --out"
        )
    for name in GENERATED_DIRS:
        if (out / name).exists():
            shutil.rmtree(out / name)


def generate_landing(
    out: Path,
    members: int,
    days: int,
    seed: int,
    end_date: dt.date,
    workers: int | None = None,
    stores: int | None = None,
    dirty_identity: bool = False,
) -> dict:
    """Write the landing zone and truth; return a summary (printed line by line by the CLI).

    ``stores`` overrides the number of stores (default: 20 to 40 by size).
    ``dirty_identity``: the harder identity truth (jobs/generate/world.py build_world).
    """
    t0 = time.perf_counter()
    cpu0 = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    out = Path(out)
    _prepare_out(out)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    workers = max(1, min(workers, days))
    global _WORLD, _PARAMS
    params = (members, days, seed, end_date, stores, dirty_identity)
    _WORLD = build_world(*params)
    _PARAMS = params
    w = _WORLD

    agg = _Aggregate(w)
    jobs = [(d, str(out)) for d in range(days)]
    if workers == 1:
        for job in jobs:
            agg.add(_run_day(job))
    else:
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(workers, initializer=_init, initargs=(params,)) as pool:
            for result in pool.imap(_run_day, jobs, chunksize=1):
                agg.add(result)

    agg.write_resends(out)
    summary = agg.write_truth(out, params, workers)
    ledger = loyalty_mod.generate_loyalty(w, agg.member_sales, out)
    (out / "truth" / "loyalty_summary.json").write_text(
        json.dumps(_ledger_summary(ledger), indent=2) + "\n", encoding="utf-8"
    )
    for source in SOURCES:
        for d in range(days):
            (out / source / w.date(d).isoformat() / SUCCESS).write_bytes(b"")

    seconds = time.perf_counter() - t0
    rows = summary["pos_lines"] + summary["web_lines"] + summary["crm_rows"]
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_self, peak_child = me.ru_maxrss / 1024, kids.ru_maxrss / 1024
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime - cpu0
    return {
        "out": str(out),
        "dates": f"{w.start.isoformat()} .. {end_date.isoformat()} ({days} days)",
        "members": members,
        "persons": summary["persons"],
        "crm_rows": summary["crm_rows"],
        "pos_lines": summary["pos_lines"],
        "web_lines": summary["web_lines"],
        "bad_rows": summary["bad_rows_total"],
        "duplicates": summary["duplicates"],
        "loyalty_rows": ledger.rows,
        "workers": workers,
        "seconds": round(seconds, 1),
        "rows_per_s": int(rows / seconds) if seconds else rows,
        "cpu_s": round(cpu, 1),  # all processes: compare with seconds on a busy machine
        "peak_rss_mb": f"main {peak_self:.0f}, worker {peak_child:.0f}",
    }


def _ledger_summary(ledger: loyalty_mod.LedgerSummary) -> dict:
    """truth/loyalty_summary.json: the ledger's counts (files, rows, planted mess)."""
    return {
        "files": len(ledger.files),
        "rows": ledger.rows,
        "valid_rows": sum(ledger.by_type.values()),
        "by_type": ledger.by_type,
        "bad_rows": dict(Counter(reason for _, _, reason in ledger.bad)),
        "duplicates": len(ledger.duplicates),
        "unknown_member_rows": ledger.unknown_member_rows,
        "members": len(ledger.balances),
    }


class _Aggregate:
    """What the main process keeps while days stream in: counts, truth rows, seen flags."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.card_seen = np.zeros(len(w.acct_owner), dtype=bool)
        self.phone_old_seen = np.zeros(w.n_actors, dtype=bool)
        self.phone_new_seen = np.zeros(w.n_actors, dtype=bool)
        self.dev_seen = np.zeros(len(w.dev_owner), dtype=bool)
        self.dev_linked = np.zeros(len(w.dev_owner), dtype=bool)
        self.user_seen = np.zeros(w.n_actors, dtype=bool)
        self.crm_seen = np.zeros(len(w.acct_owner), dtype=bool)
        self.bad: list[tuple[str, str, int | None, str]] = []
        self.dups: list[tuple[str, str, int]] = []
        self.resend: dict[int, list[tuple[bytes, str]]] = {}
        self.counts = {
            "pos_files": 0,
            "pos_lines": 0,
            "pos_orders": 0,
            "pos_returns": 0,
            "pos_placeholder_lines": 0,
            "web_files": 0,
            "web_lines": 0,
            "web_events": 0,
            "web_purchases": 0,
            "crm_files": 0,
            "crm_rows": 0,
        }
        self.per_day: list[dict] = []
        self.corrupt: list[str] = []
        self.member_sales: list[dict] = [{} for _ in range(w.days)]  # per day, for the ledger

    def add(self, r: dict) -> None:
        p: pos_mod.PosDay = r["pos"]
        wd: web_mod.WebDay = r["web"]
        c: crm_mod.CrmDay = r["crm"]
        self.card_seen[p.cards] = True
        self.phone_old_seen[p.phones_old] = True
        self.phone_new_seen[p.phones_new] = True
        self.dev_seen[wd.devices_seen] = True
        self.dev_linked[wd.devices_linked] = True
        self.user_seen[wd.users_seen] = True
        self.crm_seen[c.accounts] = True
        self.member_sales[r["day"]] = p.member_sales
        self.bad += p.bad + wd.bad + c.bad
        self.dups += wd.dups
        for target, line, eid in wd.resend:
            self.resend.setdefault(target, []).append((line, eid))
        k = self.counts
        k["pos_files"] += len(p.files)
        k["pos_lines"] += p.lines
        k["pos_orders"] += p.orders
        k["pos_returns"] += p.returns
        k["pos_placeholder_lines"] += p.placeholder_lines
        k["web_files"] += len(wd.files)
        k["web_lines"] += wd.lines
        k["web_events"] += wd.events
        k["web_purchases"] += wd.purchases
        k["crm_files"] += 1
        k["crm_rows"] += c.rows
        if wd.corrupt_file:
            self.corrupt.append(wd.corrupt_file)
        self.per_day.append(
            {
                "date": self.w.date(r["day"]).isoformat(),
                "pos_lines": p.lines,
                "web_lines": wd.lines,
                "crm_rows": c.rows,
            }
        )

    def write_resends(self, out: Path) -> None:
        """Events re-delivered on a later day: one extra part in that day's folder."""
        for target in sorted(self.resend):
            day = self.w.date(target)
            name = web_mod.events_file_name(ymd(day), web_mod.RESEND_PART, False)
            rel = f"web/{day.isoformat()}/{name}"
            items = self.resend[target]
            (out / rel).write_bytes(b"\n".join(line for line, _ in items) + b"\n")
            for i, (_, eid) in enumerate(items, start=1):
                self.dups.append((eid, rel, i))
            self.counts["web_files"] += 1
            self.counts["web_lines"] += len(items)
            self.per_day[target]["web_lines"] += len(items)

    def write_truth(self, out: Path, params: tuple, workers: int) -> dict:
        w = self.w
        truth = out / "truth"
        truth.mkdir(parents=True, exist_ok=True)

        def pid(i: int) -> str:
            return f"P{i + 1:08d}"

        persons_with_ids = np.zeros(w.n_persons, dtype=bool)
        fh = (truth / "identities.csv").open("w", encoding="utf-8", newline="")
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["person_id", "source", "source_key", "linkable"])
        n_ids: dict[str, int] = {}

        def emit(source: str, owners: np.ndarray, keys: list[str], linkable: np.ndarray | None):
            n_ids[source] = n_ids.get(source, 0) + len(keys)
            persons_with_ids[owners] = True
            link = ["true"] * len(keys) if linkable is None else np.where(linkable, "true", "false")
            for o, k, lk in zip(owners.tolist(), keys, link, strict=True):
                wr.writerow([pid(o), source, k, lk])

        acc = np.flatnonzero(self.crm_seen)
        emit("crm", w.acct_owner[acc], [crm_id_text(int(x)) for x in w.acct_num[acc]], None)
        users = np.flatnonzero(self.user_seen)
        emit("web_user", users, [user_id_text(int(x)) for x in w.user_num[users]], None)
        devs = np.flatnonzero(self.dev_seen)
        emit(
            "web_anon",
            w.dev_owner[devs],
            [
                uuid_text(int(h), int(lo))
                for h, lo in zip(w.dev_hi[devs], w.dev_lo[devs], strict=True)
            ],
            self.dev_linked[devs],
        )
        cards = np.flatnonzero(self.card_seen)
        emit(
            "pos_card",
            w.acct_owner[cards],
            [card_text(int(x)).upper() for x in w.acct_card[cards]],
            None,
        )
        old = np.flatnonzero(self.phone_old_seen)
        new = np.flatnonzero(self.phone_new_seen)
        both = np.concatenate([old, new])
        nums = np.concatenate([w.phone[old], w.phone2[new]])
        emit("pos_phone", both, [str(int(x)) for x in nums], None)
        fh.close()

        # Persons that the landing zone shows at least one identity of.
        fh = (truth / "persons.csv").open("w", encoding="utf-8", newline="")
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(
            ["person_id", "kind", "name", "gender", "birth_date", "city", "activity", "channel",
             "night_owl", "discount_hunter", "category_lover", "registered", "crm_ids",
             "phone_changed", "closed", "devices"]
        )  # fmt: skip
        listed = np.flatnonzero(persons_with_ids)
        act = listed[listed < w.n_actors]
        start_day = w.start_epoch_day

        def day_or_blank(days: np.ndarray, keep: np.ndarray) -> list[str]:
            return [
                crm_mod.epoch_day_iso(start_day + d) if k else ""
                for d, k in zip(days.tolist(), keep.tolist(), strict=True)
            ]

        member = (w.kind[act] == 0).tolist()
        columns = zip(
            act.tolist(),
            w.kind[act].tolist(),
            member,
            w.gender[act].tolist(),
            w.birth[act].tolist(),
            w.city[act].tolist(),
            w.activity[act].tolist(),
            w.chan_pref[act].tolist(),
            w.night[act].tolist(),
            w.hunter[act].tolist(),
            np.where(w.lover[act], w.fav[act], -1).tolist(),
            day_or_blank(w.reg_day[act], w.kind[act] != 2),
            w.n_acct[act].tolist(),
            day_or_blank(w.phone_day[act], w.phone2[act] > 0),
            day_or_blank(w.close_day[act], w.close_day[act] < w.days),
            w.n_dev[act].tolist(),
            strict=True,
        )
        flag = ("false", "true")
        for i, kind, mem, g, birth, city, activity, chan, night, hunter, fav, reg, n_acct, \
                changed, closed, n_dev in columns:  # fmt: skip
            wr.writerow(
                [
                    pid(i),
                    KIND_NAMES[kind],
                    crm_mod.person_name(w, i) if mem else "",
                    ("M", "F")[g] if mem else "",
                    crm_mod.epoch_day_iso(birth) if mem else "",
                    ref.CITIES[city][0],
                    ACTIVITY_NAMES[activity],
                    CHANNEL_NAMES[chan],
                    flag[night],
                    flag[hunter],
                    ref.CATEGORY_NAMES[fav] if fav >= 0 else "",
                    reg,
                    n_acct,
                    changed,
                    closed,
                    n_dev,
                ]
            )
        anon_row = [KIND_NAMES[3], "", "", "", "", "", "", "", "", "", "", 0, "", "", 1]
        for i in listed[listed >= w.n_actors].tolist():
            wr.writerow([pid(i), *anon_row])
        fh.close()

        fh = (truth / "junk_values.csv").open("w", encoding="utf-8", newline="")
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["id_type", "value", "kind"])
        wr.writerow(["phone", str(ref.PLACEHOLDER_PHONE), "placeholder"])
        bad_idc = np.flatnonzero(w.idc_bad & w.idc_has & (w.n_acct > 0))
        for i in bad_idc.tolist():
            wr.writerow(["id_card", crm_mod.id_card_number(w, i), "bad_checksum"])
        fh.close()

        self.bad.sort(key=lambda t: (t[0], t[1], t[2] or 0))
        fh = (truth / "bad_rows.csv").open("w", encoding="utf-8", newline="")
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["source", "file", "line_no", "reason"])
        for source, rel, line_no, reason in self.bad:
            wr.writerow([source, rel, "" if line_no is None else line_no, reason])
        fh.close()

        self.dups.sort(key=lambda t: (t[1], t[2]))
        fh = (truth / "duplicates.csv").open("w", encoding="utf-8", newline="")
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["event_id", "file", "line_no"])
        wr.writerows(self.dups)
        fh.close()

        by_reason: dict[str, dict[str, int]] = {}
        for source, _, _, reason in self.bad:
            by_reason.setdefault(source, {}).setdefault(reason, 0)
            by_reason[source][reason] += 1
        members, days, seed, end_date, stores, _dirty = params
        kinds = w.kind
        person_kinds = {
            KIND_NAMES[k]: int((persons_with_ids[: w.n_actors] & (kinds == k)).sum())
            for k in range(3)
        }
        person_kinds[KIND_NAMES[3]] = int(persons_with_ids[w.n_actors :].sum())
        summary = {
            "args": {
                "members": members,
                "days": days,
                "seed": seed,
                "end_date": end_date.isoformat(),
                "start_date": w.start.isoformat(),
                **({"stores": stores} if stores is not None else {}),
            },
            "persons": int(persons_with_ids.sum()),
            "persons_by_kind": person_kinds,
            "members": int((w.n_acct > 0).sum()),
            "crm_accounts": int(self.crm_seen.sum()),
            "identities": n_ids,
            "unlinkable_devices": int((self.dev_seen & ~self.dev_linked).sum()),
            **self.counts,
            "bad_rows_total": len(self.bad),
            "bad_rows": {s: dict(sorted(v.items())) for s, v in sorted(by_reason.items())},
            "duplicates": len(self.dups),
            "stores": len(w.store_ids),
            "store_encodings": {
                "gb18030": [w.extras["gb18030_store"]],
                "utf-8-sig": [w.extras["bom_store"]],
            },
            "quote_all_stores": [w.extras["quote_all_store"]],
            "stores_24h": w.extras["stores_24h"],
            "corrupt_files": self.corrupt,
            "placeholder_phone": str(ref.PLACEHOLDER_PHONE),
            "invalid_id_cards": len(bad_idc),
            "phone_changes": int((w.phone2 > 0).sum()),
            "duplicate_registrations": int((w.n_acct > 1).sum()),
            "per_day": self.per_day,
        }
        (truth / "summary.json").write_text(
            json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        return summary
