"""COCO RLE codec: hand-written vectors in both directions, both counts forms, malformed input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.layout import rle_decode, rle_encode
from core.rle import RLEError, counts_to_string, string_to_counts

# 3x3 mask; column-major flattening is 0,0,0 | 1,1,0 | 0,1,0 -> runs 3 zeros, 2 ones, 2 zeros, 1 one, 1 zero.
MASK3 = np.array([[0, 1, 0], [0, 1, 1], [0, 0, 0]], dtype=bool)
COUNTS3 = [3, 2, 2, 1, 1]
# String form by hand: '3','2','2' (first three literal); then 1-2=-1 -> group 31 (sign bit set) -> chr(79)='O', twice.
STRING3 = "322OO"


def test_encode_hand_vector_list_form():
    assert rle_encode(MASK3, compress=False) == {"size": [3, 3], "counts": COUNTS3}


def test_encode_hand_vector_string_form():
    assert rle_encode(MASK3) == {"size": [3, 3], "counts": STRING3}


def test_decode_hand_vector_both_forms():
    for counts in (COUNTS3, STRING3):
        out = rle_decode({"size": [3, 3], "counts": counts})
        assert out.dtype == bool and out.shape == (3, 3)
        np.testing.assert_array_equal(out, MASK3)


def test_multi_group_and_negative_delta_vector():
    # counts [0, 5, 40, 2]: '0', '5', 40 = 8 + 1*32 -> groups (8|0x20, 1) -> 'X1', then 2-5 = -3 -> 29 -> 'M'.
    assert counts_to_string([0, 5, 40, 2]) == "05X1M"
    assert string_to_counts("05X1M") == [0, 5, 40, 2]
    m = rle_decode({"size": [47, 1], "counts": "05X1M"})
    expect = np.zeros((47, 1), dtype=bool)
    expect[:5] = True
    expect[45:] = True
    np.testing.assert_array_equal(m, expect)


def test_large_count_two_groups():
    # 100 = 4 + 3*32 -> groups (4|0x20)=36 -> 'T', 3 -> '3'.
    assert counts_to_string([100]) == "T3"
    assert string_to_counts("T3") == [100]


def test_mask_starting_with_foreground_has_leading_zero_run():
    m = np.array([[1, 0], [1, 1]], dtype=bool)  # column-major 1,1,0,1
    assert rle_encode(m, compress=False)["counts"] == [0, 2, 1, 1]


def test_all_zero_and_all_one():
    assert rle_encode(np.zeros((2, 3), bool), compress=False)["counts"] == [6]
    assert rle_encode(np.ones((2, 3), bool), compress=False)["counts"] == [0, 6]
    assert rle_decode({"size": [2, 3], "counts": [0, 6]}).all()


def test_column_major_order_on_non_square_mask():
    m = np.zeros((2, 4), dtype=bool)
    m[1, 0] = True  # second element in Fortran order
    assert rle_encode(m, compress=False)["counts"] == [1, 1, 6]


@pytest.mark.parametrize(
    ("rle", "needle"),
    [
        ({"size": [2, 2], "counts": [1, 2]}, "sum to 3 but size 2x2 needs 4"),
        ({"size": [2, 2], "counts": [5, -1]}, "negative"),
        ({"size": [2, 2], "counts": "4\x7f"}, "expected characters"),
        ({"size": [2, 2], "counts": "T"}, "ends in the middle"),
        ({"size": [2], "counts": [4]}, "[height, width]"),
        ({"size": [0, 2], "counts": []}, "1..16384"),
        ({"counts": [4]}, "needs both 'size'"),
        ({"size": [2, 2], "counts": 4}, "string or a list"),
        ({"size": [2, 2], "counts": [1.5, 2.5]}, "only integers"),
        ([1, 2], "must be an object"),
    ],
)
def test_malformed_rle_raises_clear_error(rle, needle):
    with pytest.raises(RLEError) as e:
        rle_decode(rle)
    assert needle in str(e.value)


@settings(max_examples=150, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 17), st.integers(1, 17))), st.booleans())
def test_round_trip_random_masks(mask, compress):
    rle = rle_encode(mask, compress=compress)
    np.testing.assert_array_equal(rle_decode(rle), mask)
    # the other counts form decodes to the same mask
    np.testing.assert_array_equal(rle_decode(rle_encode(mask, compress=not compress)), mask)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.integers(1, 40), st.integers(1, 40))
def test_arbitrary_counts_strings_decode_or_raise_rle_error(s, h, w):
    try:
        out = rle_decode({"size": [h, w], "counts": s})
    except RLEError:
        return
    assert out.shape == (h, w)
    assert rle_decode(rle_encode(out)).tolist() == out.tolist()
