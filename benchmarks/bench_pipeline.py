"""End-to-end pipeline: simulated PLCs -> edge (disk buffer, forwarder) -> MQTT -> collector -> PostgreSQL.

    python benchmarks/bench_pipeline.py --machines 200 --tags 50 --hz 10 --seconds 20 --mode uplink
    python benchmarks/bench_pipeline.py --machines 200 --tags 50 --hz 10 --seconds 20 --mode single-node

Creates and drops its own database (migrated with the real schema). Every stage is the real code:
`edge.runner.Edge` (DeviceRunner per device, SQLite store-and-forward, Forwarder), `edge.uplink.MqttSink`, a
private mosquitto on a free port, `collector.ingest.Collector` (own process), `collector.writer.SampleWriter`;
single-node mode replaces the MQTT hop with `shopfloor.wiring.InProcessSink` in the edge process.

Load source (`--source`):
  modbus     real Modbus TCP: a simulated PLC process (pymodbus server, machine i = unit id i + 1, `--tags`
             uint16 holding registers refreshed every 100 ms) polled by the real ModbusDriver at `--hz`.
  synthetic  the real DeviceRunner poll loop with an in-process driver that returns `--tags` fresh samples
             per poll (no network): use it when the PLC simulator itself cannot produce the load on 2 cores.

Measured (all from the database, after the run, so measuring costs nothing during it):
  sustained samples/s  rows whose ingested_at falls in the steady window (after warm-up) / window length
  latency p50/p99      samples.ingested_at - samples.ts for rows whose source time is in the steady window
                       (ingested_at = now() of the collector's transaction, i.e. just before its commit)
  edge backlog         samples in the disk buffer + not yet flushed, every second (from the edge process)
  CPU per process      /proc utime+stime over the steady window (edge, collector, mosquitto, PLC, postgres)
Reference measured in the same run (the ratio): raw binary COPY of the same rows into the same table (the
table is truncated and the rows the pipeline wrote are copied back, one COPY + commit per --ref-batch rows,
pre-built tuples, nothing else). `--profile DIR` records py-spy flame data of the edge and collector
processes during the steady window and prints the top frames.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from benchdb import create_db, drop_db  # noqa: E402

HOST = "127.0.0.1"
HERE = Path(__file__).resolve()
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def emit_json(**kw: Any) -> None:
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


# =========================================================================== role: simulated PLC


def role_plc(args: argparse.Namespace) -> None:
    """One pymodbus server, `machines` unit ids, `tags` uint16 holding registers each, refreshed every 100 ms."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    ntags = args.tags

    class WidePlc:
        """A wide register image served the way simulator.modbus_server.ModbusPlc serves its machines: a
        SimDevice per unit whose action hook copies the current image in before each request is answered."""

        def __init__(self, machines: int, port: int) -> None:
            self.machines = list(range(machines))
            self.port = port
            self.requests = 0
            self.tick = 0
            self.images: list[list[int]] = [[] for _ in self.machines]
            self.server: Any = None
            self.update()

        def update(self) -> None:
            self.tick += 1
            t = self.tick
            for k in self.machines:
                self.images[k] = [(t * 7 + k * 131 + j) & 0xFFFF for j in range(ntags)]

        async def action(self, index: int, function_code: int, start: int, address: int, count: int,
                         registers: list[int], set_values: Any) -> None:
            self.requests += 1
            if function_code == 3 and set_values is None:
                registers[: ntags] = self.images[index]

        def device(self, index: int) -> SimDevice:
            return SimDevice(id=index + 1, simdata=(
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, count=max(ntags, 1), values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]),
                action=partial(self.action, index))

        async def start(self) -> None:
            self.server = ModbusTcpServer([self.device(k) for k in self.machines], address=(HOST, self.port),
                                          ignore_missing_devices=True)
            await self.server.serve_forever(background=True)

        async def stop(self) -> None:
            await self.server.shutdown()

    async def main() -> None:
        plc = WidePlc(args.machines, args.plc_port)
        await plc.start()
        emit_json(event="ready")
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        while not stop.is_set():
            plc.update()
            try:
                await asyncio.wait_for(stop.wait(), 0.1)
            except TimeoutError:
                pass
        await plc.stop()
        emit_json(event="stopped", requests=plc.requests)

    asyncio.run(main())


# =========================================================================== role: edge


class SyntheticDriver:
    """Stands in for a protocol driver: every poll returns `tags` fresh samples stamped now (no I/O)."""

    kind = "synthetic"

    def __init__(self, device: Any, log: logging.Logger | None = None) -> None:
        from core.record import Sample, now_us

        self._Sample, self._now = Sample, now_us
        self.device = device
        self.poll_interval_s = device.poll_interval_s
        self.on_state = None
        self._names = [t.name for t in device.tags]
        self._n = 0

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def read(self) -> list[Any]:
        ts = self._now()
        self._n += 1
        n, dev, S = self._n, self.device.id, self._Sample  # noqa: N806
        return [S(dev, name, ts, value=float((n + j) % 1000)) for j, name in enumerate(self._names)]


def plant_dict(args: argparse.Namespace, buffer_path: str) -> dict[str, Any]:
    tags = [{"name": f"t{j:03d}", "address": 40001 + j, "type": "uint16"} for j in range(args.tags)]
    devices = [{"id": f"m{k:04d}", "protocol": "modbus", "endpoint": f"tcp://{HOST}:{args.plc_port or 502}",
                "unit_id": k + 1, "poll_interval_s": 1.0 / args.hz, "timeout_s": 5.0, "tags": tags}
               for k in range(args.machines)]
    return {"plant": {"id": "bench"}, "devices": devices,
            "edge": {"gateway_id": "gw-bench", "buffer_path": buffer_path, "buffer_max_mb": 2048,
                     "batch_max_samples": args.batch_max_samples, "batch_max_delay_s": 0.2}}


def role_edge(args: argparse.Namespace) -> None:
    from core.plant import PlantConfig
    from edge.drivers import driver_class
    from edge.runner import Edge

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    drivers = (lambda protocol: SyntheticDriver) if args.source == "synthetic" else driver_class
    cfg = PlantConfig.model_validate(plant_dict(args, args.buffer_path))
    if args.mode == "uplink":
        from edge.uplink import MqttSink
        sink: Any = MqttSink(args.broker_url, "gw-bench")
    else:
        from shopfloor.wiring import InProcessSink
        sink = InProcessSink(args.db_url)
    e = Edge(cfg, sink, drivers=drivers)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        run = asyncio.create_task(e.run(stop))
        t0 = time.time()
        emit_json(event="started", t=t0)
        lag_max = 0.0
        while not stop.is_set():
            t_tick = time.monotonic()
            await asyncio.sleep(1.0)
            lag = time.monotonic() - t_tick - 1.0  # event-loop lag: the edge process is saturated when high
            lag_max = max(lag_max, lag)
            emitted = e.stats.emitted_samples
            connected = sum(1 for h in e.stats.devices.values() if h.connected)
            emit_json(event="tick", t=time.time(), emitted=emitted, buffered=e.buffer.queued_samples,
                      unflushed=e.unflushed_samples, confirmed=e.forwarder.confirmed_samples,
                      in_flight=e.forwarder.in_flight_batches, sent=e.forwarder.sent_batches,
                      resent=e.forwarder.resent_batches, dropped=e.buffer.dropped_samples,
                      connected=connected, loop_lag_s=round(lag, 3))
            if time.time() - t0 >= args.seconds:
                stop.set()
        emit_json(event="stopping", t=time.time(), emitted=e.stats.emitted_samples)
        await run
        emit_json(event="stopped", t=time.time(), emitted=e.stats.emitted_samples,
                  left_in_buffer=e.buffer.queued_samples,
                  confirmed=e.forwarder.confirmed_samples, lag_max=lag_max)

    asyncio.run(main())


# =========================================================================== role: collector


def role_collector(args: argparse.Namespace) -> None:
    from collector.ingest import Collector

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    c = Collector(args.db_url, args.broker_url, batch_max_rows=args.collector_batch_rows,
                  client_id=f"bench-collector-{uuid.uuid4().hex[:6]}")

    def report() -> None:
        while not stop.wait(1.0):
            emit_json(event="tick", t=time.time(), messages=c.stats.messages, batches=c.stats.batches,
                      written=c.stats.samples_written, duplicates=c.stats.duplicates, queue=c.queued_messages)

    threading.Thread(target=report, daemon=True).start()
    emit_json(event="started")
    c.run(stop)
    emit_json(event="stopped", written=c.stats.samples_written, duplicates=c.stats.duplicates,
              messages=c.stats.messages)


# =========================================================================== orchestration


class Child:
    """A subprocess of this script (or any command) whose JSON stdout lines are collected by a thread."""

    def __init__(self, name: str, cmd: list[str], log_dir: Path) -> None:
        self.name = name
        self.err = open(log_dir / f"{name}.stderr", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.lines: list[dict[str, Any]] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            with self._cv:
                self.lines.append(doc)
                self._cv.notify_all()

    def wait_event(self, event: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for d in self.lines:
                    if d.get("event") == event:
                        return d
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self._cv.wait(min(left, 0.2))

    def ticks(self) -> list[dict[str, Any]]:
        with self._cv:
            return [d for d in self.lines if d.get("event") == "tick"]

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def postgres_pids() -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() == "postgres":
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def cpu_snapshot(procs: dict[str, int]) -> dict[str, float]:
    snap = {name: cpu_seconds(pid) for name, pid in procs.items()}
    snap["postgres (all)"] = sum(cpu_seconds(p) for p in postgres_pids())
    with open("/proc/stat") as f:  # whole machine: user nice system irq softirq steal (not idle/iowait)
        v = [int(x) for x in f.readline().split()[1:9]]
    snap["_machine"] = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK
    return snap


def start_mosquitto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=open(work / "mosquitto.log", "w"))  # noqa: SIM115
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("mosquitto did not start (see mosquitto.log)")






def db_count(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        return int(c.execute("SELECT count(*) FROM samples").fetchone()[0])  # type: ignore[index]


def analyse(url: str, w0: float, w1: float) -> dict[str, Any]:
    """Throughput and latency from the rows themselves (w0..w1: steady window, epoch seconds)."""
    with psycopg.connect(url, autocommit=True) as c:
        total = c.execute("SELECT count(*), min(ingested_at), max(ingested_at) FROM samples").fetchone()
        in_window = c.execute("SELECT count(*) FROM samples WHERE ingested_at >= to_timestamp(%s) "
                              "AND ingested_at < to_timestamp(%s)", (w0, w1)).fetchone()[0]  # type: ignore[index]
        lat = c.execute("""SELECT count(*),
                 percentile_cont(ARRAY[0.5, 0.99, 1.0]) WITHIN GROUP
                     (ORDER BY extract(epoch FROM ingested_at - ts))
               FROM samples WHERE ts >= to_timestamp(%s) AND ts < to_timestamp(%s)""", (w0, w1)).fetchone()
        per_s = c.execute("""SELECT floor(extract(epoch FROM ingested_at) - %s)::int AS s, count(*),
                 percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM ingested_at - ts))
               FROM samples GROUP BY 1 ORDER BY 1""", (w0,)).fetchall()
    assert total is not None and lat is not None
    return {"rows_total": int(total[0]), "rows_in_window": int(in_window), "sustained": in_window / (w1 - w0),
            "lat_rows": int(lat[0]), "p50": lat[1][0] if lat[1] else None, "p99": lat[1][1] if lat[1] else None,
            "max": lat[1][2] if lat[1] else None, "per_s": [(int(s), int(n), float(p)) for s, n, p in per_s]}


def raw_copy_reference(url: str, limit: int, batch: int) -> tuple[float, int]:
    """The floor: the pipeline's own rows copied back with one binary COPY + commit per batch, best of 2."""
    from collector.writer import COLUMNS, COPY_SAMPLES, TYPES

    cols = ", ".join(COLUMNS)

    with psycopg.connect(url, autocommit=True) as c:
        rows = c.execute(f"SELECT {cols} FROM samples ORDER BY ingested_at LIMIT %s", (limit,)).fetchall()
    best = 0.0
    for _ in range(2):
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("TRUNCATE samples")
            c.execute("CHECKPOINT")
        with psycopg.connect(url) as c:
            t = time.perf_counter()
            for i in range(0, len(rows), batch):
                with c.cursor() as cur, cur.copy(COPY_SAMPLES) as cp:
                    cp.set_types(TYPES)
                    for r in rows[i:i + batch]:
                        cp.write_row(r)
                c.commit()
            best = max(best, len(rows) / (time.perf_counter() - t))
    return best, len(rows)


def summarize_pyspy(path: Path, top: int = 18) -> str:
    """Collapsed stacks (py-spy --format raw) -> top frames by own time and by inclusive time."""
    if not path.exists():
        return f"  (no profile: {path.name} missing)"
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        own[_short(frames[-1])] += k
        for f in {_short(f) for f in frames}:
            incl[f] += k
    if not total:
        return "  (empty profile)"
    out = [f"  {total} samples (active time only)", "  own time:"]
    out += [f"    {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    out.append("  inclusive (project code):")
    proj = [(f, n) for f, n in incl.most_common() if any(p in f for p in ("edge/", "collector/", "bench_pipeline"))]
    out += [f"    {n / total:6.1%}  {f}" for f, n in proj[:top]]
    return "\n".join(out)


def _short(frame: str) -> str:
    # "func (/abs/path/pkg/file.py:123)" -> "func (pkg/file.py)"
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")").rsplit(":", 1)[0]
    parts = loc.split("/")
    return f"{name} ({'/'.join(parts[-2:])})"


def orchestrate(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="sf_bench_pipe_"))
    me = [sys.executable, str(HERE)]
    common = ["--machines", str(args.machines), "--tags", str(args.tags), "--hz", str(args.hz),
              "--seconds", str(args.seconds), "--mode", args.mode, "--source", args.source,
              "--batch-max-samples", str(args.batch_max_samples),
              "--collector-batch-rows", str(args.collector_batch_rows)]
    target = args.machines * args.tags * args.hz
    print(f"pipeline benchmark: mode={args.mode} source={args.source} {args.machines} machines x {args.tags} tags x "
          f"{args.hz:g} Hz = {target:,.0f} samples/s offered, {args.seconds:g} s; work dir {work}", flush=True)
    url = create_db(args.database_url, args.timescaledb, "sf_bench_pipe")
    children: list[Child] = []
    mosq: subprocess.Popen[bytes] | None = None
    profilers: list[subprocess.Popen[bytes]] = []
    rc = 0
    try:
        procs: dict[str, int] = {}
        broker_url = ""
        if args.mode == "uplink":
            mosq, mport = start_mosquitto(work)
            procs["mosquitto"] = mosq.pid
            broker_url = f"mqtt://{HOST}:{mport}"
            col = Child("collector", [*me, "--role", "collector", *common, "--db-url", url, "--broker-url", broker_url],
                        work)
            children.append(col)
            if col.wait_event("started", 30) is None:
                raise RuntimeError(f"collector did not start: see {work}/collector.stderr")
            procs["collector"] = col.proc.pid
        plc_port = 0
        if args.source == "modbus":
            plc_port = free_port()
            plc = Child("plc", [*me, "--role", "plc", *common, "--plc-port", str(plc_port)], work)
            children.append(plc)
            if plc.wait_event("ready", 60) is None:
                raise RuntimeError(f"simulated PLC did not start: see {work}/plc.stderr")
            procs["plc (simulator)"] = plc.proc.pid
        time.sleep(0.5)
        edge = Child("edge", [*me, "--role", "edge", *common, "--db-url", url, "--broker-url", broker_url,
                              "--plc-port", str(plc_port), "--buffer-path", str(work / "buffer.sqlite")], work)
        children.append(edge)
        started = edge.wait_event("started", 60)
        if started is None:
            raise RuntimeError(f"edge did not start: see {work}/edge.stderr")
        procs["edge"] = edge.proc.pid
        t0 = float(started["t"])
        warm = min(5.0, args.seconds / 4)
        w0, w1 = t0 + warm, t0 + args.seconds
        time.sleep(max(0.0, w0 - time.time()))
        cpu0, c0 = cpu_snapshot(procs), time.time()
        if args.profile:
            pdir = Path(args.profile)
            pdir.mkdir(parents=True, exist_ok=True)
            dur = max(1, int(w1 - time.time() - 1))
            for name in ("edge", "collector"):
                if name in procs:
                    profilers.append(subprocess.Popen(
                        ["py-spy" if shutil.which("py-spy") else str(Path(sys.executable).with_name("py-spy")),
                         "record", "--pid", str(procs[name]), "--duration", str(dur), "--rate", "200",
                         "--format", "raw", "--nonblocking", "--output", str(pdir / f"{name}.txt")],
                        stdout=subprocess.DEVNULL, stderr=open(pdir / f"{name}.pyspy.log", "w")))  # noqa: SIM115
        time.sleep(max(0.0, w1 - time.time()))
        cpu1, c1 = cpu_snapshot(procs), time.time()
        stopping = edge.wait_event("stopping", 30)
        # drain: the edge gives the uplink 5 s on shutdown; then wait until the database stops growing
        edge.proc.wait(60)
        stopped = edge.wait_event("stopped", 5) or {}
        last, stable = -1, 0
        deadline = time.monotonic() + args.drain
        while time.monotonic() < deadline and stable < 2:
            n = db_count(url)
            stable = stable + 1 if n == last else 0
            last = n
            time.sleep(0.5)
        for p in profilers:
            p.wait(30)

        emitted = int(stopped.get("emitted", (stopping or {}).get("emitted", 0)))
        ticks = edge.ticks()
        res = analyse(url, w0, w1)
        in_window_emitted = _emitted_between(ticks, w0, w1)
        offered = in_window_emitted / (w1 - w0) if in_window_emitted else 0.0

        print("\nedge backlog per second (t from edge start; buffered = in SQLite, unflushed = not yet written; "
              "loop lag = asyncio lateness of a 1 s sleep):")
        print("    t   emitted/s   buffered  unflushed  in-flight  loop lag  devices up")
        prev = None
        for d in ticks:
            rate = (d["emitted"] - prev["emitted"]) / (d["t"] - prev["t"]) if prev else d["emitted"]
            prev = d
            print(f"  {d['t'] - t0:4.0f} {rate:11,.0f} {d['buffered']:10,} {d['unflushed']:10,} "
                  f"{d['in_flight']:10} {d['loop_lag_s']:8.3f}  {d['connected']:6}/{args.machines}")
        print("\ndatabase per second (t from steady-window start; rows by ingested_at, p99 latency of those rows):")
        for s, n, p99 in res["per_s"]:
            print(f"  {s:4d} {n:10,} rows  p99 {p99:6.2f} s")
        span = c1 - c0
        print(f"\nCPU over the steady window ({span:.1f} s; 1.00 = one full core; machine has {os.cpu_count()}):")
        mine = 0.0
        for name in cpu1:
            if name != "_machine":
                mine += cpu1[name] - cpu0.get(name, 0.0)
                print(f"  {name:<18} {(cpu1[name] - cpu0.get(name, 0.0)) / span:5.2f} cores")
        other = (cpu1["_machine"] - cpu0["_machine"] - mine) / span
        print(f"  {'everything else':<18} {other:5.2f} cores  (other processes on the machine; > 0.2 = noisy run)")

        ref, ref_n = raw_copy_reference(url, args.ref_rows, args.ref_batch)
        emitted_total = emitted
        lost = emitted_total - res["rows_total"]
        print("\nRESULT")
        print(f"  offered (emitted by drivers, steady window): {offered:12,.0f} samples/s (target {target:,.0f})")
        print(f"  sustained into PostgreSQL:                   {res['sustained']:12,.0f} samples/s "
              f"({res['rows_in_window']:,} rows in {w1 - w0:.1f} s)")
        if res["p50"] is not None:
            print(f"  latency ingested_at - ts (source time in window, {res['lat_rows']:,} rows): "
                  f"p50 {res['p50']:.3f} s   p99 {res['p99']:.3f} s   max {res['max']:.3f} s")
        fate = "every one delivered" if lost == 0 else \
            f"{lost:,} not in the database" if lost > 0 else f"{-lost:,} more rows than emitted: duplicates?"
        print(f"  delivered after drain: {res['rows_total']:,} of {emitted_total:,} emitted, counting the bad-quality "
              f"sample per tag written at disconnect ({fate}; edge: {stopped.get('confirmed')} confirmed, "
              f"{stopped.get('left_in_buffer')} left in its buffer)")
        print(f"  raw binary COPY reference (same {ref_n:,} rows, same table, {args.ref_batch} rows/commit, "
              f"no other stage of this benchmark running): {ref:,.0f} samples/s")
        ratio = res["sustained"] / ref if ref else 0.0
        print(f"  RATIO pipeline / raw COPY = {ratio:.3f}  ({ratio:.1%})")
        print(f"  pipeline / offered = {res['sustained'] / offered if offered else 0:.3f}   "
              f"pipeline / target = {res['sustained'] / target:.3f}   "
              f"p99 {'<' if (res['p99'] or 99) < 2 else '>='} 2 s")
        if args.profile:
            for name in ("edge", "collector"):
                if name in procs:
                    print(f"\npy-spy {name} ({Path(args.profile) / (name + '.txt')}):")
                    print(summarize_pyspy(Path(args.profile) / f"{name}.txt"))
    except Exception as exc:  # noqa: BLE001 - report and clean up
        print(f"FAILED: {exc}", file=sys.stderr)
        rc = 1
    finally:
        for p in profilers:
            if p.poll() is None:
                p.kill()
        for ch in reversed(children):
            ch.stop()
        if mosq is not None:
            mosq.terminate()
            mosq.wait(10)
        drop_db(args.database_url, url)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return rc


def _emitted_between(ticks: list[dict[str, Any]], w0: float, w1: float) -> int:
    """Samples the drivers produced between w0 and w1, interpolated from the edge's per-second ticks."""
    if len(ticks) < 2:
        return 0

    def at(t: float) -> float:
        prev = {"t": ticks[0]["t"] - 1.0, "emitted": 0}
        for d in ticks:
            if d["t"] >= t:
                f = (t - prev["t"]) / (d["t"] - prev["t"]) if d["t"] > prev["t"] else 1.0
                return prev["emitted"] + f * (d["emitted"] - prev["emitted"])
            prev = d
        return float(ticks[-1]["emitted"])

    return int(at(w1) - at(w0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="admin URL; the benchmark creates and drops its own database")
    ap.add_argument("--machines", type=int, default=20)
    ap.add_argument("--tags", type=int, default=50)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="load duration (first min(5, s/4) s are warm-up)")
    ap.add_argument("--mode", choices=("uplink", "single-node"), default="uplink")
    ap.add_argument("--source", choices=("modbus", "synthetic"), default="modbus")
    ap.add_argument("--batch-max-samples", type=int, default=5000, help="edge.batch_max_samples")
    ap.add_argument("--collector-batch-rows", type=int, default=20000, help="collector.batch_max_rows")
    ap.add_argument("--timescaledb", action="store_true", help="migrate with CREATE EXTENSION timescaledb")
    ap.add_argument("--ref-rows", type=int, default=400_000, help="rows copied back for the raw COPY reference")
    ap.add_argument("--ref-batch", type=int, default=5000)
    ap.add_argument("--drain", type=float, default=30.0, help="max seconds to wait for the database after the load")
    ap.add_argument("--profile", metavar="DIR", help="py-spy the edge and collector during the steady window")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, buffer)")
    # internal: child roles
    ap.add_argument("--role", choices=("plc", "edge", "collector"), help=argparse.SUPPRESS)
    ap.add_argument("--db-url", help=argparse.SUPPRESS)
    ap.add_argument("--broker-url", help=argparse.SUPPRESS)
    ap.add_argument("--plc-port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--buffer-path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "plc":
        role_plc(args)
        return 0
    if args.role == "edge":
        role_edge(args)
        return 0
    if args.role == "collector":
        role_collector(args)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
