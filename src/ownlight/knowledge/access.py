"""Access lists: parse and check entries, and the SQL that says what a principal may read.

Access control is data applied inside the search query (the datasette/Onyx shape):
every chunk carries an *access class* id — its collection, its document's access list
and its owner — and both the lexical and the vector query keep only chunks whose class
is in ``READABLE_CLASSES_SQL`` *before* ranking and limiting. Results are never dropped
afterwards, so a limit, a score or a count can never hint at a hidden document.
"""

from __future__ import annotations

import re

from ownlight.errors import InvalidRequest

PUBLIC = "public"
_ENTRY = re.compile(r"^(user|group):[^\s:][^\s]*$")

#: Ids of the access classes the principal may read in the requested collections.
#: Parameters: :tenant, :collections (JSON array of names), :identities (JSON array).
READABLE_CLASSES_SQL = """
SELECT a.id FROM access_classes a
JOIN collections c ON c.id = a.collection_id
WHERE c.tenant = :tenant
  AND c.name IN (SELECT value FROM json_each(:collections))
  AND (
    EXISTS (SELECT 1 FROM access_members m
            WHERE m.class_id = a.id
              AND m.identity IN (SELECT value FROM json_each(:identities)))
    OR EXISTS (SELECT 1 FROM collection_grants g
               WHERE g.collection_id = a.collection_id
                 AND g.identity IN (SELECT value FROM json_each(:identities)))
  )
"""

#: The same rule for the PostgreSQL knowledge store (``postgres_store.py``), over its
#: ``knowledge_*`` tables. Parameters: %(tenant)s, %(collections)s and %(identities)s
#: (text arrays).
READABLE_CLASSES_POSTGRES = """
SELECT a.id FROM knowledge_classes a
JOIN knowledge_collections c ON c.id = a.collection_id
WHERE c.tenant = %(tenant)s
  AND c.name = ANY(%(collections)s::text[])
  AND (
    EXISTS (SELECT 1 FROM knowledge_members m
            WHERE m.class_id = a.id AND m.identity = ANY(%(identities)s::text[]))
    OR EXISTS (SELECT 1 FROM knowledge_grants g
               WHERE g.collection_id = a.collection_id
                 AND g.identity = ANY(%(identities)s::text[]))
  )
"""


def normalize_entry(entry: str) -> str:
    """``user:alice`` / ``group:finance`` / ``public``; anything else is refused."""
    value = entry.strip()
    if value.lower() == PUBLIC:
        return PUBLIC
    if not _ENTRY.match(value):
        raise InvalidRequest(
            f"invalid access entry {entry!r}: use user:NAME, group:NAME or public",
            param="allow",
        )
    return value


def normalize_list(entries: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A sorted, duplicate-free access list (so equal lists share one access class)."""
    return tuple(sorted({normalize_entry(e) for e in entries}))


def members(allow: tuple[str, ...], owner: str | None) -> tuple[str, ...]:
    """Identities that may read: the list plus the owner (an empty list: only the owner)."""
    extra = (f"user:{owner}",) if owner else ()
    return tuple(sorted(set(allow) | set(extra)))
