"""The raw-data export a certifier recomputes from: samples, device_status and ledger entries as CSV files.

Format `shopfloor-export/1` (a directory): `manifest.json` ({format, plant_id, devices, from, to}), `samples.csv`
(ts,device_id,tag,value,value_text,quality), `device_status.csv` (ts,device_id,state,reason) and
`ingest_ledger.csv`. Times are UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`; `value` is Python's shortest round-trip repr
of the double; a NULL is `\\N` (as in PostgreSQL COPY text). `from`/`to` are whole UTC hours: every device-hour
inside them is complete, so it can be checked against the ledger's row count and hash.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collector.ledger import GENESIS, LedgerEntry, entry_hash, hour_iso, iso_us, rows_digest
from core.errors import ShopfloorError

FORMAT = "shopfloor-export/1"
NULL = "\\N"
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


def _cell(v: Any) -> str:
    if v is None:
        return NULL
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, datetime):
        return iso_us(v)
    return str(v)


def _uncell(s: str) -> str | None:
    return None if s == NULL else s


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


def write_export(conn: Any, plant_id: str, devices: list[str], start: datetime, end: datetime, out: Path) -> None:
    """Export the devices' raw rows for the whole UTC hours covering [start, end) into directory `out`."""
    start, end = floor_hour(start), ceil_hour(end)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "samples.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(SAMPLE_COLS)
        with conn.cursor() as cur:
            cur.execute("""SELECT ts, device_id, tag, value, value_text, quality FROM samples
                           WHERE device_id = ANY(%s) AND ts >= %s AND ts < %s
                           ORDER BY device_id, ts, tag COLLATE "C" """, (devices, start, end))
            for row in cur:
                w.writerow([_cell(v) for v in row])
    with (out / "device_status.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(STATUS_COLS)
        for row in conn.execute("""SELECT ts, device_id, state, reason FROM device_status
                                   WHERE device_id = ANY(%s) AND ts < %s ORDER BY device_id, ts""", (devices, end)):
            w.writerow([_cell(v) for v in row])
    from collector.ledger import ledger_entries

    write_ledger_csv(out / "ingest_ledger.csv", [e for e in ledger_entries(conn) if e.device_id in set(devices)])
    (out / "manifest.json").write_text(json.dumps(
        {"format": FORMAT, "plant_id": plant_id, "devices": sorted(devices), "from": hour_iso(start),
         "to": hour_iso(end)}, indent=1) + "\n", encoding="utf-8")


@dataclass
class Export:
    plant_id: str
    devices: list[str]
    start: datetime
    end: datetime
    samples: list[Sample] = field(default_factory=list)
    status: list[tuple[datetime, str, str]] = field(default_factory=list)


def _csv_rows(path: Path, cols: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    try:
        f = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ExportError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != cols:
            raise ExportError(f"{path}:1: header must be {','.join(cols)}")
        for n, row in enumerate(reader, start=2):
            if len(row) != len(cols):
                raise ExportError(f"{path}:{n}: expected {len(cols)} fields, found {len(row)}")
            yield n, row


def read_export(d: Path) -> Export:
    """Read an export directory; one-line errors naming the file and line."""
    mpath = d / "manifest.json"
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
        exp = Export(str(m["plant_id"]), list(m["devices"]), parse_ts(m["from"]), parse_ts(m["to"]))
        if m.get("format") != FORMAT:
            raise ExportError(f"{mpath}: format {m.get('format')!r}, expected {FORMAT!r}")
    except OSError as exc:
        raise ExportError(f"{mpath}: cannot read ({exc.strerror or exc}); is {d} a `shopfloor export` directory?") \
            from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{mpath}: not an export manifest ({exc})") from exc
    for n, r in _csv_rows(d / "samples.csv", SAMPLE_COLS):
        try:
            v = _uncell(r[3])
            exp.samples.append((parse_ts(r[0]), r[1], r[2], None if v is None else float(v), _uncell(r[4]), r[5]))
        except ValueError as exc:
            raise ExportError(f"{d / 'samples.csv'}:{n}: {exc}") from exc
    for n, r in _csv_rows(d / "device_status.csv", STATUS_COLS):
        try:
            exp.status.append((parse_ts(r[0]), r[1], r[2]))
        except ValueError as exc:
            raise ExportError(f"{d / 'device_status.csv'}:{n}: {exc}") from exc
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
