-- TimescaleDB: samples become a hypertable with one-day chunks (retention drops whole chunks).
-- migrate_data moves rows of a database that started on the plain path (migrate(url, timescaledb=True)).
-- No default ts btree: the BRIN index and chunk exclusion serve time ranges, the unique key serves lookups.
SELECT create_hypertable('samples', by_range('ts', INTERVAL '1 day'),
                         create_default_indexes => false, if_not_exists => true, migrate_data => true);
