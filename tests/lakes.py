"""Lakes a test module builds once and its tests share, or copy when they must change one.

A pipeline or identity run on Sail costs seconds whatever the size (per-query overhead),
so a module builds a lake once (a ``scope="module"`` fixture) and a test that writes to it
works on a copy of its folder (:func:`copy_base`), not on a lake built again.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from jobs.config import Settings, load_settings, with_paths


def settings_at(base: Path) -> Settings:
    """Settings with every location under ``base`` (landing, lake, exports, work) and the
    lake's key in ``base/work/pii.key``, as tests/conftest.py's ``settings`` fixture makes
    them; a key file already there (a copied base) is kept."""
    s = with_paths(
        load_settings(env={}),
        landing=base / "landing",
        lake=base / "lake",
        exports=base / "exports",
        work=base / "work",
    )
    key_file = base / "work" / "pii.key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_hex(32))
    privacy = s.privacy.model_copy(update={"key_file": key_file})
    return s.model_copy(update={"privacy": privacy})


def copy_base(source: Path, target: Path) -> Settings:
    """A copy of the folder ``source`` (lake, work and key included) at ``target``, and the
    settings that point at the copy."""
    shutil.copytree(source, target)
    return settings_at(target)
