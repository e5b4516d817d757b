"""OPC UA driver, browse and simulated PLC against a real asyncua server on loopback.

Each test starts its own OpcUaPlc (asyncua's Server takes ~4 s to start), so behaviours share tests where
they can share a server.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import ua

from core.config import parse_config
from core.record import Quality, Sample, now_us
from edge.driver import DriverContext
from edge.drivers import driver_class
from edge.drivers.opcua import OpcUaDriver
from edge.drivers.opcua.browse import browse
from edge.drivers.opcua.config import OpcUaDevice
from edge.drivers.opcua.security import generate_certificate
from edge.errors import NotConnected
from simulator.machine import Machine, MachineSpec
from simulator.opcua_server import NS, SIM_PASSWORD, SIM_USER, OpcUaPlc, device_config, node_id

pytestmark = pytest.mark.integration
LOG = logging.getLogger("test.opcua")
CTX = DriverContext(LOG)


def machine(mid: str = "m1") -> Machine:
    return Machine(MachineSpec(mid, seed=7, speed=60.0), start_us=now_us())


@asynccontextmanager
async def running(plc: OpcUaPlc) -> AsyncIterator[OpcUaPlc]:
    await plc.start()
    try:
        yield plc
    finally:
        await plc.stop()


def device(entry: dict[str, Any]) -> OpcUaDevice:
    entry = {"security": {"policy": "None"}, **entry}  # the loopback simulator serves without security
    cfg = parse_config(yaml.safe_dump({"plant": {"id": "t"}, "devices": [entry]}))
    dev = cfg.devices[0]
    assert isinstance(dev, OpcUaDevice)
    return dev


async def collect(drv: OpcUaDriver, done: Callable[[list[Sample]], bool], timeout_s: float = 5.0) -> list[Sample]:
    """Read batches until done(all samples so far) or the timeout."""
    out: list[Sample] = []
    deadline = time.monotonic() + timeout_s
    while not done(out):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            out += await asyncio.wait_for(drv.read(), left)
        except TimeoutError:
            break
    return out


def values(samples: list[Sample], tag: str) -> list[float | None]:
    return [s.value for s in samples if s.tag == tag]


def test_registry_resolves_opcua_driver() -> None:
    assert driver_class("opcua") is OpcUaDriver and OpcUaDriver.kind == "opcua"


def test_sample_yaml_is_a_valid_device() -> None:
    text = (Path(__file__).parent.parent / "edge/drivers/opcua/sample.yaml").read_text()
    assert parse_config("plant: {id: x}\n" + text).devices[0].protocol == "opcua"


def test_subscription_delivers_changes_with_source_time_and_bad_status(port: int) -> None:
    """Simulated values arrive with the machine's source timestamps; a Bad status becomes a BAD sample."""

    async def main() -> None:
        m = machine()
        async with running(OpcUaPlc([m], "127.0.0.1", port)) as plc:
            drv = OpcUaDriver(device(device_config(["m1"], "127.0.0.1", port)[0]), CTX)
            assert drv.poll_interval_s is None and drv.on_state is None
            await drv.connect()
            first = await collect(drv, lambda s: len(s) >= 5)
            assert {s.tag for s in first} == {"status", "parts_total", "parts_scrap", "energy_total", "power_kw"}
            await plc.update(now_us() + 30_000_000)  # 30 s of wall time = 30 min of machine time
            got = await collect(drv, lambda s: any(x.tag == "parts_total" for x in s))
            total = [s for s in got if s.tag == "parts_total"][-1]
            assert total.value == m.values()["parts_total"] > 0
            assert total.ts_us == m.t_us and total.quality is Quality.GOOD and total.status == 0
            assert total.server_ts_us is not None

            await plc.write("m1", "power_kw", 0.0, status=ua.StatusCodes.BadSensorFailure)
            bad = await collect(drv, lambda s: any(x.tag == "power_kw" for x in s))
            s = [x for x in bad if x.tag == "power_kw"][-1]
            assert s.quality is Quality.BAD and s.value is None and s.status == ua.StatusCodes.BadSensorFailure
            await plc.write("m1", "power_kw", 3.0, status=ua.StatusCodes.UncertainLastUsableValue)
            unc = await collect(drv, lambda s: any(x.tag == "power_kw" for x in s))
            assert [(x.quality, x.value) for x in unc if x.tag == "power_kw"] == [(Quality.UNCERTAIN, 3.0)]
            await drv.close()
            await drv.close()  # idempotent

    asyncio.run(main())


def test_absolute_deadband_and_poll_mode(port: int) -> None:
    """The server suppresses changes within the deadband; poll tags are read every sampling_ms."""

    async def main() -> None:
        async with running(OpcUaPlc([machine()], "127.0.0.1", port)) as plc:
            entry = {"id": "d1", "protocol": "opcua", "endpoint": plc.endpoint, "tags": [
                {"name": "energy_db", "node": node_id("m1", "energy_total"), "sampling_ms": 50,
                 "deadband": {"type": "absolute", "value": 1.0}},
                {"name": "energy_all", "node": node_id("m1", "energy_total"), "sampling_ms": 50},
                {"name": "status_poll", "node": "nsu=urn:shopfloor:sim;s=m1.status", "mode": "poll",
                 "sampling_ms": 100},
                {"name": "ghost", "node": f"ns={NS};s=no.such.node"},
            ]}
            drv = OpcUaDriver(device(entry), CTX)
            await drv.connect()
            init = await collect(drv, lambda s: {"energy_db", "energy_all", "ghost"} <= {x.tag for x in s})
            ghost = [x for x in init if x.tag == "ghost"]
            assert ghost[0].quality is Quality.BAD and ghost[0].status == ua.StatusCodes.BadNodeIdUnknown
            for v in (0.5, 5.0, 5.3, 7.0):
                await plc.write("m1", "energy_total", v)
                await asyncio.sleep(0.15)
            await plc.write("m1", "status", 4)
            got = init + await collect(drv, lambda s: 7.0 in values(s, "energy_all") and 4.0 in values(s, "status_poll"))
            assert values(got, "energy_all") == [0.0, 0.5, 5.0, 5.3, 7.0]
            assert values(got, "energy_db") == [0.0, 5.0, 7.0]
            polled = [s for s in got if s.tag == "status_poll"]
            assert len(polled) >= 5 and polled[-1].value == 4.0 and polled[-1].quality is Quality.GOOD
            await drv.close()

    asyncio.run(main())


def test_server_restart_raises_not_connected_then_reconnect_resumes(port: int) -> None:
    """Stop the PLC mid-subscription: read() raises NotConnected; close()+connect() to a new one resumes data."""

    async def main() -> None:
        m = machine()
        drv = OpcUaDriver(device(device_config(["m1"], "127.0.0.1", port)[0]), CTX)
        plc = OpcUaPlc([m], "127.0.0.1", port)
        await plc.start()
        await drv.connect()
        assert len(await collect(drv, lambda s: len(s) >= 5)) == 5
        await plc.stop()
        with pytest.raises(NotConnected):
            await asyncio.wait_for(collect(drv, lambda s: False, timeout_s=15), 20)
        await drv.close()
        with pytest.raises(NotConnected, match="is the server up"):
            await drv.connect()  # nothing listening: the runner would back off and retry
        async with running(OpcUaPlc([m], "127.0.0.1", port)) as plc2:
            await drv.close()
            await drv.connect()
            assert {s.tag for s in await collect(drv, lambda s: len(s) >= 5)} >= {"status", "parts_total"}
            await plc2.update(now_us() + 20_000_000)
            after = await collect(drv, lambda s: any(x.tag == "energy_total" for x in s))
            assert [x.value for x in after if x.tag == "energy_total"][-1] == pytest.approx(m.energy_kwh)
            await drv.close()

    asyncio.run(main())


def test_secure_session_with_trust_list_and_password_env(port: int, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Basic256Sha256 SignAndEncrypt with a user from password_env works; an untrusted server is refused."""
    generate_certificate(tmp_path / "gw.der", tmp_path / "gw.pem", "urn:shopfloor:test:gateway")
    (tmp_path / "trusted").mkdir()
    (tmp_path / "other").mkdir()
    generate_certificate(tmp_path / "other/unrelated.der", tmp_path / "unrelated.pem", "urn:other", server=True)
    monkeypatch.setenv("SIM_PW", SIM_PASSWORD)

    def entry(trust: str, policy: str = "Basic256Sha256") -> dict[str, Any]:
        return {"id": "sec", "protocol": "opcua", "endpoint": f"opc.tcp://127.0.0.1:{port}/shopfloor/",
                "security": {"policy": policy, "mode": "SignAndEncrypt", "certificate": "gw.der",
                             "private_key": "gw.pem", "trust_dir": trust, "username": SIM_USER,
                             "password_env": "SIM_PW"},
                "tags": [{"name": "status", "node": node_id("m1", "status")}]}

    async def main() -> None:
        async with running(OpcUaPlc([machine()], "127.0.0.1", port, security=True,
                                    cert_dir=str(tmp_path / "server"))) as plc:
            shutil.copy(plc.cert_path, tmp_path / "trusted" / "sim.der")
            for policy in ("Basic256Sha256", "Aes256_Sha256_RsaPss"):
                drv = OpcUaDriver(device(entry("trusted", policy)), DriverContext(LOG, tmp_path))
                await drv.connect()
                got = await collect(drv, lambda s: len(s) >= 1)
                assert got[0].tag == "status" and got[0].quality is Quality.GOOD
                await drv.close()

            untrusting = OpcUaDriver(device(entry("other")), DriverContext(LOG, tmp_path))
            with pytest.raises(NotConnected) as err:
                await untrusting.connect()
            msg = str(err.value)
            assert "rejected" in msg and str(tmp_path / "other") in msg and "copy" in msg
            assert list((tmp_path / "rejected").glob("*.der")), "the refused certificate is saved for review"

            monkeypatch.setenv("SIM_PW", "wrong")
            wrong = OpcUaDriver(device(entry("trusted")), DriverContext(LOG, tmp_path))
            with pytest.raises(NotConnected, match="password"):
                await wrong.connect()

    asyncio.run(main())
    monkeypatch.delenv("SIM_PW")
    with pytest.raises(Exception, match="SIM_PW"):
        OpcUaDriver(device(entry("trusted")), DriverContext(LOG, tmp_path))


def test_browse_yaml_is_accepted_by_config(port: int) -> None:
    """browse() lists every variable of the simulated PLC as a tag in a valid devices: entry."""

    async def main() -> str:
        async with running(OpcUaPlc([machine("press-1"), machine("cnc-2")], "127.0.0.1", port)) as plc:
            return await browse(plc.endpoint)

    text = asyncio.run(main())
    cfg = parse_config("plant: {id: x}\n" + text)
    tags = {t.name: t.node for t in cfg.devices[0].tags}
    assert tags["press-1.parts_total"] == node_id("press-1", "parts_total")
    assert len(tags) == 10 and all(t.mode == "subscribe" for t in cfg.devices[0].tags)
