-- Samples a gateway dropped by its stated policy, per device and time range, with the count: buffer_full (disk
-- buffer over edge.buffer_max_mb, oldest dropped), memory_full (the gateway's disk refused writes and its memory
-- queue overflowed), oversize (one sample larger than an uplink batch may be). A certifier sees the gap instead
-- of a silent hole. The key makes a re-sent gap record (at-least-once uplink) a no-op.
CREATE TABLE IF NOT EXISTS edge_gaps (
    device_id   text        NOT NULL,
    gateway_id  text        NOT NULL,
    from_ts     timestamptz NOT NULL,
    to_ts       timestamptz NOT NULL,
    dropped     bigint      NOT NULL CHECK (dropped > 0),
    reason      text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT edge_gaps_key UNIQUE (gateway_id, device_id, from_ts, to_ts, reason)
);
CREATE INDEX IF NOT EXISTS edge_gaps_device_to_ts ON edge_gaps (device_id, to_ts);
