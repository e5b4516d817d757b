"""`shopfloor`: the one command line. Each command module imports its stage lazily so `--help` stays fast."""

from __future__ import annotations

import sys

import typer

from core.errors import ShopfloorError
from shopfloor.cli import (
    api_cmd,
    collector_cmd,
    config_cmd,
    db_cmd,
    edge_cmd,
    evidence_cmd,
    kpi_cmd,
    simulate_cmd,
)

app = typer.Typer(help="Shop-floor data collector and KPI engine: PLCs -> edge -> collector -> KPIs.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(config_cmd.config_app, name="config")
app.add_typer(db_cmd.db_app, name="db")
app.add_typer(kpi_cmd.kpi_app, name="kpi")
app.add_typer(edge_cmd.edge_app, name="edge")
app.add_typer(collector_cmd.collector_app, name="collector")
app.add_typer(evidence_cmd.evidence_app, name="evidence")
simulate_cmd.register(app)
api_cmd.register(app)

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except ShopfloorError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
