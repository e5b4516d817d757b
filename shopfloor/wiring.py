"""Single-node wiring: the collector in the edge's process, with the schema, asset register and housekeeping.

Used by `shopfloor edge --database-url` and by `shopfloor demo`; the only place where edge and collector meet.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from collector.errors import TransientDbError
from collector.ingest import BatchProcessor, IngestStats
from collector.writer import SampleWriter
from core.plant import PlantConfig
from edge.uplink import AckCallback, Outgoing

log = logging.getLogger(__name__)


class InProcessSink:
    """The edge's sink in single-node mode: each batch's uplink payload goes through the collector's
    BatchProcessor in this process, exactly as a payload from the broker would (same decoder, same quarantine)."""

    def __init__(self, database_url: str, topic_prefix: str = "shopfloor/v1",
                 owners: dict[str, str] | None = None) -> None:
        self.stats = IngestStats()
        self.writer = SampleWriter(database_url)
        self.processor = BatchProcessor(self.writer, self.stats, owners)
        self.topic_prefix = topic_prefix
        self.on_ack: AckCallback | None = None  # set by the Forwarder
        self._lock = threading.Lock()

    async def start(self) -> None:
        return None

    async def send(self, batch: Outgoing) -> bool:
        try:
            confirm = await asyncio.to_thread(self._write, batch)
        except TransientDbError as exc:
            log.warning("event=db_unavailable error=%r hint='samples stay in the edge buffer until PostgreSQL "
                        "is back'", str(exc))
            await asyncio.sleep(1.0)
            return False
        if self.on_ack is not None:
            for done in confirm.values():
                self.on_ack([bid for bid, _ in done])
        return True

    def _write(self, batch: Outgoing) -> dict[str, list[tuple[int, str]]]:
        topic = f"{self.topic_prefix}/{batch.gateway_id}/samples"
        with self._lock:
            self.stats.messages += 1
            return self.processor.process([(topic, batch.payload())])

    async def stop(self) -> None:
        self.writer.close()


def prepare_database(database_url: str, cfg: PlantConfig | None, log_line: Any = None) -> None:
    """Create or upgrade every installed stage's schema, then mirror the plant's asset register."""
    import psycopg

    from collector.db import migrate, sync_assets
    from shopfloor.stages import schema_dirs

    migrate(database_url, log=log_line or (lambda m: logging.getLogger("collector").info("%s", m)),
            schema_dirs=schema_dirs(), retention_days=cfg.plant.retention_days if cfg is not None else None)
    if cfg is not None:
        with psycopg.connect(database_url) as conn:
            sync_assets(conn, cfg)


def single_node(database_url: str, cfg: PlantConfig, stop: threading.Event,
                log_line: Any = None) -> InProcessSink:
    """Schema, asset register and housekeeping for single-node mode; returns the edge's in-process sink."""
    from collector.service import housekeeping

    prepare_database(database_url, cfg, log_line)
    threading.Thread(target=housekeeping, args=(database_url, cfg, stop), daemon=True, name="housekeeping").start()
    return InProcessSink(database_url, cfg.edge.uplink_topic_prefix, cfg.device_owners())
