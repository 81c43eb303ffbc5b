"""The PostgreSQL store's schema: the migrations that build it, and the version they reach.

Text columns that are sort or lookup keys use the "C" collation: bytewise
order, the same as SQLite's, whatever the database's locale (the listing's
cursors compare them).
"""

from typing import Final

# Each entry upgrades the schema by one version; the index + 1 is the version
# it produces. Never edit a released entry: append a new one.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE conversations (
            conversation_id text COLLATE "C" PRIMARY KEY,
            settings        text NOT NULL,
            created_at      text NOT NULL,
            updated_at      text COLLATE "C" NOT NULL,
            forked_from     text,
            history_length  bigint NOT NULL DEFAULT 0,
            last_seq        bigint NOT NULL DEFAULT 0,
            preview         text
        )
        """,
        # listConversations walks this index backwards: newest first, keyset paging.
        "CREATE INDEX conversations_by_update ON conversations (updated_at, conversation_id)",
        # Items stay the JSON text they were written as (jsonb would reorder keys
        # and round numbers); is_user marks user messages for fork's cut.
        """
        CREATE TABLE items (
            conversation_id text COLLATE "C" NOT NULL,
            idx             bigint NOT NULL,
            json            text NOT NULL,
            is_user         boolean NOT NULL DEFAULT false,
            PRIMARY KEY (conversation_id, idx)
        )
        """,
        "CREATE INDEX items_user ON items (conversation_id, idx) WHERE is_user",
        # One row per open conversation: who holds it, the generation every
        # write checks (fencing), and the heartbeat on the database's clock.
        """
        CREATE TABLE leases (
            conversation_id text COLLATE "C" PRIMARY KEY,
            owner_token     text NOT NULL,
            holder          text NOT NULL,
            generation      bigint NOT NULL,
            heartbeat_at    timestamptz NOT NULL,
            acquired_at     timestamptz NOT NULL
        )
        """,
        "CREATE INDEX leases_by_owner ON leases (owner_token)",
        "CREATE SEQUENCE lease_generations",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
