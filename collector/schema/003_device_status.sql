-- Device connectivity log (connected / disconnected with the reason a person can act on): the networking rate.
CREATE TABLE IF NOT EXISTS device_status (
    ts         timestamptz NOT NULL,
    device_id  text        NOT NULL,
    state      text        NOT NULL CHECK (state IN ('connected', 'disconnected')),
    reason     text        NOT NULL DEFAULT '',
    gateway_id text        NOT NULL DEFAULT '',
    CONSTRAINT device_status_device_ts_state_key UNIQUE (device_id, ts, state)
);
