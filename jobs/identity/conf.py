"""Configuration of identity resolution: `conf/identity.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from jobs.config import StrictModel, load_model


class DenyList(StrictModel):
    phone: list[str] = []
    email: list[str] = []
    id_card: list[str] = []
    card: list[str] = []


class CorroborateConf(StrictModel):
    """Records sharing a junk value still link when they corroborate each other."""

    enabled: bool = True
    # Values held by more records than this are not compared pair by pair: junk for all.
    max_group_size: int = Field(50, ge=2)
    # Names of at least this many characters may differ by up to name_max_edits edits.
    min_name_length: int = Field(5, ge=1)
    name_max_edits: int = Field(1, ge=0)


class NeverLinkConf(StrictModel):
    """Pairs no rule may link (applied to corroborated and second-pass links)."""

    different_valid_id_cards: bool = True
    different_gender_and_birth_date: bool = True


class JunkConf(StrictModel):
    max_crm_records_per_value: int = Field(3, ge=1)
    max_cards_per_phone: int = Field(3, ge=1)
    max_phone_orders_per_day: int = Field(8, ge=1)
    max_phones_per_card: int = Field(3, ge=1)
    deny_list: DenyList = DenyList()
    corroborate: CorroborateConf = CorroborateConf()


class WebConf(StrictModel):
    link_event_types: list[str] = ["login", "signup"]


class SecondPassConf(StrictModel):
    enabled: bool = True
    max_group_size: int = Field(3, ge=2)


class FuzzyConf(StrictModel):
    """Fuzzy second pass (jobs/identity/fuzzy.py): same birth date and city, names close."""

    enabled: bool = True
    # Blocks (birth date + city) larger than this are not compared.
    max_block_size: int = Field(50, ge=2)
    confidence: Literal["high", "medium", "low"] = "medium"


class BreakerConf(StrictModel):
    enabled: bool = True
    max_change_share: float = Field(0.01, ge=0, le=1)
    min_changes: int = Field(10, ge=0)
    report_top: int = Field(5, ge=1)


class ComponentsConf(StrictModel):
    max_rounds: int = Field(60, ge=1)


class IdentityConf(StrictModel):
    # Re-read only new bronze days and re-cluster only touched components (job.py).
    incremental: bool = True
    junk: JunkConf = JunkConf()
    web: WebConf = WebConf()
    second_pass: SecondPassConf = SecondPassConf()
    never_link: NeverLinkConf = NeverLinkConf()
    fuzzy: FuzzyConf = FuzzyConf()
    circuit_breaker: BreakerConf = BreakerConf()
    components: ComponentsConf = ComponentsConf()


def load_identity_conf(conf_dir: Path | None = None) -> IdentityConf:
    return load_model("identity.yaml", IdentityConf, conf_dir)
