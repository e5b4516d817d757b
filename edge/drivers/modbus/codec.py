"""Pure Modbus decoding and block planning: registers and bits in, engineering values out. No I/O.

Byte and word order follow the plant-config contract: `word_order: big` puts the high word first (ABCD),
`little` the low word first (CDAB); `byte_order: little` swaps the two bytes inside every register
(BADC, or DCBA together with `word_order: little`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from edge.drivers.modbus.config import ModbusTag

# Protocol limits per request (Modbus Application Protocol v1.1b3, 6.1-6.4).
MAX_REGISTERS = 125
MAX_BITS = 2000
BIT_TABLES = ("coil", "discrete")

_STRUCT = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "int64": ">q",
    "uint64": ">Q",
    "float32": ">f",
    "float64": ">d",
}


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers (or bits) of `table` from `start`, serving `tags`."""

    table: str
    start: int
    count: int
    tags: tuple[ModbusTag, ...]

    @property
    def end(self) -> int:
        """First address after the block."""
        return self.start + self.count


def tag_size(tag: ModbusTag) -> int:
    """Registers a tag occupies (1 bit for coils and discrete inputs)."""
    return 1 if tag.address.table in BIT_TABLES else tag.register_count


def plan_blocks(
    tags: Iterable[ModbusTag],
    max_registers: int = MAX_REGISTERS,
    max_gap_registers: int = 8,
    max_bits: int = MAX_BITS,
) -> list[Block]:
    """Merge neighbouring tags of one table into as few reads as the size and gap limits allow.

    Bit tables allow gaps of `max_gap_registers * 16` bits (the same bytes on the wire). A tag wider than
    `max_registers` gets a block of its own (never above the protocol's 125).
    """
    by_table: dict[str, list[ModbusTag]] = {}
    for tag in tags:
        by_table.setdefault(tag.address.table, []).append(tag)
    blocks: list[Block] = []
    for table in ("holding", "input", "coil", "discrete"):
        members = sorted(by_table.get(table, ()), key=lambda t: (t.address.offset, tag_size(t)))
        if not members:
            continue
        bits = table in BIT_TABLES
        limit = min(max_bits, MAX_BITS) if bits else min(max_registers, MAX_REGISTERS)
        gap = max_gap_registers * 16 if bits else max_gap_registers
        start = end = -1
        current: list[ModbusTag] = []
        for tag in members:
            lo = tag.address.offset
            hi = lo + tag_size(tag)
            if current and lo - end <= gap and max(hi, end) - start <= limit:
                end = max(end, hi)
                current.append(tag)
                continue
            if current:
                blocks.append(Block(table, start, end - start, tuple(current)))
            start, end, current = lo, hi, [tag]
        blocks.append(Block(table, start, end - start, tuple(current)))
    return blocks


def registers_to_bytes(registers: Sequence[int], word_order: str = "big", byte_order: str = "big") -> bytes:
    """Put registers into canonical big-endian byte order (ABCD...), undoing the device's word/byte order."""
    words = list(registers)
    if word_order == "little":
        words.reverse()
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if byte_order == "little":
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    return raw


def decode_string(registers: Sequence[int], byte_order: str = "big") -> str:
    """Two characters per register, first character in the high byte; ends at the first NUL, spaces trimmed."""
    raw = registers_to_bytes(registers, "big", byte_order)
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


Decoder = Callable[[Sequence[int]], "float | str"]


def compile_tag(tag: ModbusTag) -> Decoder:
    """A decoder for one tag's registers, with order, type and scaling resolved once (the poll hot path)."""
    n = tag.register_count
    if tag.type == "string":
        byte_order = tag.byte_order
        return lambda regs: decode_string(regs, byte_order)
    if tag.bit is not None:
        shift = tag.bit if tag.byte_order == "big" else (tag.bit + 8) % 16  # bit of the byte-swapped word
        return lambda regs: float((regs[0] >> shift) & 1)
    if tag.type == "bool":
        return lambda regs: 1.0 if regs[0] else 0.0
    # Packing each register little-endian swaps its two bytes; reversing the words undoes word_order little.
    pack = struct.Struct(f"{'>' if tag.byte_order == 'big' else '<'}{n}H").pack
    unpack = struct.Struct(_STRUCT[tag.type]).unpack
    scale, offset = tag.scale, tag.offset
    if tag.word_order == "little" and n > 1:
        return lambda regs: unpack(pack(*reversed(regs)))[0] * scale + offset
    return lambda regs: unpack(pack(*regs))[0] * scale + offset


def decode_registers(tag: ModbusTag, registers: Sequence[int]) -> float | str:
    """Decode one tag from exactly its registers; numbers get `value * scale + offset`, bools 0.0/1.0."""
    if len(registers) != tag.register_count:
        raise ValueError(f"tag {tag.name!r} needs {tag.register_count} registers, got {len(registers)}")
    return compile_tag(tag)(registers)


def is_finite(value: float | str) -> bool:
    """Strings and finite numbers are publishable; NaN and infinities are not."""
    return isinstance(value, str) or math.isfinite(value)


class BlockDecoder:
    """Slices and decodes every tag of one block from the block's response; built once per device."""

    __slots__ = ("block", "_items", "_bits")

    def __init__(self, block: Block) -> None:
        self.block = block
        self._bits = block.table in BIT_TABLES
        self._items = [
            (
                tag.name,
                tag.address.offset - block.start,
                tag_size(tag),
                None if self._bits else compile_tag(tag),
            )
            for tag in block.tags
        ]

    def decode(self, data: Sequence[int] | Sequence[bool]) -> list[tuple[str, float | str | None]]:
        """(tag name, value) per tag; None where the response is too short to hold the tag."""
        out: list[tuple[str, float | str | None]] = []
        size = len(data)
        for name, lo, n, fn in self._items:
            if lo + n > size:
                out.append((name, None))
            elif fn is None:
                out.append((name, 1.0 if data[lo] else 0.0))
            else:
                out.append((name, fn(data[lo : lo + n])))  # type: ignore[arg-type]
        return out


def decode_block(block: Block, data: Sequence[int] | Sequence[bool]) -> list[tuple[str, float | str | None]]:
    """Every tag of a block from the block's response (see BlockDecoder)."""
    return BlockDecoder(block).decode(data)
