#!/usr/bin/env python3
"""Container health checks for Shopfloor processes (installed as `shopfloor-healthcheck` by deploy/Dockerfile).

Each check looks at what the process must hold to be doing its job:
  shopfloor-healthcheck tcp PORT [PORT...]   an ESTABLISHED TCP connection to one of these remote ports
                                             (collector: its MQTT session to the broker, 8883)
  shopfloor-healthcheck fresh SECONDS PATH   PATH or PATH-wal modified within SECONDS (edge: samples are
                                             reaching the store-and-forward buffer)
  shopfloor-healthcheck db                   SHOPFLOOR_DATABASE_URL accepts a connection (kpi job)
  shopfloor-healthcheck http PORT PATH       GET http://127.0.0.1:PORT/PATH answers 200 (api: /healthz, which
                                             also checks its database)
Exit 0 healthy, 1 unhealthy (one line on stderr saying why), 2 usage error. Standard library only, except
`db` (psycopg, installed with shopfloor). Linux only (/proc/net/tcp).
"""

from __future__ import annotations

import os
import sys
import time

_ESTABLISHED = "01"


def established_remote_ports(proc_net: str = "/proc/net") -> set[int]:
    """Remote ports of every ESTABLISHED TCP connection in this network namespace (IPv4 and IPv6)."""
    ports: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc_net, name)) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == _ESTABLISHED:
                        ports.add(int(fields[2].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue
    return ports


def check_tcp(ports: list[int]) -> str | None:
    found = established_remote_ports()
    if found.intersection(ports):
        return None
    return f"no established connection to port {'/'.join(map(str, ports))}"


def check_fresh(max_age_s: float, path: str) -> str | None:
    mtimes = [os.path.getmtime(p) for p in (path, path + "-wal") if os.path.exists(p)]
    if not mtimes:
        return f"{path} does not exist"
    age = time.time() - max(mtimes)
    return None if age <= max_age_s else f"{path} not written for {age:.0f} s (limit {max_age_s:.0f} s)"


def check_db() -> str | None:
    url = os.environ.get("SHOPFLOOR_DATABASE_URL")
    if not url:
        return "SHOPFLOOR_DATABASE_URL is not set"
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        return f"database unreachable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return None


def check_http(port: int, path: str) -> str | None:
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{port}/{path.lstrip('/')}"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (loopback URL built here)
            return None if r.status == 200 else f"{url} answered {r.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}: {exc.read(300).decode(errors='replace').strip()}"
    except OSError as exc:
        return f"{url} unreachable: {exc}"


def main(argv: list[str]) -> int:
    try:
        mode, args = argv[0], argv[1:]
        if mode == "tcp" and args:
            problem = check_tcp([int(a) for a in args])
        elif mode == "fresh" and len(args) == 2:
            problem = check_fresh(float(args[0]), args[1])
        elif mode == "db" and not args:
            problem = check_db()
        elif mode == "http" and len(args) == 2:
            problem = check_http(int(args[0]), args[1])
        else:
            raise ValueError(mode)
    except (IndexError, ValueError):
        print("usage: shopfloor-healthcheck tcp PORT... | fresh SECONDS PATH | db | http PORT PATH", file=sys.stderr)
        return 2
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
