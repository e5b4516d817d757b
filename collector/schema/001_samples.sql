-- Raw samples, one row per (device, tag, instant). Every column after `value` has a default so that
-- history exported from a historian imports with a plain COPY samples (ts, device_id, tag, value) FROM ...
-- The unique key is the dedup key (replayed batches are absorbed); it includes ts as TimescaleDB requires.
CREATE TABLE IF NOT EXISTS samples (
    ts          timestamptz      NOT NULL,
    device_id   text             NOT NULL,
    tag         text             NOT NULL,
    value       double precision,
    value_text  text,
    quality     text             NOT NULL DEFAULT 'good' CHECK (quality IN ('good', 'uncertain', 'bad')),
    status_code bigint           NOT NULL DEFAULT 0,
    server_ts   timestamptz,
    historical  boolean          NOT NULL DEFAULT false,
    gateway_id  text             NOT NULL DEFAULT '',
    boot_epoch  bigint           NOT NULL DEFAULT 0,
    seq         bigint           NOT NULL DEFAULT 0,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT samples_device_tag_ts_key UNIQUE (device_id, tag, ts)
);

-- Time-range scans (KPI windows, retention, networking rate). BRIN: a few pages per table or chunk, and
-- nearly free on insert because samples arrive roughly in time order.
CREATE INDEX IF NOT EXISTS samples_ts_brin ON samples USING brin (ts);
-- The ledger looks for recently ingested rows (late data) by ingested_at, which follows insertion order.
CREATE INDEX IF NOT EXISTS samples_ingested_at_brin ON samples USING brin (ingested_at);
