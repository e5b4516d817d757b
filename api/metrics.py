"""Prometheus metrics: request counts and latencies (kept in process), and what the database holds about the
pipeline (KPI job lag, ingest rate per gateway, quarantine size, device connection state), read at each scrape.

`MetricsMiddleware` is a plain ASGI middleware (no per-request task or body copy); it also refuses over-long
query strings (414) and oversized bodies (413) before any route runs.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

INGEST_WINDOW_S = 300


class Metrics:
    """The process's own metrics, in a registry of its own (one per app, so tests can build many apps)."""

    def __init__(self) -> None:
        self.prefixes: dict[int, str] = {}  # id(route) -> the prefix its router is included under (create_app)
        self.registry = CollectorRegistry()
        self.requests = Counter("shopfloor_api_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("shopfloor_api_request_seconds", "Time to answer a request (until the response "
                                 "starts)", ["route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


class _Refuse(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail


class MetricsMiddleware:
    """Counts and times every HTTP request by route template; refuses oversized requests."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_query_chars: int, max_body_bytes: int) -> None:
        self.app, self.metrics = app, metrics
        self.max_query, self.max_body = max_query_chars, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]
        try:
            self._check_size(scope)

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = int(message["status"])
                    self.metrics.latency.labels(self._route(scope)).observe(time.perf_counter() - t0)
                await send(message)

            await self.app(scope, self._limited(receive), send_status)
        except _Refuse as exc:
            status[0] = exc.status
            await _json(send, exc.status, exc.detail)
        self.metrics.requests.labels(scope.get("method", ""), self._route(scope), str(status[0])).inc()

    def _route(self, scope: Scope) -> str:
        """The matched route's path template with its router prefix ("/api/v1/kpis"), or "unmatched"."""
        route = scope.get("route")
        if route is None:
            return "unmatched"
        return self.metrics.prefixes.get(id(route), "") + str(getattr(route, "path", ""))

    def _check_size(self, scope: Scope) -> None:
        query = scope.get("query_string", b"")
        if len(query) > self.max_query:
            raise _Refuse(414, f"the query string is longer than {self.max_query} characters: shorten it")
        if b"%00" in query or b"\x00" in query:
            raise _Refuse(400, "the query string contains a NUL character (%00): remove it")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise _Refuse(413, f"the request body is larger than {self.max_body} bytes: send less")

    def _limited(self, receive: Receive) -> Receive:
        seen = [0]

        async def inner() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body:
                    raise _Refuse(413, f"the request body is larger than {self.max_body} bytes: send less")
            return message

        return inner


async def _json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def pipeline_metrics(conn: psycopg.AsyncConnection[Any]) -> bytes:
    """What the database holds about the pipeline, in the Prometheus text format."""
    reg = CollectorRegistry()
    fams: list[GaugeMetricFamily] = []
    lag = GaugeMetricFamily("shopfloor_kpi_job_lag_seconds", "Seconds between now and how far the KPI job has "
                            "computed each machine", labels=["asset"])
    for asset, seconds in await _rows(conn, """SELECT asset_id, extract(epoch FROM now() - computed_until)
                                               FROM kpi_watermarks WHERE computed_until IS NOT NULL"""):
        lag.add_metric([str(asset)], float(seconds))
    fams.append(lag)
    rate = GaugeMetricFamily("shopfloor_ingest_rows_per_second", f"Sample rows ingested per second over the last "
                             f"{INGEST_WINDOW_S} s, by edge gateway", labels=["gateway"])
    for gw, n in await _rows(conn, f"""SELECT gateway_id, count(*) FROM samples
                                      WHERE ingested_at >= now() - interval '{INGEST_WINDOW_S} seconds'
                                      GROUP BY gateway_id"""):
        rate.add_metric([str(gw)], int(n) / INGEST_WINDOW_S)
    fams.append(rate)
    quarantine = GaugeMetricFamily("shopfloor_quarantine_messages", "Payloads kept in quarantine for a person")
    quarantine.add_metric([], float((await _rows(conn, "SELECT count(*) FROM quarantine"))[0][0]))
    fams.append(quarantine)
    connected = GaugeMetricFamily("shopfloor_device_connected", "1 when the device's last reported connection "
                                  "state is connected", labels=["device", "gateway"])
    for dev, gw, state in await _rows(conn, """SELECT DISTINCT ON (device_id) device_id, gateway_id, state
                                              FROM device_status ORDER BY device_id, ts DESC, state DESC"""):
        connected.add_metric([str(dev), str(gw)], 1.0 if state == "connected" else 0.0)
    fams.append(connected)

    class _Static:
        def collect(self) -> list[GaugeMetricFamily]:
            return fams

    reg.register(_Static())  # type: ignore[arg-type]
    return generate_latest(reg)


async def _rows(conn: psycopg.AsyncConnection[Any], sql: str) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql)  # type: ignore[arg-type]  # constant SQL, no user input
    return await cur.fetchall()
