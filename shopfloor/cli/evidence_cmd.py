"""`shopfloor evidence keygen|rulebooks|pack|verify|checkpoint`: tier evidence for certifiers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopfloor.cli.common import ConfigOpt, DbOpt, LogOpt, fail, need, parse_time, setup_logging

evidence_app = typer.Typer(help="Tier rulebooks, signed evidence packs and their independent verification.",
                           no_args_is_help=True)
RulebooksOpt = Annotated[list[Path] | None, typer.Option(
    "--rulebooks", help="Directory of extra rulebook YAML files (repeatable; also SHOPFLOOR_RULEBOOKS).")]
KeyOpt = Annotated[Path | None, typer.Option("--key", help="Ed25519 private key PEM (`evidence keygen`).",
                                             envvar="SHOPFLOOR_SIGNING_KEY")]


@evidence_app.command("keygen")
def keygen(out: Annotated[Path, typer.Option("--out", help="Directory for signing.key (0600) and signing.pub.")]
           ) -> None:
    """Create the plant's Ed25519 signing key (private, mode 0600) and its public key (PEM, for certifiers)."""
    from api.evidence.signing import keygen as make

    priv, pub = make(out)
    typer.echo(f"private key {priv} (mode 0600: keep it on the server, never send it)\n"
               f"public key  {pub} (give it to certifiers: `shopfloor evidence verify PACK --key {pub.name}`)")


@evidence_app.command("rulebooks")
def rulebooks(rulebook_dirs: RulebooksOpt = None) -> None:
    """List the tier rulebooks (id, version, criteria count, where the file is)."""
    from api.evidence.rulebook import load_all

    books = load_all(rulebook_dirs)
    for bid, lb in sorted(books.items()):
        rb = lb.rulebook
        typer.echo(f"{bid:36} {rb.version:10} {len(rb.criteria):3} criteria  {rb.title.en} / {rb.title.zh}  ({lb.path})")


@evidence_app.command("pack")
def pack(config: ConfigOpt = None, database_url: DbOpt = None,
         rulebook: Annotated[str, typer.Option("--rulebook", help="Rulebook id (`evidence rulebooks`).")] = "",
         scope: Annotated[str, typer.Option("--scope", help="Plant id or asset id.")] = "",
         since: Annotated[str, typer.Option("--from", help="Report period start, ISO 8601.")] = "",
         until: Annotated[str, typer.Option("--to", help="Report period end, ISO 8601.")] = "",
         baseline_from: Annotated[str, typer.Option("--baseline-from", help="Baseline start, ISO 8601.")] = "",
         baseline_to: Annotated[str, typer.Option("--baseline-to", help="Baseline end, ISO 8601.")] = "",
         key: KeyOpt = None, out: Annotated[Path, typer.Option("--out", help="Zip file to write.")] = Path("pack.zip"),
         bucket: Annotated[str, typer.Option(help="KPI buckets the pack uses: hour, shift or day.")] = "day",
         region: Annotated[str, typer.Option(help="Grid region or province for the emission factor.")] = "national",
         attestations: Annotated[Path | None, typer.Option(
             help="YAML: criterion id -> {value, attachment, scores} for criteria the plant attests.")] = None,
         min_coverage: Annotated[float, typer.Option(help="Data coverage a measured criterion needs.")] = 0.9,
         refresh_kpis: Annotated[bool, typer.Option(
             "--refresh-kpis", help="Recompute the periods' KPIs (backfill up to --to) before reading them.")] = False,
         raw_out: Annotated[Path | None, typer.Option(
             "--raw-out", help="Also write the raw-data export the pack covers into this directory.")] = None,
         raw_format: Annotated[str, typer.Option("--raw-format", help="parquet or csv (with --raw-out).")] = "parquet",
         tsa_url: Annotated[str | None, typer.Option(
             "--tsa-url", help="RFC 3161 timestamp authority for the pack's ledger checkpoint.",
             envvar="SHOPFLOOR_TSA_URL")] = None,
         rulebook_dirs: RulebooksOpt = None, log_level: LogOpt = "warning") -> None:
    """Build a signed evidence pack: evaluation, KPI rows, ledger slice and checkpoints, report, annex."""
    setup_logging(log_level)
    from api.evidence.pack import PackRequest, build

    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    req = PackRequest(
        config=need(config, "--config", "SHOPFLOOR_CONFIG"), database_url=url,
        rulebook=need(rulebook, "--rulebook", "-"), scope=need(scope, "--scope", "-"),
        start=parse_time(need(since, "--from", "-"), "--from"), end=parse_time(need(until, "--to", "-"), "--to"),
        baseline_start=parse_time(baseline_from, "--baseline-from") if baseline_from else None,
        baseline_end=parse_time(baseline_to, "--baseline-to") if baseline_to else None,
        key=need(key, "--key", "SHOPFLOOR_SIGNING_KEY"), out=out, bucket=bucket, region=region,
        attestations=attestations, rulebook_dirs=list(rulebook_dirs or []), min_coverage=min_coverage,
        refresh=refresh_kpis, raw_out=raw_out, raw_format=raw_format, tsa_url=tsa_url)
    typer.echo("building evidence pack ...", err=True)
    m = build(req)
    typer.echo(f"wrote {out}: rulebook {m['rulebook']['id']} {m['rulebook']['version']}, scope {m['scope']}, "
               f"{m['from']} .. {m['to']}" + (f"; raw export in {raw_out}" if raw_out else "")
               + (f"; {m['rows_left_out_open_buckets']} rows of still-open buckets left out (use --refresh-kpis)"
                  if m["rows_left_out_open_buckets"] else ""))


@evidence_app.command("verify")
def verify(pack_file: Annotated[Path, typer.Argument(metavar="PACK", help="Evidence pack zip.")],
           key: Annotated[Path, typer.Option("--key", help="The plant's public key PEM.")],
           raw: Annotated[Path | None, typer.Option(
               "--raw", help="Raw-data export directory: check it against the ledger and recompute every KPI.")] = None,
           checkpoints: Annotated[Path | None, typer.Option(
               "--checkpoints", help="Checkpoints collected earlier (JSON lines of DSSE envelopes).")] = None,
           tsa_root: Annotated[Path | None, typer.Option(
               "--tsa-root", help="Root certificate (PEM) of the timestamp authority: check the RFC 3161 tokens."
           )] = None) -> None:
    """Check signature, file digests, ledger chain and checkpoints, and (with --raw) raw rows and KPI values.

    Needs neither a database nor the web stack. Exit 0 only when every check passes."""
    from api.evidence.verify import verify as run

    checks = run(pack_file, key, raw, checkpoints, tsa_root)
    for c in checks:
        typer.echo(f"{'ok  ' if c.ok else 'FAIL'} {c.name}" + (f" ({c.detail})" if c.detail else ""))
        for p in c.problems[:50]:
            typer.echo(f"     {p}")
        if len(c.problems) > 50:
            typer.echo(f"     ... and {len(c.problems) - 50} more")
    if raw is None:
        typer.echo("note: without --raw the raw rows and KPI values were not recomputed", err=True)
    if not all(c.ok for c in checks):
        raise fail(f"{pack_file}: verification failed ({', '.join(c.name for c in checks if not c.ok)})")
    typer.echo(f"{pack_file}: all checks passed")


@evidence_app.command("checkpoint")
def checkpoint(config: ConfigOpt = None, database_url: DbOpt = None, key: KeyOpt = None,
               tsa_url: Annotated[str | None, typer.Option(
                   "--tsa-url", help="RFC 3161 timestamp authority (a token is stored with the checkpoint).",
                   envvar="SHOPFLOOR_TSA_URL")] = None) -> None:
    """Sign the ingest-ledger chain heads now and store the checkpoint (run it hourly, e.g. from a timer)."""
    import psycopg

    from api.evidence.checkpoints import make_checkpoint
    from api.evidence.signing import load_private
    from shopfloor.cli.common import load

    cfg = load(config)
    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    k = load_private(need(key, "--key", "SHOPFLOOR_SIGNING_KEY"))
    with psycopg.connect(url, autocommit=True) as conn:
        env = make_checkpoint(conn, k, cfg.plant.id, tsa_url=tsa_url)
    typer.echo(f"checkpoint signed by keyid {env['signatures'][0]['keyid'][:16]}... stored in ledger_checkpoints")


__all__ = ["evidence_app"]
