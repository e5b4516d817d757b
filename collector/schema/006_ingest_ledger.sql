-- Ingest ledger: per device and UTC hour a row count and a SHA-256 over the canonical rows, chained per
-- device (see collector/README.md "Ingest ledger"). chain_seq is the entry's position in its device's
-- chain (1, 2, ...): the chain is append-only, so a late-data revision of an old hour is appended.
CREATE TABLE IF NOT EXISTS ingest_ledger (
    device_id   text        NOT NULL,
    hour        timestamptz NOT NULL,
    revision    int         NOT NULL,
    row_count   bigint      NOT NULL,
    rows_sha256 text        NOT NULL,
    prev_hash   text        NOT NULL,
    entry_hash  text        NOT NULL,
    sealed_at   timestamptz NOT NULL DEFAULT now(),
    chain_seq   bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, hour, revision)
);
CREATE INDEX IF NOT EXISTS ingest_ledger_chain_idx ON ingest_ledger (device_id, chain_seq);
