"""The demo's HTTP API: one uvicorn server in a thread, and a viewer token to try it with."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from core.plant import PlantConfig

log = logging.getLogger(__name__)


def start_api(database_url: str, cfg_path: Path, cfg: PlantConfig, port: int,
              host: str = "127.0.0.1") -> tuple[str, str, Callable[[], None]]:
    """Serve the API on host:port (schema already migrated); returns (base URL, viewer token, stop)."""
    import psycopg
    import uvicorn

    from api.app import create_app
    from api.auth import create_token
    from api.settings import Settings

    with psycopg.connect(database_url, autocommit=True) as conn:
        _, token = create_token(conn, "viewer", name="demo viewer")
    app = create_app(Settings(database_url=database_url, config_path=cfg_path), cfg)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        log.warning("event=demo_api_not_started port=%d hint='is the port free? the demo runs on without the API'",
                    port)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://{host}:{port}", token, stop


def api_lines(url: str, token: str) -> str:
    """What the demo prints about the API."""
    return (f"HTTP API          {url}/docs   (viewer token, shown once: {token})\n"
            f"  curl -H 'Authorization: Bearer {token}' {url}/api/v1/assets\n"
            f"  curl -H 'Authorization: Bearer {token}' '{url}/api/v1/networking-rate?from=...&to=...'\n"
            "  more tokens: shopfloor api token create --role manager --database-url ...")
