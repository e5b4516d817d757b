"""A live stack for the dashboard's browser tests, screenshots and benchmark: simulated factory -> edge ->
collector (single-node) -> KPI job -> API with the dashboard, all on loopback, in threads of this process.

    with LiveStack(database_url, broker=("127.0.0.1", 1883), workdir=tmp) as stack:
        stack.url("/?token=" + stack.token("manager"))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
import yaml

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """Debian's chromium (or $SHOPFLOOR_CHROMIUM); None when the machine has none."""
    for cand in (os.environ.get("SHOPFLOOR_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if cand and os.path.exists(cand):
            return cand
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveStack:
    """Starts everything on enter, stops it on exit; `url(path)` is the dashboard's address."""

    def __init__(self, database_url: str, broker: tuple[str, int], workdir: Path, speed: float = 5.0,
                 kpi_interval_s: float = 2.0, refresh_s: float = 2.0) -> None:
        from simulator.factory import Factory, FactoryPlan

        self.database_url = database_url
        self.workdir = workdir
        self.kpi_interval_s = kpi_interval_s
        self.refresh_s = refresh_s
        self.plan = FactoryPlan(modbus=2, opcua=1, mqtt=1, sparkplug=1, speed=speed, modbus_port=_free_port(),
                                opcua_port=_free_port(), broker_host=broker[0], broker_port=broker[1],
                                poll_interval_s=0.25, tick_s=0.05)
        self.factory = Factory(self.plan)
        self.port = _free_port()
        self._stop = threading.Event()
        self._kpi_lock = threading.Lock()  # held by a KPI pass, and by kpis_paused() while a test compares
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._edge_stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._server: Any = None
        self.cfg: Any = None
        self._env: dict[str, str | None] = {}

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LiveStack:
        from core.config import parse_config
        from shopfloor.wiring import prepare_database

        doc = self.factory.plant_config("sim-plant")
        doc["edge"] = {"gateway_id": f"gw-{uuid.uuid4().hex[:6]}", "buffer_path": str(self.workdir / "buf.sqlite"),
                       "batch_max_delay_s": 0.1}
        self.config_path = self.workdir / "plant.yaml"
        self.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.cfg = parse_config(self.config_path.read_text(), str(self.config_path))
        prepare_database(self.database_url, self.cfg, log_line=lambda _: None)
        from api.evidence.signing import keygen

        self.signing_key, self.public_key = keygen(self.workdir / "keys")
        self._env = {k: os.environ.get(k) for k in ("SHOPFLOOR_SIGNING_KEY", "SHOPFLOOR_DASHBOARD_REFRESH_S")}
        os.environ["SHOPFLOOR_SIGNING_KEY"] = str(self.signing_key)  # read by POST /api/v1/evidence
        os.environ["SHOPFLOOR_DASHBOARD_REFRESH_S"] = str(self.refresh_s)
        self._spawn(self._run_loop, "factory-edge")
        if not self._ready.wait(30):
            raise RuntimeError("the simulated factory and edge did not start within 30 s")
        self._spawn(self._run_kpi, "kpi-job")
        self._spawn(self._run_api, "api")
        deadline = time.time() + 30
        while not (self._server is not None and self._server.started):
            if time.time() > deadline:
                raise RuntimeError("the API did not start within 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._loop is not None and self._edge_stop is not None:
            self._loop.call_soon_threadsafe(self._edge_stop.set)
        for t in self._threads:
            t.join(20)
        for k, v in self._env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _run_loop(self) -> None:
        from edge.runner import Edge
        from shopfloor.wiring import InProcessSink

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._edge_stop = asyncio.Event()
            await self.factory.start()
            edge = Edge(self.cfg, InProcessSink(self.database_url))
            task = asyncio.create_task(edge.run(self._edge_stop))
            self._ready.set()
            await self._edge_stop.wait()
            await task
            await self.factory.stop()

        asyncio.run(main())

    def _run_kpi(self) -> None:
        """The KPI job's loop (a pass every kpi_interval_s), pausable by kpis_paused()."""
        from kpi.job import run_once

        while not self._stop.is_set():
            with self._kpi_lock:
                try:
                    run_once(self.database_url, self.cfg)
                except Exception:  # as the service does: log the failed pass and try again next time
                    logging.getLogger(__name__).exception("kpi pass failed")
            self._stop.wait(self.kpi_interval_s)

    @contextlib.contextmanager
    def kpis_paused(self) -> Iterator[None]:
        """No KPI pass runs inside this block (one under way is waited for), so stored values hold still."""
        with self._kpi_lock:
            yield

    def _run_api(self) -> None:
        import uvicorn

        from api.app import create_app
        from api.settings import Settings

        app = create_app(Settings(database_url=self.database_url, config_path=self.config_path), self.cfg)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     access_log=False))
        self._server.run()

    # ------------------------------------------------------------------ helpers
    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def token(self, role: str) -> str:
        """A fresh API token with this role."""
        from api.auth import create_token

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return create_token(conn, role, name=f"test-{role}")[1]

    def run_kpis_now(self) -> None:
        """One KPI pass now (as the job does every kpi_interval_s), so stored values are fresh."""
        from kpi.job import run_once

        run_once(self.database_url, self.cfg)

    def stop_machine(self, machine_id: str) -> None:
        """Hold a simulated machine in state down from now on (the PLC shows it on its next tick)."""
        m = next(m for m in self.factory.machines if m.spec.id == machine_id)
        assert self._loop is not None

        def hold() -> None:
            from core.times import now_us

            t = now_us()
            m.advance_to(t)
            m.intervals.append((m._state_start_us, t, m.state))
            m.state, m._state_start_us, m._state_end_us = "down", t, 1 << 62

        self._loop.call_soon_threadsafe(hold)
