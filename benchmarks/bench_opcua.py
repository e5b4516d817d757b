"""Notifications/s through OpcUaDriver.read() vs a bare asyncua subscription on the same server.

A server subprocess changes NODES Double variables every PERIOD_S; the client process subscribes to all of
them first with a bare asyncua iterator-mode subscription, then through OpcUaDriver, for DURATION_S each,
and prints rate and client CPU per notification. Target: driver/bare >= 0.75. Runs in about 35 s:

    .venv/bin/python benchmarks/bench_opcua.py [--nodes 200] [--period-ms 20] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from asyncua import Client, Server, ua  # noqa: E402
from asyncua.common.subscription import DataChangeEvent  # noqa: E402

from edge.drivers.opcua import OpcUaDriver  # noqa: E402
from edge.drivers.opcua.config import OpcUaDevice  # noqa: E402


async def serve(port: int, nodes: int, period_s: float) -> None:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:shopfloor:bench")
    folder = await server.nodes.objects.add_folder(ua.NodeId("bench", idx), "bench")
    ids = [ua.NodeId(f"v{i}", idx) for i in range(nodes)]
    for nid in ids:
        await folder.add_variable(nid, nid.Identifier, 0.0)
    await server.start()
    print("ready", flush=True)
    k = 0
    while True:
        k += 1
        now = datetime.now(UTC)
        for nid in ids:
            await server.write_attribute_value(nid, ua.DataValue(ua.Variant(float(k), ua.VariantType.Double),
                                                                 SourceTimestamp=now, ServerTimestamp=now))
        await asyncio.sleep(period_s)


async def bare(endpoint: str, nodes: int, seconds: float, sampling_ms: float) -> tuple[int, float]:
    client = Client(endpoint)
    await client.connect()
    sub = await client.create_subscription(sampling_ms, None, queue_maxsize=0)
    await sub.subscribe_data_change([client.get_node(f"ns=2;s=v{i}") for i in range(nodes)],
                                    sampling_interval=sampling_ms)
    count, cpu0, end = 0, time.process_time(), time.monotonic() + seconds
    while time.monotonic() < end:
        ev = await sub.next_event(timeout=0.5)
        if isinstance(ev, DataChangeEvent):
            count += 1
    cpu = time.process_time() - cpu0
    await client.disconnect()
    return count, cpu


async def driver(endpoint: str, nodes: int, seconds: float, sampling_ms: float) -> tuple[int, float]:
    dev = OpcUaDevice(id="bench", protocol="opcua", endpoint=endpoint, security={"policy": "None"}, tags=[
        {"name": f"v{i}", "node": f"ns=2;s=v{i}", "sampling_ms": sampling_ms} for i in range(nodes)])
    drv = OpcUaDriver(dev, logging.getLogger("bench"))
    await drv.connect()
    count, cpu0, end = 0, time.process_time(), time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            count += len(await asyncio.wait_for(drv.read(), 0.5))
        except TimeoutError:
            pass
    cpu = time.process_time() - cpu0
    await drv.close()
    return count, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--period-ms", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--sampling-ms", type=float, default=50.0)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    if a.serve:
        asyncio.run(serve(a.serve, a.nodes, a.period_ms / 1000))
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--nodes", str(a.nodes),
                             "--period-ms", str(a.period_ms)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        endpoint = f"opc.tcp://127.0.0.1:{port}/bench/"
        results = {}
        for name, fn in (("bare asyncua", bare), ("OpcUaDriver", driver)):
            n, cpu = asyncio.run(fn(endpoint, a.nodes, a.seconds, a.sampling_ms))
            results[name] = n / a.seconds
            print(f"{name:13s} {n / a.seconds:10.0f} notifications/s   client CPU {cpu / max(n, 1) * 1e6:6.1f} us each")
        ratio = results["OpcUaDriver"] / max(results["bare asyncua"], 1e-9)
        print(f"ratio driver/bare = {ratio:.2f} (target >= 0.75) nodes={a.nodes} "
              f"server change period={a.period_ms} ms")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
