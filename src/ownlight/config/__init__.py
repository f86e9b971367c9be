"""Ownlight's settings: one TOML file, overridable by ``OWNLIGHT_*`` environment variables.

``settings`` declares every setting once, ``loading`` reads the file and the environment
into a :class:`Config`, ``reference`` prints them (the docs' table, ``ownlight config
show``), ``secrets`` resolves secret references, ``names`` walks the declarations.
"""

from ownlight.config.loading import (
           Config,
           ModelEntry,
           build_model_entry,
           load_config,
           upstream_entry,
)
from ownlight.config.names import SETTINGS
from ownlight.config.reference import effective_view, settings_table
from ownlight.config.secrets import Secret, parse_secret
from ownlight.config.settings import KnowledgeSettings, Settings

__all__ = ["SETTINGS", "Config", "KnowledgeSettings", "ModelEntry", "Secret", "Settings",
           "build_model_entry", "effective_view", "load_config", "parse_secret",
           "settings_table", "upstream_entry"]
