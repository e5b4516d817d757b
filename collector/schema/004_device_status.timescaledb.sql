-- Status events are sparse: one-week chunks.
SELECT create_hypertable('device_status', by_range('ts', INTERVAL '7 days'),
                         if_not_exists => true, migrate_data => true);
