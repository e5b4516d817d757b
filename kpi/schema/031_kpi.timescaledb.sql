-- TimescaleDB: kpi_values becomes a hypertable on bucket_start (the primary key includes it).
SELECT create_hypertable('kpi_values', by_range('bucket_start', INTERVAL '30 days'),
                         create_default_indexes => false, if_not_exists => true, migrate_data => true);
