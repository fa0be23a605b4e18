"""The second pass (name_dob_city and the fuzzy rules) of an incremental night, over the
records the night touches only (issue 16 item 7, issue 17 item 1).

A second-pass edge joins two CRM records x, y. Whether it exists and with which rule
depends on their latest versions (name, birth date, city, identifiers: the fuzzy
profile), on their first-pass edges (a pair already sharing a value node gets none), on
the groups they share (name + birth date + city, a blocking key, a junk value) and the
size of those groups, and on whether name_dob_city already links them. So a pair of
records neither of which the night touched keeps yesterday's edge, unless one of its
groups changed size across a cap. The *touched* records are

* the records with a version on a new business date (their profile may differ),
* the records whose first-pass edges (source ``crm``) changed (blocked values,
  corrections, corroborated pairs),
* the ends of a junk-value pair (records sharing a junk value, in groups under
  ``junk.corroborate.max_group_size``) that appeared or went since yesterday
  (``meta/identity_junk_pairs``, written by the identity step);

the name + birth date + city groups holding a touched record today or yesterday are
recomputed whole, and the ends of a name_dob_city pair that changed are touched for the
fuzzy pass too. The fuzzy pass then compares the candidate pairs with a touched end,
and every pair of a blocking key that shrank under ``fuzzy.max_block_size`` since
yesterday (yesterday's size: today's, less the touched records' keys today, plus their
keys yesterday); every other pair keeps yesterday's edge. A key that grew over the cap
and held a pair linked yesterday makes its members touched (``SecondPass._blocks``).
Yesterday's second-pass edges are the pre-refusal edges the chain check keeps
(silver/identity_edges plus meta/identity_refused), so the result is exactly a full
recompute's.

A night that touches no record runs no comparison and takes yesterday's edges. The
scored pass, a missing or foreign junk-pair state, a re-sent or erased CRM date (no
chain state to trust) fall back to the full pass (figure ``second_pass_reason``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.columns import any_true
from jobs.identity.conf import IdentityConf
from jobs.identity.corroborate import crm_profiles, pairs_within
from jobs.identity.fuzzy import block_keys, compare, fuzzy_profiles, labelled_pairs, rule_edges
from jobs.identity.graph import (
    EDGE_COLUMNS,
    SecondPassInputs,
    _second_pass,
    crm_identifiers,
    full_second_pass,
    latest_crm_versions,
    name_dob_city_edges,
    name_dob_city_keys,
)
from jobs.identity.setops import symmetric_difference
from jobs.lake import Lake, Materialise

JUNK_PAIRS = "meta/identity_junk_pairs"
SECOND_TABLES = (JUNK_PAIRS,)
NDC_RULES = ("name_dob_city", "name_dob_city_linked")


@dataclass
class SecondPrevious:
    """What the last run left, for an incremental second pass."""

    edges: DataFrame  # one pre-refusal edge of the last run: EDGE_COLUMNS
    junk_pairs: DataFrame  # one (x, y) pair sharing a junk value, last run
    new_crm: DataFrame  # one CRM record with a version on a touched date: crm_key
    crm_before: DataFrame  # the row versions of those records the last run saw (bronze)


def read_junk_pairs(lake: Lake) -> DataFrame:
    """The last run's junk pairs (edge-shaped in the table, so `cdp forget` finds its
    records) as one (x, y)."""
    return lake.read(JUNK_PAIRS).select(F.col("src_key").alias("x"), F.col("dst_key").alias("y"))


def _ends(pairs: DataFrame, x: str = "x", y: str = "y") -> DataFrame:
    """Both ends of each pair as ``crm_id``, from one read of ``pairs`` (often a
    symmetric difference: a read of two whole tables)."""
    return pairs.select(F.explode(F.array(F.col(x), F.col(y))).alias("crm_id"))


def _pairs_of(edges: DataFrame) -> DataFrame:
    return edges.select(F.col("src_key").alias("x"), F.col("dst_key").alias("y"))


def _end_in(pairs: DataFrame, records: DataFrame, x: str, y: str, either: bool = True) -> DataFrame:
    """``pairs`` with ``x`` or ``y`` among ``records`` (one crm_id); with ``either``
    False, those with neither end among them."""
    ids = records.select("crm_id").withColumn("_in", F.lit(True))
    hit = F.col("_ix").isNotNull() | F.col("_iy").isNotNull()
    return (
        pairs.join(ids.withColumnRenamed("crm_id", x).withColumnRenamed("_in", "_ix"), x, "left")
        .join(ids.withColumnRenamed("crm_id", y).withColumnRenamed("_in", "_iy"), y, "left")
        .filter(hit if either else ~hit)
        .drop("_ix", "_iy")
    )


def _crm_out_edges(edges: DataFrame) -> DataFrame:
    """(crm record, value node) of first-pass edges, what sharing a value reads; a pair
    repeats once per rule linking it (symmetric_difference groups them anyway: a DISTINCT
    of each side first cost a grouping of millions of edges more)."""
    return edges.filter((F.col("src_source") == "crm") & ~_second_pass(F.col("rule"))).select(
        "src_key", "dst_source", "dst_key"
    )


def pairs_sharing_a_value(kept: DataFrame, records: DataFrame) -> DataFrame:
    """Pairs of CRM records sharing a value node with an end among ``records`` (one
    crm_id): :func:`jobs.identity.graph.shared_value_pairs` restricted to those pairs.
    Output grain: one (x, y), x < y."""
    ce = kept.filter(F.col("src_source") == "crm").select(
        F.col("src_key").alias("c"), "dst_source", "dst_key"
    )
    mine = ce.join(records.select(F.col("crm_id").alias("c")), "c", "left_semi")
    # The values the records hold are few (a night's): broadcast, every CRM edge is only
    # streamed past them rather than joined whole.
    values = F.broadcast(mine.select("dst_source", "dst_key").distinct())
    theirs = ce.join(values, ["dst_source", "dst_key"], "left_semi")
    joined = mine.alias("p").join(theirs.alias("q"), ["dst_source", "dst_key"])
    return (
        joined.filter(F.col("p.c") != F.col("q.c"))
        .select(F.least("p.c", "q.c").alias("x"), F.greatest("p.c", "q.c").alias("y"))
        .distinct()
    )


def _keys_of(fp: DataFrame, records: DataFrame, conf: IdentityConf) -> DataFrame:
    """The blocking keys ``records`` (one crm_id) hold today: one ``block``."""
    return block_keys(fp.join(records, "crm_id", "left_semi"), conf).select("block").distinct()


def _members(fp: DataFrame, keys: DataFrame, conf: IdentityConf) -> DataFrame:
    """Every record's (crm_id, block) of the blocking keys ``keys`` (one block)."""
    return block_keys(fp, conf, wanted=keys.select("block").distinct())


def crossed_blocks(
    blocks: DataFrame, seeds: DataFrame, seed_blocks_before: DataFrame, conf: IdentityConf
) -> DataFrame:
    """The blocking keys holding a seed today or yesterday whose size crossed
    fuzzy.max_block_size since yesterday (yesterday's members: today's less the seeds'
    keys today plus their keys yesterday). Inputs: ``blocks`` one (crm_id, block) of
    today, every member of each block it holds; ``seeds`` one crm_id;
    ``seed_blocks_before`` the seeds' (crm_id, block) as the last run saw them.
    Output grain: one block; ``grew`` (over the cap today, under it yesterday)."""
    now = blocks.join(seeds, "crm_id", "left_semi").select("block", F.lit(-1).alias("d"))
    then = seed_blocks_before.select("block", F.lit(1).alias("d"))
    delta = now.unionByName(then).groupBy("block").agg(F.sum("d").alias("d"))
    sizes = blocks.join(delta, "block").groupBy("block", "d").agg(F.count(F.lit(1)).alias("n"))
    limit = conf.fuzzy.max_block_size
    crossed = sizes.filter((F.col("n") <= limit) != (F.col("n") + F.col("d") <= limit))
    return crossed.select("block", (F.col("n") > limit).alias("grew"))


def lost_edges(
    fuzzy: DataFrame, blocks: DataFrame, crossed: DataFrame, touched: DataFrame
) -> DataFrame:
    """Yesterday's fuzzy edges between two untouched records of a block that grew over
    the cap: such a pair may have lost its only small block (whether it shares another
    needs every record's keys). Inputs: ``fuzzy`` yesterday's fuzzy edges; ``blocks``
    and ``crossed`` as :func:`crossed_blocks`; ``touched`` one crm_id.
    Output grain: one (src_key, dst_key, block)."""
    grown = blocks.join(crossed.filter(F.col("grew")).select("block"), "block", "left_semi")
    pairs = fuzzy.select("src_key", "dst_key")
    in_grown = pairs.join(grown.select("block", F.col("crm_id").alias("src_key")), "src_key").join(
        grown.select("block", F.col("crm_id").alias("dst_key")), ["dst_key", "block"]
    )
    return _end_in(in_grown, touched, "src_key", "dst_key", either=False)


def shrunk_pairs(blocks: DataFrame, crossed: DataFrame) -> DataFrame:
    """Every pair of records sharing a block that shrank under the cap since yesterday:
    each is a candidate now, whether or not either end was touched. Inputs as
    :func:`crossed_blocks`. Output grain: one (x, y), x < y (may repeat)."""
    shrunk = blocks.join(crossed.filter(~F.col("grew")).select("block"), "block", "left_semi")
    return pairs_within(shrunk, ["block"]).select(
        F.col("a.crm_id").alias("x"), F.col("b.crm_id").alias("y")
    )


def pairs_with_touched(blocks: DataFrame, touched: DataFrame, max_size: int) -> DataFrame:
    """The pairs of records sharing a block of at most ``max_size`` records with an end
    among ``touched``: the pairs of ``pairs_within(blocks, ["block"], max_size)`` with
    such an end, without making the others. Each touched record's block rows are joined
    to the block's members: a block of 40 with one touched record gives 39 pairs, not
    780 to be filtered. (At 1M members a night's pairs took under 1 s either way: what
    the stage ``second_pairs`` used to show was the blocks of the records whose block
    crossed the cap, now ``fuzzy_blocks_crossing``.)
    Inputs: ``blocks`` one (crm_id, block), read three times (materialise it);
    ``touched`` one crm_id. Output: (x, y), x < y, a pair once per block it shares and
    per touched end (the caller groups them)."""
    sizes = blocks.groupBy("block").agg(F.count(F.lit(1)).alias("n"))
    small = sizes.filter((F.col("n") >= 2) & (F.col("n") <= max_size)).select("block")
    mine = blocks.join(touched.select("crm_id"), "crm_id", "left_semi").join(
        small, "block", "left_semi"
    )
    others = blocks.select("block", F.col("crm_id").alias("other"))
    joined = mine.join(others, "block").filter(F.col("crm_id") != F.col("other"))
    return joined.select(
        F.least("crm_id", "other").alias("x"), F.greatest("crm_id", "other").alias("y")
    )


class SecondPass:
    """``second_pass`` for jobs.identity.graph.build_graph: the full pass without a
    previous state, else the pass over the touched records only. Keeps what
    :meth:`to_count` and :meth:`save` need afterwards."""

    def __init__(self, previous: SecondPrevious | None, key: bytes, why: str) -> None:
        self.previous = previous
        self.key = key
        self.reason = why  # why the full pass runs (or "ok")
        self.junk_pairs: DataFrame | None = None  # one (x, y): this run's junk pairs
        self.touched: DataFrame | None = None  # one crm_id the fuzzy pass compares
        self.pairs: DataFrame | None = None  # one (x, y) compared (incremental only)
        self.skipped = False
        self.crossing = "none"  # how blocks that crossed the cap were handled

    def __call__(
        self, inp: SecondPassInputs, conf: IdentityConf, mat: Materialise
    ) -> tuple[DataFrame, DataFrame | None]:
        """(second-pass edges, vetoed scored pairs), as jobs.identity.graph.full_second_pass."""
        # Not materialised: a projection of the junk candidates, read by few queries.
        self.junk_pairs = inp.junk_cands.select("x", "y").distinct()
        if self.previous is None or conf.scored.enabled or not conf.fuzzy.enabled:
            if self.previous is not None:
                self.reason = "scored pass on or fuzzy pass off"
            self.previous = None
            return full_second_pass(inp, conf, mat)
        prev = self.previous
        before = prev.edges.filter(_second_pass(F.col("rule"))).select(*EDGE_COLUMNS)
        seeds = mat(self._seeds(inp, prev), "second_seeds")
        if not seeds.take(1):
            self.skipped = True
            self.touched = seeds
            return before, None
        before = mat(before, "second_before")  # read by both rules' parts
        crm_before, fp_before = self._before(prev, seeds, mat)
        ndc, ndc_changed = self._name_dob_city(inp, crm_before, before, seeds, conf, mat)
        fp = mat(fuzzy_profiles(inp.latest, inp.profiles, inp.crm_ids), "fuzzy_profiles")
        near = seeds.unionByName(_ends(ndc_changed))
        fuzzy = before.filter(F.col("rule").startswith("fuzzy_"))
        members, touched, regrouped = self._blocks(fp, fp_before, near, seeds, fuzzy, conf, mat)
        self.touched = touched
        pairs = self._candidate_pairs(inp, members, touched, regrouped, ndc, conf)
        pairs = mat(pairs, "second_pairs")
        self.pairs = pairs
        # Not materialised as the full pass's are: a night's few pairs (1M members: the
        # same 3.6 s either way, for a query more).
        new = rule_edges(labelled_pairs(compare(pairs, fp, conf), conf))
        old = _end_in(fuzzy, touched, "src_key", "dst_key", either=False)
        if regrouped is not None:  # compared again: their edges are among the new
            again = regrouped.select(F.col("x").alias("src_key"), F.col("y").alias("dst_key"))
            old = old.join(again, ["src_key", "dst_key"], "left_anti")
        edges = ndc.unionByName(old.select(*EDGE_COLUMNS)).unionByName(new.select(*EDGE_COLUMNS))
        return edges, None

    def _blocks(
        self,
        fp: DataFrame,
        fp_before: DataFrame,
        near: DataFrame,
        seeds: DataFrame,
        fuzzy_before: DataFrame,
        conf: IdentityConf,
        mat: Materialise,
    ) -> tuple[DataFrame, DataFrame, DataFrame | None]:
        """(members, touched, regrouped): every (crm_id, block) of the blocks the touched
        records hold, the touched records (one crm_id: ``near``, the seeds and the ends
        of a changed name_dob_city pair) and the pairs of untouched records compared
        again (one (x, y), or None).

        Every record's blocking keys are made once, for the blocks ``near`` holds today
        or the seeds held yesterday (millions of rows, computed again where needed
        rather than written: only the keys of a few records are ever kept). A block that
        crossed the cap since yesterday changes which of its pairs are candidates. One
        that shrank under it makes each of its pairs one (``regrouped``); one that grew
        over it unmakes them, which matters only for a pair linked yesterday that may
        share no other small block: then, alone, the block's members are touched and
        every record's keys are made a second time for their blocks
        (``fuzzy_blocks_crossing``, figure ``second_pass_crossing`` = touched)."""
        # The seeds' profiles as the last run saw them, written: a few rows, but a long
        # plan (their versions, identifiers and profiles again) that block_keys reads
        # once per key family (written as keys instead: 0.6 -> 2.1 s at 1M members).
        # Their keys are made again by each of the three queries reading them.
        blocks_before = block_keys(mat(fp_before, "fuzzy_profiles_before"), conf)
        touched = mat(near.distinct(), "second_touched")
        near_keys = _keys_of(fp, touched, conf).unionByName(blocks_before.select("block"))
        near_blocks = mat(_members(fp, near_keys, conf), "fuzzy_blocks_near")
        # Not materialised: a grouping of the near blocks' rows, read again only when a
        # block crossed the cap (one execution fewer on every other night).
        crossed = crossed_blocks(near_blocks, seeds, blocks_before, conf)
        if not crossed.take(1):
            self.crossing = "none"
            return near_blocks, touched, None
        if not lost_edges(fuzzy_before, near_blocks, crossed, touched).take(1):
            self.crossing = "regrouped"
            regrouped = mat(shrunk_pairs(near_blocks, crossed).distinct(), "second_regrouped")
            return near_blocks, touched, regrouped
        self.crossing = "touched"
        crossing = near_blocks.join(crossed.select("block"), "block", "left_semi")
        touched = near.unionByName(crossing.select("crm_id")).distinct()
        touched = mat(touched, "second_touched_crossing")
        members = mat(_members(fp, _keys_of(fp, touched, conf), conf), "fuzzy_blocks_crossing")
        return members, touched, None

    def _seeds(self, inp: SecondPassInputs, prev: SecondPrevious) -> DataFrame:
        """Records with a new version, changed first-pass edges or a changed junk pair."""
        edges = symmetric_difference(_crm_out_edges(inp.kept), _crm_out_edges(prev.edges))
        assert self.junk_pairs is not None
        junk = symmetric_difference(self.junk_pairs, prev.junk_pairs)
        return (
            prev.new_crm.select(F.col("crm_key").alias("crm_id"))
            .unionByName(edges.select(F.col("src_key").alias("crm_id")))
            .unionByName(_ends(junk))
            .distinct()
        )

    def _before(
        self, prev: SecondPrevious, seeds: DataFrame, mat: Materialise
    ) -> tuple[DataFrame, DataFrame]:
        """The seeds' latest versions and fuzzy profiles as the last run saw them.

        The seeds' versions are written once (a few thousand rows): their identifiers,
        profiles and latest flags each read them, and inlined each read picked them out
        of every CRM version again (1M members: the keys of the night's seeds as the
        last run saw them, ``fuzzy_blocks_before``, took 2.7 s)."""
        crm = prev.crm_before.join(
            seeds.select(F.col("crm_id").alias("crm_key")), "crm_key", "left_semi"
        ).drop("crm_key", "is_latest")
        crm = mat(crm, "second_crm_before")
        flagged = latest_crm_versions(crm)
        ids = crm_identifiers(flagged, self.key)
        latest = flagged.filter(F.col("is_latest"))
        return flagged, fuzzy_profiles(latest, crm_profiles(latest, ids), ids)

    def _name_dob_city(
        self,
        inp: SecondPassInputs,
        crm_before: DataFrame,
        before: DataFrame,
        seeds: DataFrame,
        conf: IdentityConf,
        mat: Materialise,
    ) -> tuple[DataFrame, DataFrame]:
        """(name_dob_city edges of today, the pairs (x, y) whose edge came or went).

        The groups holding a seed today or yesterday are recomputed whole; every other
        group keeps yesterday's edges."""
        keys = name_dob_city_keys(inp.crm)
        seed_ids = seeds.select(F.col("crm_id").alias("crm_id"))
        groups = (
            keys.join(seed_ids, "crm_id", "left_semi").select("nk")
            .unionByName(name_dob_city_keys(crm_before).select("nk"))
            .distinct()
        )  # fmt: skip
        members = mat(keys.join(groups, "nk", "left_semi").select("crm_id"), "ndc_members")
        affected = members.unionByName(seed_ids).distinct()
        # The groups' rows materialised, each a few thousand: name_dob_city_edges reads
        # them several times, and with the semi-joins inlined it took 7.5 s at 1M members
        # (a night) against 0.5 s for the two subsets and 0.5 s for the edges.
        crm_ids = members.select(F.col("crm_id").alias("crm_key"))
        crm = mat(inp.crm.join(crm_ids, "crm_key", "left_semi"), "ndc_crm")
        kept_ids = members.select(F.col("crm_id").alias("src_key"))
        kept = mat(inp.kept.join(kept_ids, "src_key", "left_semi"), "ndc_kept")
        profiles = inp.profiles.join(members, "crm_id", "left_semi")
        fresh = mat(name_dob_city_edges(crm, kept, conf, profiles), "name_dob_city")
        old = before.filter(F.col("rule").isin(*NDC_RULES))
        replaced = _end_in(old, affected, "src_key", "dst_key")
        unchanged = _end_in(old, affected, "src_key", "dst_key", either=False)
        ndc = unchanged.select(*EDGE_COLUMNS).unionByName(fresh.select(*EDGE_COLUMNS))
        changed = symmetric_difference(_pairs_of(replaced), _pairs_of(fresh))
        return ndc, changed

    def _candidate_pairs(
        self,
        inp: SecondPassInputs,
        members: DataFrame,
        touched: DataFrame,
        regrouped: DataFrame | None,
        ndc: DataFrame,
        conf: IdentityConf,
    ) -> DataFrame:
        """jobs.identity.fuzzy.candidate_pairs with a touched end, and the ``regrouped``
        pairs (one (x, y), or None), less the pairs sharing a value node or linked by
        name_dob_city. Output grain: one (x, y), x < y; shares_junk."""
        assert self.junk_pairs is not None
        within = pairs_with_touched(members, touched, conf.fuzzy.max_block_size)
        all_junk = self.junk_pairs.select("x", "y", F.lit(True).alias("j"))
        junk = _end_in(all_junk, touched, "x", "y")
        records = touched.select("crm_id")
        if regrouped is not None:
            within = within.unionByName(regrouped.select("x", "y"))
            junk = junk.unionByName(all_junk.join(regrouped, ["x", "y"], "left_semi"))
            records = records.unionByName(_ends(regrouped)).distinct()
        both = within.withColumn("j", F.lit(False)).unionByName(junk)
        shared = pairs_sharing_a_value(inp.kept, records).unionByName(_pairs_of(ndc))
        return (
            both.groupBy("x", "y")
            .agg(any_true(F.col("j")).alias("shares_junk"))
            .join(shared, ["x", "y"], "left_anti")
        )

    def to_count(self, lake: Lake) -> dict[str, DataFrame]:
        """Frames for the caller's one counting query: the records compared
        (``second_touched``), the pairs compared (``second_pairs``) and the junk pairs
        that changed (``second_junk_changed``, when :meth:`save` must write)."""
        assert self.junk_pairs is not None
        out: dict[str, DataFrame] = {}
        if self.touched is not None:
            out["second_touched"] = self.touched
        if self.pairs is not None:
            out["second_pairs"] = self.pairs
        if self.previous is not None and lake.exists(JUNK_PAIRS):
            prev = read_junk_pairs(lake)
            out["second_junk_changed"] = symmetric_difference(self.junk_pairs, prev)
        return out

    def save(self, lake: Lake, counts: dict[str, int]) -> dict[str, int]:
        """Write this run's junk pairs when they changed (or the state is new)."""
        assert self.junk_pairs is not None
        changed = counts.get("second_junk_changed", -1)
        if changed:
            pairs = self.junk_pairs.select(
                F.lit("crm").alias("src_source"), F.col("x").alias("src_key"),
                F.lit("crm").alias("dst_source"), F.col("y").alias("dst_key"),
            )  # fmt: skip
            lake.overwrite(pairs, JUNK_PAIRS)
        return {JUNK_PAIRS: changed}

    def figures(self, counts: dict[str, int]) -> dict:
        """The run's second-pass figures (mode, why, records and pairs compared)."""
        if self.previous is None:
            return {"second_pass": "full", "second_pass_reason": self.reason}
        return {
            "second_pass": "skipped" if self.skipped else "incremental",
            "second_pass_reason": self.reason,
            "second_pass_records": counts.get("second_touched", 0),
            "second_pass_pairs": counts.get("second_pairs", 0),
            "second_pass_crossing": self.crossing,
        }
