"""Streamed responses: rows from a server-side cursor go out as JSON, CSV or Parquet in batches, never whole."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime
from typing import Any, Literal

from starlette.responses import StreamingResponse

Format = Literal["json", "csv", "parquet"]
BATCH_ROWS = 2000
MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8",
         "parquet": "application/vnd.apache.parquet"}
Row = dict[str, Any]


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):  # kpi_values.bucket_date is a date
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


async def batches(rows: AsyncIterator[Row], size: int = BATCH_ROWS) -> AsyncIterator[list[Row]]:
    """Group streamed rows into lists of `size`."""
    batch: list[Row] = []
    async for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _json(rows: AsyncIterator[Row]) -> AsyncIterator[bytes]:
    first = True
    yield b"["
    async for batch in batches(rows):
        text = ",".join(json.dumps(r, default=_default, ensure_ascii=False) for r in batch)
        yield (text if first else "," + text).encode()
        first = False
    yield b"]"


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, default=_default, ensure_ascii=False)
    return value


async def _csv(rows: AsyncIterator[Row], columns: list[str]) -> AsyncIterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    yield buf.getvalue().encode()
    async for batch in batches(rows):
        buf.seek(0)
        buf.truncate()
        writer.writerows([_cell(r.get(c)) for c in columns] for r in batch)
        yield buf.getvalue().encode()


class _Sink(io.RawIOBase):
    """A write-only file that hands out what was written since the last take()."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.parts.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


async def _parquet(rows: AsyncIterator[Row], schema: Any) -> AsyncIterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema)
    try:
        async for batch in batches(rows, 50_000):
            cols = {f.name: [_parquet_cell(r.get(f.name), f.type) for r in batch] for f in schema}
            writer.write_table(pa.table(cols, schema=schema))
            yield sink.take()
    finally:
        writer.close()
    yield sink.take()


def _parquet_cell(value: Any, typ: Any) -> Any:
    return json.dumps(value, default=_default) if isinstance(value, dict) else value


def json_text(pool: Any, sql: str, params: Any, keep: Callable[[bytes], None] | None = None) -> StreamingResponse:
    """A JSON array streamed from a query whose rows are comma-joined JSON objects (text), in order; `keep`
    receives the whole body once it has been sent (for a cache)."""

    async def body() -> AsyncIterator[bytes]:
        parts = [b"["]
        yield parts[0]
        sep = ""
        async with pool.connection() as conn, conn.cursor() as cur:
            async for (chunk,) in cur.stream(sql, params):
                part = (sep + chunk).encode()
                if keep is not None:
                    parts.append(part)
                yield part
                sep = ","
        yield b"]"
        if keep is not None:
            parts.append(b"]")
            keep(b"".join(parts))

    return StreamingResponse(body(), media_type=MEDIA["json"])


def stream(rows: AsyncIterator[Row], fmt: Format, columns: list[str], arrow_schema: Callable[[], Any],
           filename: str) -> StreamingResponse:
    """A StreamingResponse of `rows` in `fmt` (CSV and Parquet as attachments named `filename`.<ext>)."""
    if fmt == "json":
        return StreamingResponse(_json(rows), media_type=MEDIA["json"])
    body = _csv(rows, columns) if fmt == "csv" else _parquet(rows, arrow_schema())
    return StreamingResponse(body, media_type=MEDIA[fmt],
                             headers={"Content-Disposition": f'attachment; filename="{filename}.{fmt}"'})
