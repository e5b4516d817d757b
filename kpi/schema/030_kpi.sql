-- KPI results (kpi.job). One row per (asset, kpi, bucket kind, bucket start); bucket_start is the instant the
-- bucket starts on the plant's clock (local hour, local midnight, shift start), stored in UTC.
-- A KPI whose denominator is zero is stored as value NULL with null_reason set, never as 0 or 1.
CREATE TABLE IF NOT EXISTS kpi_values (
    bucket_start       timestamptz      NOT NULL,
    bucket             text             NOT NULL CHECK (bucket IN ('hour', 'shift', 'day')),
    asset_id           text             NOT NULL,
    kpi                text             NOT NULL,
    value              double precision,
    null_reason        text,
    unit               text,
    shift_name         text,
    definition_version text,
    code_version       text,
    input_rows         bigint,
    coverage           double precision,
    revision           int              NOT NULL DEFAULT 1,
    computed_at        timestamptz      NOT NULL DEFAULT now(),
    bucket_end         timestamptz,
    is_final           boolean          NOT NULL DEFAULT true,   -- false while the bucket was still open
    provenance         jsonb,                                    -- e.g. emission factor version, micro-stop setting
    PRIMARY KEY (asset_id, kpi, bucket, bucket_start),
    CHECK (value IS NOT NULL OR null_reason IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS kpi_values_bucket_start_idx ON kpi_values (bucket_start);

-- Earlier values of a final bucket, kept when a recomputation (late data) changes the value.
CREATE TABLE IF NOT EXISTS kpi_value_revisions (
    bucket_start       timestamptz      NOT NULL,
    bucket             text             NOT NULL,
    asset_id           text             NOT NULL,
    kpi                text             NOT NULL,
    value              double precision,
    null_reason        text,
    unit               text,
    shift_name         text,
    definition_version text,
    code_version       text,
    input_rows         bigint,
    coverage           double precision,
    revision           int              NOT NULL,
    computed_at        timestamptz      NOT NULL,
    bucket_end         timestamptz,
    is_final           boolean          NOT NULL DEFAULT true,
    provenance         jsonb,
    superseded_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (asset_id, kpi, bucket, bucket_start, revision)
);

-- How far the incremental job has computed each asset, and when it last ran (for late-sample detection).
CREATE TABLE IF NOT EXISTS kpi_watermarks (
    asset_id       text PRIMARY KEY,
    computed_until timestamptz,
    computed_at    timestamptz
);
