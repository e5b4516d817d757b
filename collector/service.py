"""The collector process: the uplink consumer plus housekeeping (ledger sealing, retention) on a schedule."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from collector.ingest import Collector

log = logging.getLogger(__name__)


def housekeeping(url: str, cfg: Any, stop: threading.Event, every_s: float = 60.0) -> None:
    """Seal closed hours into the ingest ledger; enforce plant.retention_days once an hour."""
    from collector.ledger import seal_hours
    from collector.retention import enforce_retention

    grace = cfg.collector.ledger_grace_s if cfg is not None else 300.0
    last_retention: float | None = None
    while not stop.wait(every_s):
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                sealed = seal_hours(conn, datetime.now(UTC) - timedelta(seconds=grace))
                if sealed:
                    log.info("event=ledger_sealed entries=%d", sealed)
                days = cfg.plant.retention_days if cfg is not None else None
                if days and (last_retention is None or time.monotonic() - last_retention > 3600):
                    log.info("event=retention result=%s", enforce_retention(conn, days))
                    last_retention = time.monotonic()
        except psycopg.OperationalError as exc:
            log.warning("event=housekeeping_skipped error=%r hint='database unavailable; will retry'", str(exc))


def run_collector(url: str, broker_url: str, cfg: Any, stop: threading.Event, client_id: str | None = None,
                  mount_point: str = "") -> None:
    """mount_point: the broker's mount_point for the gateways' listener, prefixed to the uplink topics."""
    prefix = mount_point + (cfg.edge.uplink_topic_prefix if cfg is not None else "shopfloor/v1")
    group = cfg.collector.share_group if cfg is not None else "shopfloor-collectors"
    rows = cfg.collector.batch_max_rows if cfg is not None else 20000
    owners = cfg.device_owners() if cfg is not None else None
    collector = Collector(url, broker_url, prefix=prefix, share_group=group, batch_max_rows=rows, client_id=client_id,
                          owners=owners)
    hk = threading.Thread(target=housekeeping, args=(url, cfg, stop), name="housekeeping", daemon=True)
    hk.start()
    log.info("event=collector_started topic=%s devices_with_gateway=%d", collector.topic, len(owners or {}))
    collector.run(stop)
    log.info("event=collector_stopped written=%d duplicates=%d conflicting_duplicates=%d quarantined=%d",
             collector.stats.samples_written, collector.stats.duplicates, collector.stats.conflicting_duplicates,
             collector.stats.quarantined)
