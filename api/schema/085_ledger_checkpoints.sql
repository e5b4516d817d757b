-- Signed checkpoints of the ingest-ledger chain heads (api/evidence/checkpoints.py): a DSSE envelope signed
-- with the plant's Ed25519 key over every device's chain head at `created_at`. A certifier who kept an
-- earlier checkpoint can show that the chain was not rewritten since. `tsa_token`: an RFC 3161 time-stamp
-- token over the envelope's payload, where the plant configures a timestamp authority.
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    id          bigserial   PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    heads       jsonb       NOT NULL,
    envelope    jsonb       NOT NULL,
    keyid       text        NOT NULL,
    tsa_token   bytea
);
CREATE INDEX IF NOT EXISTS ledger_checkpoints_created_idx ON ledger_checkpoints (created_at);
