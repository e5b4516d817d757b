"""OPC UA driver: one client session, one subscription per sampling interval, and poll loops for poll tags.

read() blocks until samples arrive and returns everything pending. A lost session (transport closed,
keepalive probe failed, subscription StatusChange Bad*) makes read() raise NotConnected once the pending
samples are handed out; the runner then calls close() and connect(), which builds session and
subscriptions from scratch. asyncua's own auto-reconnect is off so that the runner sees every outage.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, ClassVar

from asyncua import Client, ua
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent, Subscription

from core.errors import ConfigError
from core.record import Quality, Sample, now_us
from core.times import to_us as epoch_us
from edge.driver import DriverContext, StateListener
from edge.drivers.opcua.config import OpcUaDevice
from edge.drivers.opcua.security import TrustListValidator, apply_security, password_from_env
from edge.errors import NotConnected

_ONE_US = 1e-6
# Library failures that mean "the session is gone"; asyncua raises these from requests and set_security.
_TRANSPORT_ERRORS = (ua.UaError, OSError, ConnectionError, asyncio.TimeoutError)


def to_us(dt: datetime | None) -> int | None:
    """An OPC UA DateTime (aware UTC, or naive UTC) as integer microseconds since the Unix epoch."""
    if dt is None or dt.year < 1971:  # asyncua decodes a null DateTime as 1601-01-01
        return None
    return epoch_us(dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC))


def quality_of(status: int) -> Quality:
    """Severity bits of a StatusCode: 00 good, 01 uncertain, 10/11 bad."""
    sev = status >> 30
    return Quality.GOOD if sev == 0 else Quality.UNCERTAIN if sev == 1 else Quality.BAD


def to_sample(device_id: str, tag: str, dv: ua.DataValue) -> Sample:
    """Decode one DataValue: source time (else server time, else edge clock), raw status, float or text."""
    status = dv.StatusCode.value if dv.StatusCode is not None else 0
    server_ts = to_us(dv.ServerTimestamp)
    ts = to_us(dv.SourceTimestamp) or server_ts or now_us()
    quality = quality_of(status)
    s = Sample(device_id, tag, ts, quality=quality, status=status, server_ts_us=server_ts)
    if quality is Quality.BAD:
        return s
    v = dv.Value.Value if dv.Value is not None else None
    if isinstance(v, bool | int | float):
        s.value = float(v)
    elif isinstance(v, str):
        s.text = v
    elif isinstance(v, ua.LocalizedText):
        s.text = v.Text
    elif isinstance(v, datetime):
        s.value = float(to_us(v) or 0) * _ONE_US
    else:
        s.text = str(v)
    return s


class Deadband:
    """Client-side deadband for poll tags: drop a value within `width` of the last one reported."""

    def __init__(self, width: float) -> None:
        self.width = width
        self.last: float | None = None

    def passes(self, s: Sample) -> bool:
        if s.value is None or s.quality is not Quality.GOOD:
            self.last = None
            return True
        if self.last is not None and abs(s.value - self.last) <= self.width:
            return False
        self.last = s.value
        return True


class OpcUaDriver:
    """Reads OPC UA variables by subscription (default) or polling; see README.md."""

    kind: ClassVar[str] = "opcua"

    def __init__(self, device: OpcUaDevice, ctx: DriverContext) -> None:
        self.device = device
        self.log = ctx.log
        self.poll_interval_s: float | None = None
        self.on_state: StateListener | None = None
        self.config_dir = ctx.config_dir
        if device.security is not None:
            password_from_env(device.security)  # fail at start, not at the first reconnect
            if device.security.policy == "None":
                self.log.warning("opcua device=%s endpoint=%s security=None: the session is neither signed nor "
                                 "encrypted and the server is not authenticated (chosen in the plant file); use "
                                 "Basic256Sha256 with a trust_dir where the network is not isolated",
                                 device.id, device.endpoint)
        self._groups: dict[float, list[int]] = defaultdict(list)  # sampling_ms -> tag indexes (subscribe)
        self._polls: dict[float, list[int]] = defaultdict(list)  # interval_s -> tag indexes (poll)
        for i, tag in enumerate(device.tags):
            if tag.mode == "subscribe":
                self._groups[tag.sampling_ms].append(i)
            else:
                explicit = "sampling_ms" in tag.model_fields_set
                self._polls[tag.sampling_ms / 1000 if explicit else device.poll_interval_s].append(i)
        self._client: Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: list[Sample] = []
        self._wake = asyncio.Event()
        self._lost: str | None = None
        self._warned: set[str] = set()
        self._deadbands: dict[int, Deadband] = {}
        self.validator: TrustListValidator | None = None

    # ------------------------------------------------------------------ lifecycle
    async def connect(self) -> None:
        """Open session, resolve node ids, create subscriptions and poll loops; NotConnected on failure."""
        await self.close()
        self._lost = None
        self._wake = asyncio.Event()
        dev = self.device
        client = Client(dev.endpoint, timeout=dev.timeout_s, watchdog_intervall=max(1.0, dev.timeout_s))
        client.session_timeout = 60_000  # the server drops our session a minute after we vanish
        client.name = client.description = f"shopfloor edge ({dev.id})"
        client.connection_lost_callback = self._on_connection_lost
        self._client = client
        try:
            self.validator = await apply_security(client, dev.security, self.config_dir, self.log)
            await client.connect()
            nodes = await self._resolve(client)
            for sampling_ms, idxs in self._groups.items():
                await self._subscribe(client, sampling_ms, [i for i in idxs if i in nodes], nodes)
            for interval, idxs in self._polls.items():
                await self._prepare_deadbands(client, [i for i in idxs if i in nodes], nodes, poll=True)
                self._spawn(self._poll_loop(client, interval, [i for i in idxs if i in nodes], nodes))
        except ConfigError as exc:
            await self.close()
            raise NotConnected(f"opcua {dev.id}: {exc}") from exc
        except (*_TRANSPORT_ERRORS, ValueError) as exc:
            reason = self._explain(exc)
            await self.close()
            raise NotConnected(f"opcua {dev.id} {dev.endpoint}: {reason}") from exc

    def _explain(self, exc: BaseException) -> str:
        if self.validator is not None and self.validator.rejected is not None:
            return self.validator.explain(exc)
        if isinstance(exc, ua.UaStatusCodeError):
            hint = {
                ua.StatusCodes.BadUserAccessDenied: "user name or password rejected (check security.username "
                                                    "and the password_env variable)",
                ua.StatusCodes.BadIdentityTokenRejected: "user identity rejected by the server",
                ua.StatusCodes.BadSecurityPolicyRejected: "server does not offer this security policy/mode",
            }.get(exc.code)
            return hint or f"{type(exc).__name__}: {exc}"
        return f"{type(exc).__name__}: {exc or 'no answer'} (is the server up and the endpoint right?)"

    async def close(self) -> None:
        """Stop loops and end the session; idempotent, never raises."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except BaseException as exc:  # noqa: BLE001 - a dying task's error is already reported
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
        client, self._client = self._client, None
        if client is None:
            return
        client.connection_lost_callback = None
        try:
            await asyncio.wait_for(client.disconnect(), timeout=self.device.timeout_s)
        except (*_TRANSPORT_ERRORS, RuntimeError) as exc:
            self.log.debug("opcua device=%s disconnect: %r", self.device.id, exc)

    async def read(self) -> list[Sample]:
        """The next batch: waits for at least one sample, returns all pending; NotConnected once the session died."""
        while True:
            if self._pending:
                batch, self._pending = self._pending, []
                return batch
            if self._lost is not None:
                raise NotConnected(f"opcua {self.device.id}: {self._lost}")
            if self._client is None:
                raise NotConnected(f"opcua {self.device.id}: not connected")
            self._wake.clear()
            await self._wake.wait()

    # ------------------------------------------------------------------ session events
    def _push(self, s: Sample) -> None:
        self._pending.append(s)
        self._wake.set()

    def _fail(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        self._wake.set()

    async def _on_connection_lost(self, exc: Exception) -> None:
        self._fail(f"session lost ({type(exc).__name__}: {exc})")

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.create_task(coro))

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log.warning(msg, *args)

    def _bad_tag(self, i: int, status: int, why: str) -> None:
        """A tag the server refuses (unknown node, unknown namespace) becomes one BAD sample, not an outage."""
        tag = self.device.tags[i]
        self._warn_once(f"bad:{tag.name}", "opcua device=%s tag=%s node=%s: %s", self.device.id, tag.name, tag.node, why)
        self._push(Sample(self.device.id, tag.name, now_us(), quality=Quality.BAD, status=status))

    # ------------------------------------------------------------------ setup
    async def _resolve(self, client: Client) -> dict[int, ua.NodeId]:
        """Tag index -> NodeId; `nsu=URI;...` is mapped through the server's namespace array."""
        ns_array: list[str] | None = None
        out: dict[int, ua.NodeId] = {}
        for i, tag in enumerate(self.device.tags):
            nid = ua.NodeId.from_string(tag.node)
            if isinstance(nid, ua.ExpandedNodeId) and nid.NamespaceUri:
                if ns_array is None:
                    ns_array = await client.get_namespace_array()
                if nid.NamespaceUri not in ns_array:
                    self._bad_tag(i, ua.StatusCodes.BadNodeIdUnknown,
                                  f"namespace {nid.NamespaceUri!r} not on the server (it has {ns_array})")
                    continue
                nid = ua.NodeId(nid.Identifier, ns_array.index(nid.NamespaceUri), nid.NodeIdType)
            out[i] = nid
        return out

    async def _eu_range(self, client: Client, node: ua.NodeId) -> float | None:
        """High - low of the node's EURange property, or None if it has none."""
        try:
            prop = await client.get_node(node).get_child("0:EURange")
            rng = await prop.read_value()
            return float(rng.High - rng.Low)
        except ua.UaStatusCodeError:
            return None

    async def _prepare_deadbands(self, client: Client, idxs: list[int], nodes: dict[int, ua.NodeId],
                                 poll: bool) -> dict[int, ua.DataChangeFilter]:
        """Server filters (subscribe) or client-side deadbands (poll); percent without EURange -> none."""
        filters: dict[int, ua.DataChangeFilter] = {}
        for i in idxs:
            db = self.device.tags[i].deadband
            if db is None:
                continue
            width = db.value
            if db.type == "percent":
                span = await self._eu_range(client, nodes[i])
                if span is None:
                    self._warn_once(f"eu:{i}", "opcua device=%s tag=%s: percent deadband needs an EURange property, "
                                    "which the server does not give; reporting every change (use an absolute "
                                    "deadband instead)", self.device.id, self.device.tags[i].name)
                    continue
                width = span * db.value / 100.0
            if poll:
                self._deadbands[i] = Deadband(width)
            else:
                f = ua.DataChangeFilter()
                f.Trigger = ua.DataChangeTrigger.StatusValue
                f.DeadbandType = ua.DeadbandType.Absolute if db.type == "absolute" else ua.DeadbandType.Percent
                f.DeadbandValue = db.value
                filters[i] = f
        return filters

    async def _subscribe(self, client: Client, sampling_ms: float, idxs: list[int],
                         nodes: dict[int, ua.NodeId]) -> None:
        if not idxs:
            return
        filters = await self._prepare_deadbands(client, idxs, nodes, poll=False)
        sub = await client.create_subscription(sampling_ms, None, queue_maxsize=0)
        requests = []
        for i in idxs:
            params = ua.MonitoringParameters(ClientHandle=i, SamplingInterval=sampling_ms, QueueSize=10,
                                             DiscardOldest=True, Filter=filters.get(i))
            requests.append(ua.MonitoredItemCreateRequest(
                ItemToMonitor=ua.ReadValueId(NodeId=nodes[i], AttributeId=ua.AttributeIds.Value),
                MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params))
        results = await sub.create_monitored_items(requests)
        for i, res in zip(idxs, results, strict=True):
            if isinstance(res, ua.StatusCode):
                self._bad_tag(i, res.value, f"monitored item refused: {res.name}")
        self._spawn(self._pump(sub))

    # ------------------------------------------------------------------ loops
    async def _pump(self, sub: Subscription) -> None:
        """Turn one subscription's notifications into samples until it ends or reports a Bad status."""
        dev, tags = self.device.id, self.device.tags
        async for ev in sub:
            if isinstance(ev, DataChangeEvent):
                item = ev.data.monitored_item
                self._pending.append(to_sample(dev, tags[item.ClientHandle].name, item.Value))
                self._wake.set()
            elif isinstance(ev, StatusChangeEvent):
                status = ev.notification.Status
                if status is not None and status.is_bad():
                    self._fail(f"subscription ended by server: {status.name}")
                    return
        self._fail("subscription closed")

    async def _poll_loop(self, client: Client, interval_s: float, idxs: list[int],
                         nodes: dict[int, ua.NodeId]) -> None:
        """Read poll tags every interval_s in one Read request (source and server timestamps)."""
        if not idxs:
            return
        params = ua.ReadParameters(TimestampsToReturn=ua.TimestampsToReturn.Both,
                                   NodesToRead=[ua.ReadValueId(NodeId=nodes[i], AttributeId=ua.AttributeIds.Value)
                                                for i in idxs])
        dev, tags = self.device.id, self.device.tags
        next_t = time.monotonic()
        while True:
            try:
                values = await client.uaclient.read(params)
            except _TRANSPORT_ERRORS as exc:
                self._fail(f"poll read failed ({type(exc).__name__}: {exc})")
                return
            for i, dv in zip(idxs, values, strict=True):
                s = to_sample(dev, tags[i].name, dv)
                db = self._deadbands.get(i)
                if db is None or db.passes(s):
                    self._push(s)
            next_t += interval_s
            delay = next_t - time.monotonic()
            if delay < 0:  # overran: skip missed ticks rather than burst
                next_t, delay = time.monotonic(), 0.0
            await asyncio.sleep(delay)
