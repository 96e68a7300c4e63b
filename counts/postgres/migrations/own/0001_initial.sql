-- Unread counts cost O(memberships): each conversation carries its latest sequence number and each
-- member the last sequence they read, so unread = last_seq - last_read_seq (minus deleted messages
-- in that gap, which a partial index keeps cheap to count).

CREATE TABLE conversations (
    id         uuid        PRIMARY KEY,
    last_seq   bigint      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE conversation_members (
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         uuid        NOT NULL,
    last_read_seq   bigint      NOT NULL DEFAULT 0 CHECK (last_read_seq >= 0),
    joined_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id)
);

-- The counts query starts from the user: one index range scan over their memberships.
CREATE INDEX conversation_members_by_user
    ON conversation_members (user_id) INCLUDE (conversation_id, last_read_seq);

CREATE TABLE messages (
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             bigint      NOT NULL,
    id              uuid        NOT NULL UNIQUE,
    sender_id       uuid        NOT NULL,
    body            text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    PRIMARY KEY (conversation_id, seq)
);

-- Deleted messages are rare; only they are counted per request, through this small index.
CREATE INDEX messages_deleted ON messages (conversation_id, seq) WHERE deleted_at IS NOT NULL;

-- Transactional outbox for marker bumps (DESIGN.md invariant 6): a write inserts the users to bump
-- in its own transaction; the row is deleted once Redis has the bump. A row left behind (Redis
-- down, writer killed between commit and bump) is bumped by the drainer once Redis answers.
CREATE TABLE marker_outbox (
    id         bigserial   PRIMARY KEY,
    user_ids   uuid[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
