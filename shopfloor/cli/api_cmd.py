"""`shopfloor api` (serve HTTP), `shopfloor api token create|revoke|list`, and `shopfloor export`."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from shopfloor.cli.common import ConfigOpt, DbOpt, LogOpt, fail, load, need, parse_time, setup_logging

api_app = typer.Typer(help="Serve the HTTP API (FastAPI; OpenAPI at /docs): assets, samples, KPIs, networking "
                           "rate, exports. `shopfloor api token ...` manages the tokens it accepts.",
                      invoke_without_command=True)
token_app = typer.Typer(help="Create, revoke and list API tokens (stored only as SHA-256 hashes).",
                        no_args_is_help=True)
api_app.add_typer(token_app, name="token")

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@api_app.callback()
def api_serve(ctx: typer.Context, config: ConfigOpt = None, database_url: DbOpt = None,
              host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
              port: Annotated[int, typer.Option(help="Listen port.")] = 8000,
              no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without tokens, everyone as admin "
                                                    "(local demo only; a banner says so on every start).")] = False,
              log_level: LogOpt = "info") -> None:
    """Serve the HTTP API (OpenAPI at /docs); with a subcommand, manage tokens instead."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(log_level)
    import uvicorn

    from api.app import NO_AUTH_BANNER, create_app
    from api.settings import Settings

    cfg = load(config)
    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    _connect(url).close()  # one clear line now, rather than pool warnings later: reachable and migrated
    settings = Settings(database_url=url, config_path=Path(str(config)), auth=not no_auth)
    app = create_app(settings, cfg)
    if no_auth:
        typer.echo(NO_AUTH_BANNER, err=True)
    typer.echo(f"shopfloor api on http://{host}:{port}/  (OpenAPI: http://{host}:{port}/docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False)


def parse_expiry(value: str, now: datetime | None = None) -> datetime:
    """'30d', '12h', '90m', '2w' from now, or an ISO 8601 time."""
    m = _DURATION.match(value.strip())
    if m:
        return (now or datetime.now(UTC)) + timedelta(seconds=int(m.group(1)) * _UNIT_S[m.group(2)])
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"--expires: {value!r} is neither a duration (30d, 12h, 90m, 2w) nor an ISO 8601 time", 2) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _connect(database_url: str | None) -> Any:
    import psycopg

    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise fail(f"cannot connect to the database: {str(exc).strip().splitlines()[0]}") from None
    if conn.execute("SELECT to_regclass('public.api_tokens')").fetchone()[0] is None:  # type: ignore[index]
        raise fail("this database has no api_tokens table: run `shopfloor db migrate --database-url ...` first")
    return conn


@token_app.command("create")
def token_create(database_url: DbOpt = None,
                 role: Annotated[str, typer.Option(help="viewer, manager, certifier or admin.")] = "viewer",
                 scope: Annotated[str | None, typer.Option(help="Asset id (plant, area or line) the token may "
                                                           "read; required for certifiers. Checked against "
                                                           "the plant file with --config; not checked "
                                                           "without it.")] = None,
                 expires: Annotated[str | None, typer.Option(help="Duration (30d, 12h) or ISO time; required "
                                                             "for certifiers.")] = None,
                 period_from: Annotated[str | None, typer.Option(help="Earliest data the token may read.")] = None,
                 period_to: Annotated[str | None, typer.Option(help="Latest data the token may read.")] = None,
                 name: Annotated[str, typer.Option(help="Who or what the token is for.")] = "",
                 config: ConfigOpt = None) -> None:
    """Create a token and print it once (only its hash is stored)."""
    cfg = load(config) if config is not None else None
    if scope is not None and cfg is not None and scope != cfg.plant.id \
            and not any(a.id == scope for a, _ in cfg.iter_assets()):
        ids = [cfg.plant.id, *(a.id for a, _ in cfg.iter_assets())]
        raise fail(f"--scope {scope!r} is not the plant id or an asset id in {config} "
                   f"(ids: {', '.join(ids)[:200]})", 2)
    if scope is not None and cfg is None:
        typer.echo(f"note: --scope {scope!r} is not checked against a plant file (give --config to check it)",
                   err=True)
    from api.auth import create_token

    with _connect(database_url) as conn:
        token_id, token = create_token(
            conn, role, name=name, scope=scope, expires_at=parse_expiry(expires) if expires else None,
            period_from=parse_time(period_from, "--period-from") if period_from else None,
            period_to=parse_time(period_to, "--period-to") if period_to else None)
    typer.echo(f"token {token_id} ({role}{', scope ' + scope if scope else ''}"
               f"{', expires ' + expires if expires else ''}); shown once, keep it safe:", err=True)
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(token: Annotated[str, typer.Argument(help="Token id (from `token list`) or the token itself.")],
                 database_url: DbOpt = None) -> None:
    """Revoke a token: it stops working at once."""
    from api.auth import revoke_token

    with _connect(database_url) as conn:
        typer.echo(f"token {revoke_token(conn, token)} revoked")


@token_app.command("list")
def token_list(database_url: DbOpt = None) -> None:
    """Every token's id, prefix, role, scope, expiry and revocation (never the token)."""
    from api.auth import list_tokens

    with _connect(database_url) as conn:
        rows = list_tokens(conn)
    typer.echo(f"{'id':>4}  {'prefix':<9}{'role':<10}{'scope':<14}{'expires':<22}{'revoked':<22}name")
    for r in rows:
        exp = r["expires_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if r["expires_at"] else "-"
        rev = r["revoked_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if r["revoked_at"] else "-"
        typer.echo(f"{r['id']:>4}  {r['prefix']:<9}{r['role']:<10}{r['scope'] or '-':<14}{exp:<22}{rev:<22}{r['name']}")


def register(app: typer.Typer) -> None:
    """Add `api` and `export` to the top-level command line."""
    app.add_typer(api_app, name="api")
    app.command("export")(export_cmd)


def export_cmd(config: ConfigOpt = None, database_url: DbOpt = None,
               scope: Annotated[str | None, typer.Option(help="Asset id (default: the whole plant).")] = None,
               since: Annotated[str, typer.Option("--from", help="Start, ISO 8601.")] = "",
               until: Annotated[str, typer.Option("--to", help="End (exclusive), ISO 8601.")] = "",
               out: Annotated[Path | None, typer.Option(help="Directory to write into.")] = None,
               fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet") -> None:
    """Write a scope's raw samples and device status, with the ingest-ledger entries covering them."""
    from api.export import export_scope

    cfg = load(config)
    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    start, end = parse_time(need(since, "--from", "-"), "--from"), parse_time(need(until, "--to", "-"), "--to")
    if end <= start:
        raise fail("--to must be after --from", 2)
    if fmt not in ("parquet", "csv"):
        raise fail(f"--format {fmt!r}: use parquet or csv", 2)
    out_dir = need(out, "--out", "-")

    def progress(table: str, rows: int) -> None:
        typer.echo(f"\r{table}: {rows} rows", err=True, nl=False)

    manifest = export_scope(url, cfg, scope, start, end, out_dir, fmt=fmt, progress=progress)
    typer.echo("", err=True)
    for f in manifest["files"]:
        typer.echo(f"{f['path']}: {f['rows']} rows, sha256 {f['sha256'][:16]}...")
    typer.echo(f"wrote {out_dir}/manifest.json", file=sys.stdout)
