"""Reachability and preferred channel per member: ``gold/member_channels``.

For business date D, one row per member of silver/members (key member_id x as_of_date):

* ``sms_ok`` / ``email_ok`` / ``push_ok``: the member can be reached on the channel,
  i.e. consented to it AND has a usable contact for it (:func:`reachable`);
* ``main_channel``: where the member actually buys (store, web, app, miniprogram):
  the channel of most purchases in [D-364, D] in silver/orders, ties broken by the
  order of ``BEHAVIOUR_CHANNELS``; null without purchases;
* ``preferred_channel``: the campaign channel (sms, email, push) to reach them on:
  the first reachable one in the order their behaviour suggests (app and mini-program
  buyers: push; web: email; store: sms), else the first reachable one of sms, email,
  push; null when none is reachable.

Usable contacts (restricted/member_pii, never copied out): a mobile number that is an
11-digit PRC mobile ``1[3-9]xxxxxxxxx`` after removing separators and a leading 86, and
not on the phone deny-list of conf/identity.yaml; an e-mail of the form
``local@domain.tld`` whose address is not on the e-mail deny-list and whose domain is not
a placeholder domain of conf/segments.yaml (``reach.placeholder_email_domains``). Push
goes through the CRM account's app: a ``crm_id`` is enough.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext

BEHAVIOUR_CHANNELS = ("app", "miniprogram", "web", "store")
CONTACT_CHANNELS = ("sms", "email", "push")
# Campaign channels to try first, by where the member buys.
CHANNEL_ORDER_BY_BEHAVIOUR: dict[str, tuple[str, ...]] = {
    "app": ("push", "sms", "email"),
    "miniprogram": ("push", "sms", "email"),
    "web": ("email", "sms", "push"),
    "store": ("sms", "email", "push"),
}
DEFAULT_ORDER = CONTACT_CHANNELS
MOBILE_RE = r"^1[3-9][0-9]{9}$"
EMAIL_RE = r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"


def normalised_mobile(raw: Column) -> Column:
    """Digits only, a leading ``86`` country code removed (13 digits -> 11)."""
    digits = F.regexp_replace(raw, r"\D", "")
    return F.when(
        (F.length(digits) == 13) & digits.startswith("86"), F.substring(digits, 3, 11)
    ).otherwise(digits)


def usable_mobile(raw: Column, deny: list[str]) -> Column:
    """True when ``raw`` is an 11-digit PRC mobile not on the deny-list (never null)."""
    phone = normalised_mobile(raw)
    ok = phone.rlike(MOBILE_RE) & ~phone.isin(*deny) if deny else phone.rlike(MOBILE_RE)
    return F.coalesce(ok, F.lit(False))


def usable_email(raw: Column, deny: list[str], placeholder_domains: list[str]) -> Column:
    """True when ``raw`` looks deliverable: syntax, not deny-listed, no placeholder domain."""
    email = F.lower(F.trim(raw))
    domain = F.substring_index(email, "@", -1)
    ok = email.rlike(EMAIL_RE)
    if deny:
        ok &= ~email.isin(*[d.strip().lower() for d in deny])
    if placeholder_domains:
        ok &= ~domain.isin(*[d.strip().lower() for d in placeholder_domains])
    return F.coalesce(ok, F.lit(False))


def reachable(
    members: DataFrame,
    pii: DataFrame,
    phone_deny: list[str],
    email_deny: list[str],
    placeholder_domains: list[str],
) -> DataFrame:
    """One row per member_id of silver/members: consent flags, usable contacts, reachability.

    Columns: member_id, opt_in_sms/email/push (null as false), has_mobile, has_email,
    sms_ok, email_ok, push_ok (consent AND usable contact).
    """
    m = members.alias("m").join(
        pii.alias("p"), F.col("m.member_id") == F.col("p.member_id"), "left"
    )
    consent = {c: F.coalesce(F.col(f"m.opt_in_{c}"), F.lit(False)) for c in CONTACT_CHANNELS}
    has_mobile = usable_mobile(F.col("p.phone"), phone_deny)
    has_email = usable_email(F.col("p.email"), email_deny, placeholder_domains)
    has_app = F.col("m.crm_id").isNotNull()
    return m.select(
        F.col("m.member_id").alias("member_id"),
        *[consent[c].alias(f"opt_in_{c}") for c in CONTACT_CHANNELS],
        has_mobile.alias("has_mobile"),
        has_email.alias("has_email"),
        (consent["sms"] & has_mobile).alias("sms_ok"),
        (consent["email"] & has_email).alias("email_ok"),
        (consent["push"] & has_app).alias("push_ok"),
    )


def main_channel(orders: DataFrame, as_of: dt.date) -> DataFrame:
    """member_id -> main_channel: the channel of most purchases in [D-364, D].

    Input silver/orders (one order); ties go to the earlier of ``BEHAVIOUR_CHANNELS``.
    """
    start = as_of - dt.timedelta(days=364)
    rank = F.array_position(F.array(*[F.lit(c) for c in BEHAVIOUR_CHANNELS]), F.col("channel"))
    counts = (
        orders.where(F.col("is_purchase") & F.col("member_id").isNotNull())
        .where(F.col("order_date").between(F.lit(start), F.lit(as_of)))
        .where(F.col("channel").isin(*BEHAVIOUR_CHANNELS))
        .groupBy("member_id", "channel")
        .agg(F.count(F.lit(1)).alias("n"))
        # One numeric key per (member, channel): more purchases first, then the order.
        .withColumn("_key", F.col("n") * 10 - rank)
    )
    return counts.groupBy("member_id").agg(F.max_by("channel", "_key").alias("main_channel"))


def preferred(reach: DataFrame, main: DataFrame, as_of: dt.date) -> DataFrame:
    """gold/member_channels rows for D from :func:`reachable` and :func:`main_channel`."""
    df = reach.join(main, "member_id", "left")
    choice = F.lit(None).cast("string")
    for behaviour, order in [*CHANNEL_ORDER_BY_BEHAVIOUR.items(), (None, DEFAULT_ORDER)]:
        first = F.lit(None).cast("string")
        for channel in reversed(order):
            first = F.when(F.col(f"{channel}_ok"), F.lit(channel)).otherwise(first)
        cond = (
            F.col("main_channel").isNull()
            if behaviour is None
            else F.col("main_channel") == behaviour
        )
        choice = F.when(cond, first).otherwise(choice)
    return df.select(
        "member_id",
        F.lit(as_of).cast("date").alias("as_of_date"),
        "main_channel",
        choice.alias("preferred_channel"),
        "sms_ok",
        "email_ok",
        "push_ok",
    )


def member_channels(ctx: RunContext) -> DataFrame:
    """gold/member_channels for ctx.as_of from the lake (read only)."""
    from jobs.exports.segments import load_reach_conf
    from jobs.identity.conf import load_identity_conf

    deny = load_identity_conf().junk.deny_list
    reach_conf = load_reach_conf()
    lake = ctx.lake
    reach = reachable(
        lake.read("silver/members"),
        lake.read("restricted/member_pii"),
        deny.phone,
        deny.email,
        reach_conf.placeholder_email_domains,
    )
    return preferred(reach, main_channel(lake.read("silver/orders"), ctx.as_of), ctx.as_of)


def run(ctx: RunContext) -> dict:
    """Replace D's partition of gold/member_channels."""
    df = member_channels(ctx)
    ctx.lake.replace_where(df, "gold/member_channels", f"as_of_date = '{ctx.as_of.isoformat()}'")
    out = ctx.lake.read("gold/member_channels").where(F.col("as_of_date") == F.lit(ctx.as_of))
    counts = {
        r["preferred_channel"]: r["n"]
        for r in out.groupBy("preferred_channel").agg(F.count(F.lit(1)).alias("n")).collect()
    }
    return {"rows_out": sum(counts.values()), "preferred": {str(k): v for k, v in counts.items()}}
