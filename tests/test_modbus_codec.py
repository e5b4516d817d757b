"""Modbus decoding and block planning on plain values: hand-built register patterns, no server."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from edge.drivers.modbus.codec import (
    MAX_REGISTERS,
    Block,
    decode_block,
    decode_registers,
    decode_string,
    is_finite,
    plan_blocks,
    registers_to_bytes,
)
from edge.drivers.modbus.config import ModbusTag


def tag(name: str = "t", address: Any = 40001, **kw: Any) -> ModbusTag:
    return ModbusTag.model_validate({"name": name, "address": address, **kw})


# word_order, byte_order -> the order the four bytes A B C D (A most significant) sit in on the wire
ORDERS = {
    ("big", "big"): "ABCD",
    ("little", "big"): "CDAB",
    ("big", "little"): "BADC",
    ("little", "little"): "DCBA",
}
F32_123_456 = {  # 123.456 as float32 is 0x42F6E979
    "ABCD": [0x42F6, 0xE979],
    "CDAB": [0xE979, 0x42F6],
    "BADC": [0xF642, 0x79E9],
    "DCBA": [0x79E9, 0xF642],
}
U32_12345678 = {
    "ABCD": [0x1234, 0x5678],
    "CDAB": [0x5678, 0x1234],
    "BADC": [0x3412, 0x7856],
    "DCBA": [0x7856, 0x3412],
}
U64_0102030405060708 = {
    "ABCD": [0x0102, 0x0304, 0x0506, 0x0708],
    "CDAB": [0x0708, 0x0506, 0x0304, 0x0102],
    "BADC": [0x0201, 0x0403, 0x0605, 0x0807],
    "DCBA": [0x0807, 0x0605, 0x0403, 0x0201],
}


@pytest.mark.parametrize(("word_order", "byte_order"), list(ORDERS))
def test_float32_123_456_decodes_in_all_four_orders(word_order: str, byte_order: str) -> None:
    regs = F32_123_456[ORDERS[(word_order, byte_order)]]
    got = decode_registers(tag(type="float32", word_order=word_order, byte_order=byte_order), regs)
    assert got == pytest.approx(123.456, rel=1e-7)


@pytest.mark.parametrize(("word_order", "byte_order"), list(ORDERS))
def test_uint32_and_int32_decode_in_all_four_orders(word_order: str, byte_order: str) -> None:
    regs = U32_12345678[ORDERS[(word_order, byte_order)]]
    assert (
        decode_registers(tag(type="uint32", word_order=word_order, byte_order=byte_order), regs) == 0x12345678
    )
    assert (
        decode_registers(tag(type="int32", word_order=word_order, byte_order=byte_order), regs) == 0x12345678
    )


@pytest.mark.parametrize(("word_order", "byte_order"), list(ORDERS))
def test_64_bit_types_decode_in_all_four_orders(word_order: str, byte_order: str) -> None:
    regs = U64_0102030405060708[ORDERS[(word_order, byte_order)]]
    kw = {"word_order": word_order, "byte_order": byte_order}
    assert decode_registers(tag(type="uint64", **kw), regs) == float(0x0102030405060708)
    assert decode_registers(tag(type="int64", **kw), regs) == float(0x0102030405060708)
    expected = struct.unpack(">d", bytes.fromhex("0102030405060708"))[0]
    assert decode_registers(tag(type="float64", **kw), regs) == expected


def test_registers_to_bytes_restores_abcd_order() -> None:
    assert registers_to_bytes([0x7856, 0x3412], "little", "little") == bytes.fromhex("12345678")
    assert registers_to_bytes([0x3412, 0x7856], "big", "little") == bytes.fromhex("12345678")


def test_signed_types_keep_their_sign() -> None:
    assert decode_registers(tag(type="int16"), [0xFFFF]) == -1
    assert decode_registers(tag(type="uint16"), [0xFFFF]) == 65535
    assert decode_registers(tag(type="int16", byte_order="little"), [0x0180]) == -32767
    assert decode_registers(tag(type="int32"), [0xFFFF, 0xFFFE]) == -2
    assert decode_registers(tag(type="int32", word_order="little"), [0xFFFE, 0xFFFF]) == -2
    assert decode_registers(tag(type="int64"), [0xFFFF] * 4) == -1
    assert decode_registers(tag(type="uint64"), [0xFFFF] * 4) == float(2**64 - 1)


def test_float64_one_and_a_half() -> None:
    assert decode_registers(tag(type="float64"), [0x3FF8, 0, 0, 0]) == 1.5
    assert decode_registers(tag(type="float64", word_order="little"), [0, 0, 0, 0x3FF8]) == 1.5


def test_scale_and_offset_apply_to_numbers() -> None:
    temp = tag(type="int16", scale=0.1, offset=-40)
    assert decode_registers(temp, [650]) == pytest.approx(25.0)
    assert decode_registers(temp, [0xFFFF]) == pytest.approx(-40.1)
    energy = tag(type="float32", word_order="little", scale=0.1)
    assert decode_registers(energy, F32_123_456["CDAB"]) == pytest.approx(12.3456, rel=1e-6)


def test_bool_on_a_register_is_nonzero_and_not_scaled() -> None:
    assert decode_registers(tag(type="bool", scale=10), [0]) == 0.0
    assert decode_registers(tag(type="bool", scale=10), [0x0100]) == 1.0


@pytest.mark.parametrize(
    ("word", "bit", "expected"),
    [
        (0x0008, 3, 1.0),
        (0x0008, 2, 0.0),
        (0x8000, 15, 1.0),
        (0x7FFF, 15, 0.0),
        (0x0001, 0, 1.0),
        (0xFFFE, 0, 0.0),
    ],
)
def test_bit_in_word(word: int, bit: int, expected: float) -> None:
    assert decode_registers(tag(type="bool", bit=bit), [word]) == expected


def test_bit_in_word_with_swapped_bytes_counts_from_the_logical_word() -> None:
    assert decode_registers(tag(type="bool", bit=3, byte_order="little"), [0x0800]) == 1.0


def test_string_two_chars_per_register_nuls_and_spaces_stripped() -> None:
    s = tag(type="string", length=4)
    assert decode_registers(s, [0x4845, 0x4C4C, 0x4F00, 0x0000]) == "HELLO"
    assert decode_registers(tag(type="string", length=2), [0x4142, 0x2020]) == "AB"
    assert decode_registers(tag(type="string", length=2), [0x2041, 0x4200]) == "AB"
    assert decode_registers(tag(type="string", length=2, byte_order="little"), [0x4548, 0x4C4C]) == "HELL"
    assert decode_string([0, 0]) == ""


def test_wrong_register_count_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode_registers(tag(type="uint32"), [1])


def test_nan_and_infinity_are_not_finite() -> None:
    nan = decode_registers(tag(type="float32"), [0x7FC0, 0])
    inf = decode_registers(tag(type="float32"), [0x7F80, 0])
    assert isinstance(nan, float) and math.isnan(nan)
    assert not is_finite(nan) and not is_finite(inf)
    assert is_finite(1.0) and is_finite("text")


# --------------------------------------------------------------------------- block planning


def names(block: Block) -> list[str]:
    return [t.name for t in block.tags]


def test_neighbouring_tags_share_one_block() -> None:
    tags = [tag("a", 40001), tag("b", 40002, type="uint32"), tag("c", 40004, type="float64")]
    blocks = plan_blocks(tags)
    assert [(b.table, b.start, b.count) for b in blocks] == [("holding", 0, 7)]
    assert names(blocks[0]) == ["a", "b", "c"]


def test_gap_up_to_max_gap_merges_and_a_larger_gap_splits() -> None:
    tags = [tag("a", 40001), tag("b", 40001 + 1 + 8), tag("c", 40001 + 1 + 8 + 1 + 9)]
    blocks = plan_blocks(tags, max_gap_registers=8)
    assert [(b.start, b.count) for b in blocks] == [(0, 10), (19, 1)]
    assert plan_blocks(tags, max_gap_registers=0) == [
        Block("holding", 0, 1, (tags[0],)),
        Block("holding", 9, 1, (tags[1],)),
        Block("holding", 19, 1, (tags[2],)),
    ]


def test_tables_are_never_mixed() -> None:
    tags = [tag("h", 40001), tag("i", 30001), tag("c", 1, type="bool"), tag("d", 10001, type="bool")]
    blocks = plan_blocks(tags)
    assert sorted(b.table for b in blocks) == ["coil", "discrete", "holding", "input"]
    assert all(b.count == 1 for b in blocks)


def test_blocks_never_exceed_the_register_limit_and_cover_every_tag_once() -> None:
    tags = [tag(f"t{k}", {"table": "input", "offset": k * 2}, type="uint32") for k in range(150)]
    tags.append(tag("wide", {"table": "input", "offset": 300}, type="float64"))
    blocks = plan_blocks(tags, max_registers=MAX_REGISTERS)
    assert all(b.count <= MAX_REGISTERS for b in blocks)
    seen = [t.name for b in blocks for t in b.tags]
    assert sorted(seen) == sorted(t.name for t in tags)
    for b in blocks:
        for t in b.tags:
            assert b.start <= t.address.offset and t.address.offset + t.register_count <= b.end
    assert len(blocks) == 3  # 304 registers in reads of at most 125


def test_small_max_block_registers_splits_but_keeps_wide_tags_whole() -> None:
    tags = [tag("a", 40001, type="float64"), tag("b", 40005)]
    blocks = plan_blocks(tags, max_registers=2)
    assert [(b.start, b.count, names(b)) for b in blocks] == [(0, 4, ["a"]), (4, 1, ["b"])]


def test_a_tag_that_would_cross_the_limit_starts_a_new_block() -> None:
    tags = [tag("a", 40001), tag("b", {"table": "holding", "offset": 122}, type="float64")]
    blocks = plan_blocks(tags, max_registers=125, max_gap_registers=125)
    assert [(b.start, b.count) for b in blocks] == [(0, 1), (122, 4)]


def test_overlapping_tags_share_registers() -> None:
    tags = [tag("word", 40010, type="uint16"), tag("bit3", 40010, type="bool", bit=3)]
    blocks = plan_blocks(tags)
    assert [(b.start, b.count, len(b.tags)) for b in blocks] == [(9, 1, 2)]


def test_coils_merge_up_to_2000_bits() -> None:
    tags = [tag(f"c{k}", {"table": "coil", "offset": k}, type="bool") for k in range(2500)]
    blocks = plan_blocks(tags)
    assert [(b.start, b.count) for b in blocks] == [(0, 2000), (2000, 500)]


def test_bit_gaps_are_counted_in_registers_worth_of_bits() -> None:
    tags = [
        tag("a", 10001, type="bool"),
        tag("b", 10001 + 1 + 16, type="bool"),
        tag("c", 10001 + 300, type="bool"),
    ]
    blocks = plan_blocks(tags, max_gap_registers=1)
    assert [(b.start, b.count) for b in blocks] == [(0, 18), (300, 1)]


def test_decode_block_slices_each_tag_from_the_response() -> None:
    tags = [
        tag("status", 40001),
        tag("total", 40002, type="uint32"),
        tag("load", 40005, type="int16"),
        tag("alarm", 40006, type="bool", bit=3),
    ]
    (block,) = plan_blocks(tags)
    got = dict(decode_block(block, [2, 0x0001, 0x0002, 99, 0xFFF6, 0x0008]))
    assert got == {"status": 2, "total": 65538, "load": -10, "alarm": 1.0}


def test_decode_block_marks_tags_a_short_response_does_not_cover() -> None:
    tags = [tag("a", 40001), tag("b", 40002, type="uint32")]
    (block,) = plan_blocks(tags)
    assert [v for _, v in decode_block(block, [7, 1])] == [7, None]


def test_decode_block_reads_bits_for_coils() -> None:
    tags = [tag("a", 1, type="bool"), tag("b", 3, type="bool")]
    (block,) = plan_blocks(tags)
    assert [v for _, v in decode_block(block, [True, False, False, False, False, False, False, False])] == [
        1.0,
        0.0,
    ]
