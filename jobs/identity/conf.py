"""Configuration of identity resolution: `conf/identity.yaml`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from jobs.config import CONF_DIR, ConfigError, StrictModel, load_model


class DenyList(StrictModel):
    phone: list[str] = []
    email: list[str] = []
    id_card: list[str] = []
    card: list[str] = []


class OnePersonConf(StrictModel):
    """A holder of a junk value that corroborates nobody, when the holders that do are
    one person and nothing on it disagrees with them (rule one_person_<id_type>)."""

    enabled: bool = True
    confidence: Literal["high", "medium", "low"] = "medium"
    # A family's phone links no one: two people among the holders, or one that disagrees.
    id_types: list[Literal["phone", "email", "id_card", "card"]] = [
        "phone", "email", "id_card", "card",
    ]  # fmt: skip


class CorroborateConf(StrictModel):
    """Records sharing a junk value still link when they corroborate each other."""

    enabled: bool = True
    # Values held by more records than this are not compared pair by pair: junk for all.
    max_group_size: int = Field(50, ge=2)
    # Names of at least this many characters may differ by up to name_max_edits edits.
    min_name_length: int = Field(5, ge=1)
    name_max_edits: int = Field(1, ge=0)
    one_person: OnePersonConf = OnePersonConf()


class NeverLinkConf(StrictModel):
    """Pairs no rule may link (applied to corroborated and second-pass links)."""

    different_valid_id_cards: bool = True
    different_gender_and_birth_date: bool = True
    # A phone held by records whose names are no typo of each other (not equal, not the
    # same characters reordered, not within one edit) and whose birth dates differ (not
    # day/month swapped) is a family's: it links nothing by itself.
    shared_phone_different_name_and_birth_date: bool = True
    # ... or whose birth dates conflict (no typo or swap of each other), whatever the
    # names: a parent and a child of one name. Nor does such a name corroborate a pair.
    shared_phone_conflicting_birth_dates: bool = True
    # After clustering, a component holding such a pair is clustered again strongest
    # edge first, refusing each edge that would join the pair (a chain A-B, B-C).
    split_chains: bool = True
    # Edges a batch of those components sends to the driver (one bigger component: error).
    max_split_edges: int = Field(200_000, ge=1)


class JunkConf(StrictModel):
    max_crm_records_per_value: int = Field(3, ge=1)
    max_cards_per_phone: int = Field(3, ge=1)
    max_phone_orders_per_day: int = Field(8, ge=1)
    max_phones_per_card: int = Field(3, ge=1)
    deny_list: DenyList = DenyList()
    corroborate: CorroborateConf = CorroborateConf()


class WebConf(StrictModel):
    link_event_types: list[str] = ["login", "signup"]


class LinkedGroupsConf(StrictModel):
    """A name + birth date + city group above the cap that is few people once records
    already linked to each other count as one (rule name_dob_city_linked)."""

    enabled: bool = True
    confidence: Literal["high", "medium", "low"] = "medium"
    # Groups of more records than this are left alone (a person registers a handful of
    # times).
    max_records: int = Field(8, ge=2)


class LoneRecordsConf(StrictModel):
    """A record holding a name and a place (city, else birth date, else province) and
    nothing else links to the one person of its rare name there (rule lone_rare_name,
    jobs/identity/lone.py)."""

    enabled: bool = True
    confidence: Literal["high", "medium", "low"] = "low"
    # A name borne by more CRM records than this in the whole lake (any city) is too
    # common for a name and a place to tell who a record is.
    max_name_records: int = Field(8, ge=2)


class SecondPassConf(StrictModel):
    enabled: bool = True
    max_group_size: int = Field(3, ge=2)
    linked: LinkedGroupsConf = LinkedGroupsConf()
    lone: LoneRecordsConf = LoneRecordsConf()


Confidence = Literal["high", "medium", "low"]


class FuzzyBlocking(StrictModel):
    """Blocking keys of the fuzzy pass (jobs/identity/fuzzy.py: block_keys)."""

    # Birth date or city + the first letters of a name token.
    name_prefix_length: int = Field(2, ge=1)
    # City + the first digits of the canonical phone.
    phone_prefix_length: int = Field(7, ge=3)


class FuzzyComparisons(StrictModel):
    """How close two values must be to agree (character edit distances)."""

    # Latin names need this many characters before any edit is allowed ...
    name_min_length: int = Field(5, ge=1)
    # ... Han names this many (one character of a 2-3 character name is another person).
    han_min_length: int = Field(4, ge=2)
    han_max_edits: int = Field(1, ge=0)
    # Whole-name edits (either token order) of a close name and of a near one.
    name_close_edits: int = Field(1, ge=0)
    name_near_edits: int = Field(3, ge=0)
    # A first or last name token within this many edits of the other's (tokens this long).
    token_max_edits: int = Field(1, ge=0)
    token_min_length: int = Field(3, ge=1)
    # City names at least this long may differ by this many edits.
    city_min_length: int = Field(5, ge=1)
    city_max_edits: int = Field(2, ge=0)


class FuzzyRule(StrictModel):
    enabled: bool = True
    confidence: Confidence = "medium"


class AgreementsRule(FuzzyRule):
    # Of name (near), birth date, city and identifier (close): this many agree.
    min_agreements: int = Field(3, ge=2, le=4)
    # An identifier typo (an ID card, card or phone one edit apart; a shared junk value is
    # not enough) must be one of them: name,
    # birth date and city alone agree for many different people with a common name (two
    # 王伟 in one city born a typo apart are two people more often than one).
    require_identifier: bool = True
    confidence: Confidence = "low"


class FuzzyRules(StrictModel):
    """The fuzzy rules (fuzzy.RULES order; the first a pair meets names its edge)."""

    # Close name, same birth date, same city.
    name_dob_city: FuzzyRule = FuzzyRule()
    # Close name, close birth date (same, day/month swapped, one edit), close city.
    name_dob: FuzzyRule = FuzzyRule()
    # Close name, same birth date, same province (no city or another one).
    name_dob_province: FuzzyRule = FuzzyRule(confidence="low")
    # Close birth date and city, one name token within token_max_edits.
    dob_city_token: FuzzyRule = FuzzyRule()
    # Identifier one edit apart (or a shared junk value), one name token close, same
    # province or close birth date.
    identifier_token: FuzzyRule = FuzzyRule()
    # ID cards one edit apart (one fails its checksum), another field agrees (name,
    # birth date, city or province) and none present on both disagrees.
    id_card_typo: FuzzyRule = FuzzyRule()
    agreements: AgreementsRule = AgreementsRule()

    def get(self, rule: str) -> FuzzyRule:
        """The settings of rule ``fuzzy_<name>``."""
        return getattr(self, rule.removeprefix("fuzzy_"))


class FuzzyConf(StrictModel):
    """Fuzzy second pass (jobs/identity/fuzzy.py): blocking keys, comparisons, rules."""

    enabled: bool = True
    # Blocks larger than this are not compared.
    max_block_size: int = Field(50, ge=2)
    # Second-pass (fuzzy) edges join at most this many CRM records into one cluster.
    max_cluster_records: int = Field(8, ge=1)
    # A full run compares the candidate pairs in slices of at most this many, one query
    # each (0: all in one query): a query's memory grows with the pairs it compares.
    compare_slice_pairs: int = Field(4_000_000, ge=0)
    blocking: FuzzyBlocking = FuzzyBlocking()
    comparisons: FuzzyComparisons = FuzzyComparisons()
    rules: FuzzyRules = FuzzyRules()


# The Fellegi-Sunter comparisons of the scored pass and their levels, best first
# (jobs/identity/scored.py: levels). A missing value on either side is no level: the
# comparison is left out of that pair's weight.
FS_LEVELS: dict[str, tuple[str, ...]] = {
    "name": ("exact", "close", "near", "different"),
    "birth_date": ("exact", "close", "different"),
    "city": ("exact", "close", "province", "different"),
    "identifier": ("typo", "shared", "different"),
}


class LevelWeights(StrictModel):
    """m = P(level | same person), u = P(level | different people)."""

    m: float = Field(gt=0, le=1)
    u: float = Field(gt=0, le=1)


class ComparisonWeights(StrictModel):
    """One comparison's levels (jobs/identity/scored.py: COMPARISONS)."""

    levels: dict[str, LevelWeights]


class ScoredWeights(StrictModel):
    """Fellegi-Sunter weights written by ``cdp identity train`` (conf/identity_weights.yaml)."""

    trained_on: dt.date  # the business date of the lake it was trained on
    records: int = Field(ge=0)  # CRM records
    candidate_pairs: int = Field(ge=0)  # pairs EM was run over (m and prior)
    random_pairs: int = Field(ge=0)  # random pairs u was estimated from
    iterations: int = Field(ge=0)
    converged: bool
    max_change: float = Field(ge=0)  # largest parameter change of the last iteration
    # P(same person) of a candidate pair.
    prior: float = Field(gt=0, lt=1)
    comparisons: dict[str, ComparisonWeights]

    @model_validator(mode="after")
    def _every_level(self) -> ScoredWeights:
        """Exactly the comparisons and levels of FS_LEVELS (else the file is stale)."""
        got = {k: tuple(v.levels) for k, v in self.comparisons.items()}
        if got != FS_LEVELS:
            raise ValueError(f"comparisons and levels must be {FS_LEVELS}, got {got}")
        return self


class ScoredTrainConf(StrictModel):
    """EM training of ``cdp identity train``."""

    # u is estimated from random pairs among this many sampled records.
    random_records: int = Field(1000, ge=10)
    max_iterations: int = Field(200, ge=1)
    tolerance: float = Field(1e-6, gt=0)
    seed: int = 17


class ScoredConf(StrictModel):
    """Optional scored pass (jobs/identity/scored.py): a Fellegi-Sunter model over the
    fuzzy pass's comparisons of its candidate pairs."""

    enabled: bool = False
    # Link a pair the rules do not when P(same person) is at least this.
    threshold: float = Field(0.99999, gt=0.5, lt=1)
    confidence: Confidence = "low"
    # File under conf/ that ``cdp identity train`` writes and the scored pass reads.
    weights_file: str = "identity_weights.yaml"
    train: ScoredTrainConf = ScoredTrainConf()
    # Filled from weights_file when the conf is loaded with the pass enabled.
    weights: ScoredWeights | None = None


class BreakerConf(StrictModel):
    enabled: bool = True
    max_change_share: float = Field(0.01, ge=0, le=1)
    min_changes: int = Field(10, ge=0)
    report_top: int = Field(5, ge=1)


class ComponentsConf(StrictModel):
    max_rounds: int = Field(60, ge=1)
    # A graph of at most this many edges is solved on the driver in one query (0: never).
    local_max_edges: int = Field(30_000_000, ge=0)


class IdentityConf(StrictModel):
    # Re-read only new bronze days and re-cluster only touched components (job.py).
    incremental: bool = True
    junk: JunkConf = JunkConf()
    web: WebConf = WebConf()
    second_pass: SecondPassConf = SecondPassConf()
    never_link: NeverLinkConf = NeverLinkConf()
    fuzzy: FuzzyConf = FuzzyConf()
    scored: ScoredConf = ScoredConf()
    circuit_breaker: BreakerConf = BreakerConf()
    components: ComponentsConf = ComponentsConf()


def load_identity_weights(conf_dir: Path | None = None) -> ScoredWeights | None:
    """conf/identity_weights.yaml (``cdp identity train``), validated; None when no
    training wrote one (the scored pass is off by default)."""
    if not ((conf_dir or CONF_DIR) / "identity_weights.yaml").exists():
        return None
    return load_model("identity_weights.yaml", ScoredWeights, conf_dir)


def load_identity_conf_without_weights(conf_dir: Path | None = None) -> IdentityConf:
    """conf/identity.yaml alone (``cdp identity train`` writes the weights file)."""
    return load_model("identity.yaml", IdentityConf, conf_dir)


def load_identity_conf(conf_dir: Path | None = None) -> IdentityConf:
    """conf/identity.yaml, with the scored pass's weights file when the pass is enabled
    (a clear error when it is missing: run ``cdp identity train``)."""
    conf = load_identity_conf_without_weights(conf_dir)
    if not conf.scored.enabled or conf.scored.weights is not None:
        return conf
    path = (conf_dir or CONF_DIR) / conf.scored.weights_file
    if not path.exists():
        raise ConfigError(
            f"{path}: missing; scored.enabled needs the weights `cdp identity train` writes"
        )
    weights = load_model(conf.scored.weights_file, ScoredWeights, conf_dir)
    return conf.model_copy(update={"scored": conf.scored.model_copy(update={"weights": weights})})
