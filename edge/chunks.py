"""Chunks handed out by the buffer, and the per-device spans a chunk keeps for gap records."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from core.record import Gap, Sample, StatusEvent


@dataclass
class Pending:
    """Chunks handed out by begin() and not yet confirmed or returned.

    The rows stay as the JSON arrays they were stored as: the uplink joins them into a payload without
    decoding and re-encoding every sample (see record.encode_batch).
    """

    chunk_ids: list[int]
    n_samples: int = 0
    sample_parts: list[bytes] = field(default_factory=list)
    event_parts: list[bytes] = field(default_factory=list)
    gap_parts: list[bytes] = field(default_factory=list)
    nbytes: int = 0
    started: float = field(default_factory=time.monotonic)

    def samples(self) -> list[Sample]:
        """Decode the rows (single-node mode and tests; the MQTT uplink never needs to)."""
        return [Sample.from_row(r) for part in self.sample_parts for r in json.loads(part)]

    def events(self) -> list[StatusEvent]:
        return [StatusEvent.from_row(r) for part in self.event_parts for r in json.loads(part)]

    def gaps(self) -> list[Gap]:
        return [Gap.from_row(r) for part in self.gap_parts for r in json.loads(part)]


def dumps_rows(rows: list[Any]) -> bytes:
    """Wire rows as one compact JSON array (how the buffer stores them)."""
    return json.dumps(rows, separators=(",", ":")).encode()


def device_spans(samples: list[Sample]) -> dict[str, list[int]]:
    """device -> [first ts_us, last ts_us, count]: what a gap record needs if these samples are dropped."""
    spans: dict[str, list[int]] = {}
    for s in samples:
        span = spans.get(s.device_id)
        if span is None:
            spans[s.device_id] = [s.ts_us, s.ts_us, 1]
        else:
            span[0], span[1], span[2] = min(span[0], s.ts_us), max(span[1], s.ts_us), span[2] + 1
    return spans
