"""Modbus poll throughput: the edge driver vs bare pymodbus block reads of the same registers.

Both poll the same simulated PLC (run in its own process, so its CPU does not count against either client) with
the same block plan, one request at a time; the bare loop does no decoding and builds no samples. Polls
alternate between the two and each is timed alone, so a busy machine slows both alike. Prints samples/s for
each and the median per-round ratio driver / bare (target >= 0.8).

    python benchmarks/bench_modbus.py [--seconds 2] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymodbus.client import AsyncModbusTcpClient  # noqa: E402

from core.record import now_us  # noqa: E402
from edge.drivers.modbus import ModbusDriver  # noqa: E402
from edge.drivers.modbus.codec import BlockDecoder  # noqa: E402
from edge.drivers.modbus.config import ModbusDevice  # noqa: E402
from simulator.machine import Machine, MachineSpec  # noqa: E402
from simulator.modbus_server import ModbusPlc, device_config  # noqa: E402

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def serve(port: int, ready: mp.synchronize.Event, stop: mp.synchronize.Event) -> None:
    """The PLC process: one machine, values refreshed every 100 ms."""

    async def main() -> None:
        m = Machine(MachineSpec(id="press-01", seed=1, speed=50.0), start_us=now_us())
        plc = ModbusPlc([m], HOST, port)
        await plc.start()
        ready.set()
        while not stop.is_set():
            m.advance_to(now_us())
            plc.update()
            await asyncio.sleep(0.1)
        await plc.stop()

    asyncio.run(main())


async def interleaved(device: ModbusDevice, seconds: float) -> tuple[float, float, int]:
    """Poll with the driver and with a bare client in turns, timing each poll, so load swings hit both alike.

    Returns (driver samples/s, bare samples/s, polls each).
    """
    drv = ModbusDriver(device, logging.getLogger("bench"))
    await drv.connect()
    blocks = drv.blocks
    tags_per_poll = sum(len(b.tags) for b in blocks)
    client = AsyncModbusTcpClient(
        HOST, port=int(device.endpoint.rsplit(":", 1)[1]), retries=0, reconnect_delay=0
    )
    await client.connect()
    unit = device.unit_id
    readers = {
        "holding": client.read_holding_registers,
        "input": client.read_input_registers,
        "coil": client.read_coils,
        "discrete": client.read_discrete_inputs,
    }

    async def bare_poll() -> int:
        for b in blocks:
            rr = await readers[b.table](b.start, count=b.count, device_id=unit)
            if rr.isError():
                raise RuntimeError(f"bare read failed: {rr}")
        return tags_per_poll

    t_drv = t_bare = 0.0
    n_drv = n_bare = polls = 0
    end = time.perf_counter() + seconds
    clock = time.perf_counter
    while clock() < end:
        for which in (0, 1) if polls % 2 else (1, 0):
            t0 = clock()
            if which:
                n_drv += len(await drv.read())
                t_drv += clock() - t0
            else:
                n_bare += await bare_poll()
                t_bare += clock() - t0
        polls += 1
    client.close()
    await drv.close()
    return n_drv / t_drv, n_bare / t_bare, polls


async def decode_cost_us(device: ModbusDevice, polls: int = 20000) -> float:
    """CPU per poll spent decoding (no I/O): the driver's own overhead on top of the round trips."""
    drv = ModbusDriver(device)
    decoders = [BlockDecoder(b) for b in drv.blocks]
    data = [[True] * b.count if b.table in ("coil", "discrete") else [0x4142] * b.count for b in drv.blocks]
    t0 = time.perf_counter()
    for _ in range(polls):
        for dec, regs in zip(decoders, data, strict=True):
            dec.decode(regs)
    return (time.perf_counter() - t0) / polls * 1e6


async def bench(port: int, seconds: float, rounds: int) -> float:
    device = ModbusDevice.model_validate(device_config(["press-01"], HOST, port)[0])
    blocks = ModbusDriver(device).blocks
    print(
        f"device: {len(device.tags)} tags in {len(blocks)} block reads per poll; {rounds} rounds of "
        f"{seconds:.1f} s, driver and bare polls interleaved"
    )
    await interleaved(device, 0.3)  # warm up both paths
    drv_rates, bare_rates = [], []
    for r in range(rounds):
        d, b, polls = await interleaved(device, seconds)
        drv_rates.append(d)
        bare_rates.append(b)
        print(
            f"  round {r + 1:2d}: driver {d:8.0f} samples/s   bare pymodbus {b:8.0f} samples/s   "
            f"({polls} polls each)   ratio {d / b:.3f}"
        )
    d_med, b_med = statistics.median(drv_rates), statistics.median(bare_rates)
    ratio = statistics.median(d / b for d, b in zip(drv_rates, bare_rates, strict=True))
    print(f"median: driver {d_med:.0f} samples/s, bare {b_med:.0f} samples/s")
    print(f"decode cost: {await decode_cost_us(device):.1f} us per poll (pure codec, no I/O)")
    print(f"RATIO driver/bare = {ratio:.3f} (target >= 0.8): {'OK' if ratio >= 0.8 else 'BELOW TARGET'}")
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each timed run")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    port = free_port()
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=serve, args=(port, ready, stop), daemon=True)
    proc.start()
    try:
        if not ready.wait(15):
            print("simulated PLC did not start", file=sys.stderr)
            return 1
        ratio = asyncio.run(bench(port, args.seconds, args.rounds))
    finally:
        stop.set()
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
    return 0 if ratio >= 0.8 else 2


if __name__ == "__main__":
    sys.exit(main())
