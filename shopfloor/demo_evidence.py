"""The demo's last step: a signed sample evidence pack of the demo run, its raw export, and its verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer


def sample_pack(database_url: str, cfg_path: Path, cfg: Any, started: datetime, workdir: Path) -> bool:
    """Seal the demo's hours, sign a pack over them (hour buckets, KPIs refreshed up to now), verify it."""
    import psycopg

    from api.evidence.pack import PackRequest, build
    from api.evidence.signing import keygen
    from api.evidence.verify import verify
    from collector.ledger import seal_hours

    now = datetime.now(UTC).replace(microsecond=0)
    hour_end = now.replace(minute=0, second=0) + timedelta(hours=1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        seal_hours(conn, hour_end)  # the demo has stopped: its last hour is complete as it stands
    keys = workdir / "keys"
    if not (keys / "signing.key").exists():
        keygen(keys)
    out, raw = workdir / "evidence-pack.zip", workdir / "evidence-raw"
    start = started.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    build(PackRequest(cfg_path, database_url, "cn-national-smart-factory-tiers", cfg.plant.id, start, now,
                      keys / "signing.key", out, bucket="hour", refresh=True, raw_out=raw, raw_format="csv"))
    checks = verify(out, keys / "signing.pub", raw)
    for c in checks:
        typer.echo(f"  {'ok  ' if c.ok else 'FAIL'} {c.name} {c.detail}".rstrip())
    passed = all(c.ok for c in checks)
    typer.echo(f"sample evidence pack {out} ({'verified' if passed else 'verification FAILED'}); check it yourself:\n"
               f"  shopfloor evidence verify {out} --key {keys / 'signing.pub'} --raw {raw}")
    return passed
