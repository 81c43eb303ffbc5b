"""The SQLite store's schema: the migrations that build it, and the version they reach."""

from typing import Final

# Each entry upgrades the schema by one version; the index + 1 is the version
# it produces. Never edit a released entry: append a new one.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE conversations (
            conversation_id   TEXT PRIMARY KEY,
            provider          TEXT NOT NULL,
            model             TEXT NOT NULL,
            instructions      TEXT,
            cwd               TEXT,
            metadata          TEXT,
            ephemeral         INTEGER NOT NULL DEFAULT 0,
            temperature       REAL,
            max_output_tokens INTEGER,
            created_at        TEXT NOT NULL,
            updated_at        TEXT NOT NULL,
            forked_from       TEXT,
            history_length    INTEGER NOT NULL DEFAULT 0,
            last_seq          INTEGER NOT NULL DEFAULT 0,
            preview           TEXT
        )
        """,
        # listConversations walks this index backwards: newest first, keyset paging.
        "CREATE INDEX conversations_by_update ON conversations (updated_at, conversation_id)",
        # An ordinary rowid table (not WITHOUT ROWID): items can be large tool
        # outputs, which WITHOUT ROWID tables store badly.
        """
        CREATE TABLE items (
            conversation_id TEXT NOT NULL,
            idx             INTEGER NOT NULL,
            json            TEXT NOT NULL,
            PRIMARY KEY (conversation_id, idx)
        )
        """,
        """
        CREATE TABLE leases (
            conversation_id TEXT PRIMARY KEY,
            owner_pid       INTEGER NOT NULL,
            owner_token     TEXT NOT NULL,
            owner_start     INTEGER,
            boot_id         TEXT,
            acquired_at     TEXT NOT NULL
        )
        """,
        "CREATE INDEX leases_by_owner ON leases (owner_token)",
    ),
    (
        # Fork counts user messages: a marker column, so the cut is found from an
        # index without reading (or parsing) the items.
        "ALTER TABLE items ADD COLUMN is_user INTEGER NOT NULL DEFAULT 0",
        """
        UPDATE items SET is_user = 1
        WHERE json_valid(json)
          AND json_extract(json, '$.type') = 'message'
          AND json_extract(json, '$.role') = 'user'
        """,
        "CREATE INDEX items_user ON items (conversation_id, idx) WHERE is_user = 1",
    ),
    (
        # A conversation's settings become one JSON object of the fields it was
        # given, so that a new setting needs no migration. The table is rebuilt
        # (SQLite before 3.35 cannot drop columns).
        """
        CREATE TABLE conversations_v3 (
            conversation_id   TEXT PRIMARY KEY,
            settings          TEXT NOT NULL,
            created_at        TEXT NOT NULL,
            updated_at        TEXT NOT NULL,
            forked_from       TEXT,
            history_length    INTEGER NOT NULL DEFAULT 0,
            last_seq          INTEGER NOT NULL DEFAULT 0,
            preview           TEXT
        )
        """,
        """
        INSERT INTO conversations_v3
        SELECT conversation_id,
               json_object(
                   'provider', provider, 'model', model, 'instructions', instructions,
                   'cwd', cwd,
                   'metadata', CASE
                       WHEN json_valid(metadata) THEN json(metadata)
                       -- NaN and Infinity (stored by 1.0) are null, as they read back
                       ELSE json(replace(replace(replace(metadata,
                           '-Infinity', 'null'), 'Infinity', 'null'), 'NaN', 'null'))
                   END,
                   'temperature', temperature, 'max_output_tokens', max_output_tokens),
               created_at, updated_at, forked_from, history_length, last_seq, preview
        FROM conversations
        """,
        "DROP TABLE conversations",
        "ALTER TABLE conversations_v3 RENAME TO conversations",
        "CREATE INDEX conversations_by_update ON conversations (updated_at, conversation_id)",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
