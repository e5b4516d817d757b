"""Embedded services for the demo: a private PostgreSQL (pgserver) and an MQTT broker (mosquitto or amqtt)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout_s} s")


def embedded_postgres(datadir: Path) -> tuple[str, Any]:
    """Start (or reuse) a private PostgreSQL under datadir; returns (url, handle)."""
    try:
        import pgserver
    except ImportError as exc:
        raise RuntimeError("embedded PostgreSQL needs the 'demo' extra (pip install 'shopfloor[demo]'), "
                           "or pass --database-url") from exc
    datadir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(datadir.resolve(), cleanup_mode="stop")
    return server.get_uri(), server


class EmbeddedBroker:
    """Mosquitto on a free loopback port when the binary exists (MQTT 5), else amqtt in a thread (3.1.1 only)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.kind = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def mqtt5(self) -> bool:
        return self.kind == "mosquitto"

    def start(self) -> None:
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe:
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                            "max_queued_messages 100000\n")
            self._proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.kind = "mosquitto"
        else:
            self._thread = threading.Thread(target=self._amqtt, name="amqtt", daemon=True)
            self._thread.start()
            self.kind = "amqtt"
        wait_port("127.0.0.1", self.port)

    def _amqtt(self) -> None:
        from amqtt.broker import Broker

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                             "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}})
            await broker.start()
            await self._stop.wait()
            await broker.shutdown()

        asyncio.run(main())

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            if self._thread is not None:
                self._thread.join(5)
