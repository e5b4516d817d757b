"""Browse a server's address space and write a `devices:` entry with one tag per Variable found.

Used by `shopfloor edge browse opc.tcp://...`. Follows hierarchical references (not properties such as
EURange) from `root`, skips the standard namespace 0 (the Server object's diagnostics) below the root,
and names each tag after its browse path from the root, joined with dots.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlparse

import yaml
from asyncua import Client, ua

OBJECTS = "i=85"


def _node_text(nid: ua.NodeId) -> str:
    """`ns=..;s=..` / `ns=..;i=..` always with the namespace, as the config expects."""
    text = nid.to_string()
    return text if text.startswith("ns=") else f"ns={nid.NamespaceIndex};{text}"


def _device_id(endpoint: str) -> str:
    u = urlparse(endpoint)
    return re.sub(r"[^A-Za-z0-9-]+", "-", f"{u.hostname or 'opcua'}-{u.port or 4840}").strip("-") + "-ua"


def _tag_name(path: list[str], taken: set[str]) -> str:
    base = ".".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p) for p in path) or "value"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


async def browse(endpoint: str, root: str = OBJECTS, max_depth: int = 10, timeout_s: float = 5.0) -> str:
    """Walk the address space below root (anonymous, no security) and return YAML for plant.yaml."""
    client = Client(endpoint, timeout=timeout_s)
    await client.connect()
    try:
        tags = await _walk(client, ua.NodeId.from_string(root), max_depth)
    finally:
        await client.disconnect()
    doc: dict[str, Any] = {"devices": [{
        "id": _device_id(endpoint), "protocol": "opcua", "endpoint": endpoint,
        "security": {"policy": "None"},  # what browsing used; set a policy and trust_dir for production
        "tags": tags or [{"name": "none_found", "node": root, "mode": "subscribe", "sampling_ms": 1000}],
    }]}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=200)


async def _walk(client: Client, root: ua.NodeId, max_depth: int) -> list[dict[str, Any]]:
    tags: list[dict[str, Any]] = []
    taken: set[str] = set()
    seen = {root}
    frontier: list[tuple[ua.NodeId, list[str]]] = [(root, [])]
    for _ in range(max_depth):
        nxt: list[tuple[ua.NodeId, list[str]]] = []
        for nid, path in frontier:
            for ref in await client.get_node(nid).get_children_descriptions():
                child = ref.NodeId
                if child in seen or child.NamespaceIndex == 0 or ref.ReferenceTypeId == ua.NodeId(
                        ua.ObjectIds.HasProperty):
                    continue
                seen.add(child)
                child_path = [*path, ref.BrowseName.Name]
                if ref.NodeClass == ua.NodeClass.Variable:
                    tags.append({"name": _tag_name(child_path, taken), "node": _node_text(child),
                                 "mode": "subscribe", "sampling_ms": 1000})
                if ref.NodeClass in (ua.NodeClass.Object, ua.NodeClass.Variable):
                    nxt.append((child, child_path))
        if not nxt:
            break
        frontier = nxt
    return tags


def browse_yaml(endpoint: str, root: str | None = None, depth: int = 10) -> str:
    """Synchronous browse() for the CLI."""
    return asyncio.run(browse(endpoint, root or OBJECTS, depth))
