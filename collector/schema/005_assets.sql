-- The plant's asset register (ISA-95 tree), mirrored from the config by collector.db.sync_assets.
-- path = ids from the outermost ancestor down to the asset itself.
CREATE TABLE IF NOT EXISTS assets (
    id                 text PRIMARY KEY,
    kind               text,
    parent_id          text,
    name               text,
    device_id          text,
    ideal_cycle_time_s double precision,
    production         boolean,
    path               text[]
);
CREATE INDEX IF NOT EXISTS assets_device_id_idx ON assets (device_id);
