-- Operator input (api/operator.py): a manager's reason for a downtime event, with who, when and why. Append-only
-- (a later entry for the same event supersedes the earlier one, which stays), and hash-chained: entry_hash =
-- SHA-256 of prev_hash and the entry's fields, so an altered or removed row breaks the chain.
CREATE TABLE IF NOT EXISTS operator_entries (
    id          bigserial   PRIMARY KEY,
    entered_at  timestamptz NOT NULL DEFAULT now(),
    token_id    bigint,
    author      text        NOT NULL,
    role        text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('downtime_reason')),
    asset_id    text        NOT NULL,
    event_start timestamptz NOT NULL,
    event_end   timestamptz NOT NULL,
    reason_code text        NOT NULL,
    note        text        NOT NULL DEFAULT '',
    prev_hash   text        NOT NULL,
    entry_hash  text        NOT NULL UNIQUE,
    CHECK (event_end > event_start)
);
CREATE INDEX IF NOT EXISTS operator_entries_event_idx ON operator_entries (asset_id, event_start);

CREATE OR REPLACE FUNCTION operator_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'operator_entries is append-only: % refused (add a new entry instead)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

DROP TRIGGER IF EXISTS operator_entries_no_change ON operator_entries;
CREATE TRIGGER operator_entries_no_change BEFORE UPDATE OR DELETE ON operator_entries
    FOR EACH ROW EXECUTE FUNCTION operator_entries_append_only();
DROP TRIGGER IF EXISTS operator_entries_no_truncate ON operator_entries;
CREATE TRIGGER operator_entries_no_truncate BEFORE TRUNCATE ON operator_entries
    FOR EACH STATEMENT EXECUTE FUNCTION operator_entries_append_only();
