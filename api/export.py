"""Raw-data export of a scope: samples, device status and the ingest-ledger entries that cover them.

What a certifier recomputes KPIs and ledger hashes from. Imports only core, collector, kpi and pyarrow (no
FastAPI), so `evidence verify` can read these files anywhere. Files in the output directory:
- samples.parquet|csv        (ts, device_id, tag, value, value_text, quality), ordered by device, tag, ts
- device_status.parquet|csv  (ts, device_id, state, reason, gateway_id), with each device's last event before
                             the period (the state the period starts in)
- ingest_ledger.parquet|csv  every entry of each exported device's chain (from its genesis, so the chain
                             verifies), column covers_export marking the hours inside the exported period
- manifest.json              scope, machines, devices, requested and exported period, rows and SHA-256 per file
The exported period is the requested one widened to whole UTC hours, so every covered ledger hour is complete.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from collector.ledger import hour_iso, ledger_entries
from collector.reads import SAMPLE_COLUMNS, STATUS_COLUMNS, device_status_query, samples_query
from core.plant import PlantConfig
from kpi.networking import scope_machines

BATCH_ROWS = 50_000
LEDGER_COLUMNS = ("device_id", "chain_seq", "hour", "revision", "row_count", "rows_sha256", "prev_hash",
                  "entry_hash", "covers_export")
Progress = Callable[[str, int], None]


def arrow_schemas() -> dict[str, Any]:
    """Arrow schema of each exported table."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return {
        "samples": pa.schema([("ts", ts), ("device_id", pa.string()), ("tag", pa.string()), ("value", pa.float64()),
                              ("value_text", pa.string()), ("quality", pa.string())]),
        "device_status": pa.schema([("ts", ts), ("device_id", pa.string()), ("state", pa.string()),
                                    ("reason", pa.string()), ("gateway_id", pa.string())]),
        "ingest_ledger": pa.schema([("device_id", pa.string()), ("chain_seq", pa.int64()), ("hour", ts),
                                    ("revision", pa.int32()), ("row_count", pa.int64()),
                                    ("rows_sha256", pa.string()), ("prev_hash", pa.string()),
                                    ("entry_hash", pa.string()), ("covers_export", pa.bool_())]),
    }


def whole_hours(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[start, end) widened to whole UTC hours."""
    s = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    e = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return s, (e if e == end else e + timedelta(hours=1))


def _cursor_batches(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]) -> Iterator[list[tuple[Any, ...]]]:
    with conn.transaction(), conn.cursor(name="shopfloor_export", binary=True) as cur:
        cur.itersize = BATCH_ROWS
        cur.execute(sql, params)  # type: ignore[arg-type]
        while rows := cur.fetchmany(BATCH_ROWS):
            yield rows


def write_table(path: Path, columns: Sequence[str], schema: Any, batches: Iterator[list[tuple[Any, ...]]],
                fmt: str, progress: Progress | None = None) -> int:
    """Write row batches to one Parquet or CSV file; returns the row count."""
    n = 0
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(columns)
            for rows in batches:
                w.writerows([v.isoformat() if isinstance(v, datetime) else v for v in r] for r in rows)
                n += len(rows)
                if progress:
                    progress(path.stem, n)
        return n
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, schema) as writer:
        for rows in batches:
            cols = list(zip(*rows, strict=True))
            writer.write_table(pa.table({c: list(v) for c, v in zip(columns, cols, strict=True)}, schema=schema))
            n += len(rows)
            if progress:
                progress(path.stem, n)
        if n == 0:
            writer.write_table(schema.empty_table())
    return n


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_scope(url: str, cfg: PlantConfig, scope: str | None, start: datetime, end: datetime, out_dir: Path,
                 fmt: str = "parquet", progress: Progress | None = None) -> dict[str, Any]:
    """Export the scope's raw data for [start, end) (widened to whole hours) into out_dir; returns the manifest."""
    machines = scope_machines(cfg, scope)
    devices = sorted({m.device for m in machines if m.device})
    s, e = whole_hours(start, end)
    out_dir.mkdir(parents=True, exist_ok=True)
    schemas = arrow_schemas()
    files: list[dict[str, Any]] = []
    with psycopg.connect(url) as conn:
        for table, columns, (sql, params) in (("samples", SAMPLE_COLUMNS, samples_query(devices, s, e)),
                                              ("device_status", STATUS_COLUMNS, device_status_query(devices, s, e))):
            path = out_dir / f"{table}.{fmt}"
            n = write_table(path, columns, schemas[table], _cursor_batches(conn, sql, params), fmt, progress)
            files.append({"path": path.name, "rows": n})
        entries = [en for d in devices for en in ledger_entries(conn, d)]
    ledger_rows = [(en.device_id, en.chain_seq, en.hour, en.revision, en.row_count, en.rows_sha256, en.prev_hash,
                    en.entry_hash, s <= en.hour < e) for en in entries]
    path = out_dir / f"ingest_ledger.{fmt}"
    n = write_table(path, LEDGER_COLUMNS, schemas["ingest_ledger"], iter([ledger_rows] if ledger_rows else []), fmt)
    files.append({"path": path.name, "rows": n})
    for f in files:
        f["sha256"] = _sha256(out_dir / f["path"])
    manifest = {"plant_id": cfg.plant.id, "scope": scope or cfg.plant.id, "machines": [m.id for m in machines],
                "devices": devices, "requested": {"from": start.isoformat(), "to": end.isoformat()},
                "exported": {"from": hour_iso(s), "to": hour_iso(e)}, "format": fmt, "files": files,
                "created_at": datetime.now(UTC).isoformat()}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    _audit(url, manifest, out_dir)
    return manifest


def _audit(url: str, manifest: dict[str, Any], out_dir: Path) -> None:
    """Every export is in the audit log (the table exists once the API's migrations ran)."""
    from api.audit import record_cli

    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.api_audit')").fetchone() == (None,):
            return
        record_cli(conn, "export", f"export scope={manifest['scope']} from={manifest['exported']['from']} "
                                   f"to={manifest['exported']['to']} format={manifest['format']}", str(out_dir))
