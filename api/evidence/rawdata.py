"""Reading the raw-data export (`shopfloor export`, api/export.py) and checking it against the ingest ledger.

The export is a directory: manifest.json (plant_id, devices, exported {from, to} in whole UTC hours, format,
files with SHA-256) and samples / device_status / ingest_ledger as CSV or Parquet. Every device-hour inside the
exported period is complete, so its row count and canonical hash can be compared with the ledger's.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collector.ledger import GENESIS, LedgerEntry, entry_hash, hour_iso, rows_digest
from core.errors import ShopfloorError

SAMPLE_COLS = ("ts", "device_id", "tag", "value", "value_text", "quality")
STATUS_COLS = ("ts", "device_id", "state", "reason")
LEDGER_COLS = ("device_id", "hour", "revision", "row_count", "rows_sha256", "prev_hash", "entry_hash", "chain_seq")
Sample = tuple[datetime, str, str, float | None, str | None, str]


class ExportError(ShopfloorError):
    """An export that is missing, malformed, or belongs to another plant or window."""


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def floor_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(t: datetime) -> datetime:
    f = floor_hour(t)
    return f if f == t else f + timedelta(hours=1)


def write_ledger_csv(path: Path, entries: list[LedgerEntry]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(LEDGER_COLS)
        for e in entries:
            w.writerow([e.device_id, hour_iso(e.hour), e.revision, e.row_count, e.rows_sha256, e.prev_hash,
                        e.entry_hash, e.chain_seq])


def read_ledger_csv(text: str, where: str) -> list[LedgerEntry]:
    rows = list(csv.reader(text.splitlines()))
    if not rows or tuple(rows[0]) != LEDGER_COLS:
        raise ExportError(f"{where}:1: header must be {','.join(LEDGER_COLS)}")
    out = []
    for n, r in enumerate(rows[1:], start=2):
        try:
            out.append(LedgerEntry(r[0], parse_ts(r[1]), int(r[2]), int(r[3]), r[4], r[5], r[6], int(r[7])))
        except (ValueError, IndexError) as exc:
            raise ExportError(f"{where}:{n}: not a ledger entry ({exc})") from exc
    return out


@dataclass
class Export:
    plant_id: str
    devices: list[str]
    start: datetime
    end: datetime
    samples: list[Sample] = field(default_factory=list)
    status: list[tuple[datetime, str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files that differ from the export's own manifest


def _opt(v: Any) -> Any:
    return None if v == "" else v


def _table(d: Path, name: str, fmt: str, cols: tuple[str, ...]) -> Iterator[tuple[str, list[Any]]]:
    """(where, row) of one exported table, CSV or Parquet; errors name the file (and line)."""
    path = d / f"{name}.{fmt}"
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(path, columns=list(cols))
        except (OSError, ValueError, KeyError) as exc:
            raise ExportError(f"{path}: cannot read as Parquet with columns {','.join(cols)} ({exc})") from exc
        for i, prow in enumerate(zip(*(table.column(c).to_pylist() for c in cols), strict=True)):
            yield f"{path} row {i + 1}", list(prow)
        return
    try:
        f = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header[: len(cols)]) != cols:
            raise ExportError(f"{path}:1: header must start with {','.join(cols)}")
        for n, row in enumerate(reader, start=2):
            if len(row) < len(cols):
                raise ExportError(f"{path}:{n}: expected {len(cols)} fields, found {len(row)}")
            yield f"{path}:{n}", [_opt(v) for v in row[: len(cols)]]


def _ts(v: Any) -> datetime:
    return v.astimezone(UTC) if isinstance(v, datetime) else parse_ts(str(v))


def read_export(d: Path) -> Export:
    """Read a `shopfloor export` directory (manifest.json and CSV or Parquet tables); one-line errors."""
    mpath = d / "manifest.json"
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
        exp = Export(str(m["plant_id"]), list(m["devices"]), parse_ts(m["exported"]["from"]),
                     parse_ts(m["exported"]["to"]))
        fmt = str(m.get("format", "parquet"))
    except OSError as exc:
        raise ExportError(f"{mpath}: cannot read ({exc.strerror or exc}); is {d} a `shopfloor export` directory?") \
            from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{mpath}: not an export manifest ({exc!r})") from exc
    if fmt not in ("csv", "parquet"):
        raise ExportError(f"{mpath}: format {fmt!r}: expected csv or parquet")
    for f in m.get("files", []):
        p = d / str(f["path"])
        if p.exists() and "sha256" in f and hashlib.sha256(p.read_bytes()).hexdigest() != f["sha256"]:
            exp.problems.append(f"{p.name}: SHA-256 differs from the export's manifest.json (changed after export)")
    for where, r in _table(d, "samples", fmt, SAMPLE_COLS):
        try:
            v = r[3]
            exp.samples.append((_ts(r[0]), str(r[1]), str(r[2]), None if v is None else float(v), r[4], str(r[5])))
        except (ValueError, TypeError) as exc:
            raise ExportError(f"{where}: {exc}") from exc
    for where, r in _table(d, "device_status", fmt, STATUS_COLS[:3]):
        try:
            exp.status.append((_ts(r[0]), str(r[1]), str(r[2])))
        except (ValueError, TypeError) as exc:
            raise ExportError(f"{where}: {exc}") from exc
    return exp


def check_against_ledger(exp: Export, entries: list[LedgerEntry]) -> list[str]:
    """Per device-hour of the export: row count and rows_sha256 against the ledger's latest revision."""
    by: dict[tuple[str, datetime], list[tuple[datetime, str, float | None, str | None, str]]] = defaultdict(list)
    for ts, dev, tag, value, text, quality in exp.samples:
        by[(dev, floor_hour(ts))].append((ts, tag, value, text, quality))
    latest: dict[tuple[str, datetime], LedgerEntry] = {}
    for e in entries:
        if e.device_id in exp.devices and exp.start <= e.hour < exp.end:
            if (e.device_id, e.hour) not in latest or e.revision > latest[(e.device_id, e.hour)].revision:
                latest[(e.device_id, e.hour)] = e
    problems = []
    for key in sorted(set(by) | set(latest)):
        dev, hour = key
        rows = sorted(by.get(key, []), key=lambda r: (r[1].encode(), r[0]))
        sealed = latest.get(key)
        where = f"device {dev} hour {hour_iso(hour)}"
        if sealed is None:
            problems.append(f"{where}: {len(rows)} raw rows but no ledger entry (hour not sealed)")
            continue
        count, digest = rows_digest(rows)
        if count != sealed.row_count:
            problems.append(f"{where}: export has {count} rows, ledger rev {sealed.revision} sealed "
                            f"{sealed.row_count}")
        elif digest != sealed.rows_sha256:
            problems.append(f"{where}: rows differ from what ledger rev {sealed.revision} sealed "
                            "(a value, tag, time or quality was changed)")
    return problems


def check_chain_slice(entries: list[LedgerEntry]) -> list[str]:
    """Each device's entries (a consecutive slice of its chain): positions, links and entry hashes."""
    problems: list[str] = []
    prev: dict[str, LedgerEntry] = {}
    for e in sorted(entries, key=lambda x: (x.device_id, x.chain_seq)):
        where = f"ledger {e.device_id} {hour_iso(e.hour)} rev {e.revision} (chain position {e.chain_seq})"
        before = prev.get(e.device_id)
        if before is not None:
            if e.chain_seq != before.chain_seq + 1:
                problems.append(f"{where}: expected position {before.chain_seq + 1} (entry missing)")
            if e.prev_hash != before.entry_hash:
                problems.append(f"{where}: prev_hash does not match the previous entry (chain broken)")
        elif e.chain_seq == 1 and e.prev_hash != GENESIS:
            problems.append(f"{where}: first entry does not start from the genesis hash")
        if entry_hash(e.prev_hash, e.device_id, e.hour, e.revision, e.row_count, e.rows_sha256) != e.entry_hash:
            problems.append(f"{where}: entry_hash does not match its contents (entry altered)")
        prev[e.device_id] = e
    return problems
