"""What waits in memory for the disk buffer: bounded, drop-oldest, and every drop tallied as a gap record.

Normally the queue holds the samples of one flush interval (edge.batch_max_delay_s). When the disk refuses
writes (full filesystem, buffer file gone) it holds them until the disk takes them again, up to
edge.memory_queue_max_mb; past that the oldest samples are dropped, counted and reported to the centre
as gaps per device and time range, so memory stays bounded and nothing vanishes without a record.
"""

from __future__ import annotations

from collections import deque

from core.record import Gap, Sample, StatusEvent

SAMPLE_OVERHEAD_BYTES = 200  # a Sample object and its wire row, without the text
EVENTS_MAX = 10_000


def sample_size(s: Sample) -> int:
    """Estimated memory of one queued sample."""
    return SAMPLE_OVERHEAD_BYTES + len(s.device_id) + len(s.tag) + (len(s.text) if s.text else 0)


class GapTally:
    """Dropped samples per (device, reason): first and last timestamp and the count."""

    def __init__(self) -> None:
        self.spans: dict[tuple[str, str], list[int]] = {}

    def add(self, samples: list[Sample] | deque[Sample], reason: str) -> None:
        for s in samples:
            span = self.spans.get((s.device_id, reason))
            if span is None:
                self.spans[(s.device_id, reason)] = [s.ts_us, s.ts_us, 1]
            else:
                span[0], span[1], span[2] = min(span[0], s.ts_us), max(span[1], s.ts_us), span[2] + 1

    def take(self) -> list[Gap]:
        gaps = [Gap(dev, lo, hi, n, reason) for (dev, reason), (lo, hi, n) in self.spans.items()]
        self.spans = {}
        return gaps

    def put_back(self, gaps: list[Gap]) -> None:
        for g in gaps:
            span = self.spans.get((g.device_id, g.reason))
            if span is None:
                self.spans[(g.device_id, g.reason)] = [g.from_us, g.to_us, g.count]
            else:
                span[0], span[1], span[2] = min(span[0], g.from_us), max(span[1], g.to_us), span[2] + g.count


class MemoryQueue:
    """Samples, events and gap records waiting for the disk buffer."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.samples: deque[Sample] = deque()
        self.events: list[StatusEvent] = []
        self.gaps = GapTally()
        self.nbytes = 0
        self.peak_bytes = 0
        self.dropped = 0  # since the last take_dropped()

    def push(self, samples: list[Sample], events: list[StatusEvent]) -> None:
        self.samples.extend(samples)
        self.nbytes += sum(sample_size(s) for s in samples)
        self.events.extend(events)
        self._bound()

    def take(self) -> tuple[list[Sample], list[StatusEvent], list[Gap]]:
        samples, events = list(self.samples), self.events
        self.samples, self.events, self.nbytes = deque(), [], 0
        return samples, events, self.gaps.take()

    def put_back(self, samples: list[Sample], events: list[StatusEvent], gaps: list[Gap]) -> None:
        """A write failed: the taken items go back in front of what arrived since."""
        self.samples.extendleft(reversed(samples))
        self.nbytes += sum(sample_size(s) for s in samples)
        self.events[:0] = events
        self.gaps.put_back(gaps)
        self._bound()

    def _bound(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self.nbytes)
        if self.nbytes <= self.max_bytes and len(self.events) <= EVENTS_MAX:
            return
        dropped: list[Sample] = []
        while self.samples and self.nbytes > self.max_bytes * 0.9:
            s = self.samples.popleft()
            self.nbytes -= sample_size(s)
            dropped.append(s)
        self.gaps.add(dropped, "memory_full")
        self.dropped += len(dropped)
        if len(self.events) > EVENTS_MAX:  # keep the newest connection changes of a flapping device
            del self.events[:len(self.events) - EVENTS_MAX]

    def take_dropped(self) -> int:
        n, self.dropped = self.dropped, 0
        return n

    def __len__(self) -> int:
        return len(self.samples)
