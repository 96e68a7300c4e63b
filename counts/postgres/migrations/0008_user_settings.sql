-- A user's own badge policy (messages, conversations, mentions, none), over COUNTS_BADGE_POLICY:
-- Zulip and Telegram make the badge a per-user choice. One row per user who chose; both modes
-- keep it in their own schema, and the counts query reads it in the same statement.

CREATE TABLE user_settings (
    user_id      uuid PRIMARY KEY,
    badge_policy text CHECK (badge_policy IN ('messages', 'conversations', 'mentions', 'none'))
);
