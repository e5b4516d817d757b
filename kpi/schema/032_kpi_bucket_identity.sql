-- Shift buckets are unique per shift: two shifts may start at the same instant (same start time, or a
-- daylight-saving change folding two starts into one). shift_key is the shift's name for shift buckets and ''
-- for hours and days; it joins the primary key. bucket_date is the local date a bucket belongs to (a shift's
-- start day), quality_flags the data-quality flags of the row (details and likely causes in provenance).
ALTER TABLE kpi_values ADD COLUMN IF NOT EXISTS shift_key text NOT NULL DEFAULT '';
ALTER TABLE kpi_values ADD COLUMN IF NOT EXISTS bucket_date date;
ALTER TABLE kpi_values ADD COLUMN IF NOT EXISTS quality_flags text[];
UPDATE kpi_values SET shift_key = shift_name WHERE bucket = 'shift' AND shift_name IS NOT NULL AND shift_key = '';
UPDATE kpi_values SET bucket_date = (bucket_start AT TIME ZONE coalesce(provenance->>'timezone', 'UTC'))::date
 WHERE bucket_date IS NULL;
ALTER TABLE kpi_values DROP CONSTRAINT IF EXISTS kpi_values_pkey;
ALTER TABLE kpi_values ADD CONSTRAINT kpi_values_pkey PRIMARY KEY (asset_id, kpi, bucket, bucket_start, shift_key);

ALTER TABLE kpi_value_revisions ADD COLUMN IF NOT EXISTS shift_key text NOT NULL DEFAULT '';
ALTER TABLE kpi_value_revisions ADD COLUMN IF NOT EXISTS bucket_date date;
ALTER TABLE kpi_value_revisions ADD COLUMN IF NOT EXISTS quality_flags text[];
UPDATE kpi_value_revisions SET shift_key = shift_name
 WHERE bucket = 'shift' AND shift_name IS NOT NULL AND shift_key = '';
UPDATE kpi_value_revisions
   SET bucket_date = (bucket_start AT TIME ZONE coalesce(provenance->>'timezone', 'UTC'))::date
 WHERE bucket_date IS NULL;
ALTER TABLE kpi_value_revisions DROP CONSTRAINT IF EXISTS kpi_value_revisions_pkey;
ALTER TABLE kpi_value_revisions ADD CONSTRAINT kpi_value_revisions_pkey
    PRIMARY KEY (asset_id, kpi, bucket, bucket_start, shift_key, revision);
