"""`shopfloor config check`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopfloor.cli.common import (
    load,
)

config_app = typer.Typer(help="Validate plant files.", no_args_is_help=True)

@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="Plant YAML file to validate.")],
                 show: Annotated[bool, typer.Option("--show", help="Print the resolved config as JSON.")] = False
                 ) -> None:
    """Validate a plant file; every problem is reported as FILE:LINE: FIELD: what is wrong."""
    cfg = load(file)
    machines = cfg.machines()
    tags = sum(len(d.tags) for d in cfg.devices)
    networked = sum(1 for m in machines if m.device)
    typer.echo(f"{file}: OK: plant {cfg.plant.id}, {len(cfg.devices)} devices, {tags} tags, {len(machines)} machines "
               f"({networked} with a device), {len(cfg.shifts)} shifts")
    from core.shifts import shift_warnings

    for line in shift_warnings(cfg):
        typer.echo(f"{file}: warning: {line}", err=True)
    if show:
        typer.echo(cfg.model_dump_json(indent=2))
