"""Reads stay inside their folder while an attacker swaps entries under the reader (issue 18, item 3): a file or a
directory exchanged with a symlink to the outside between the check and the open is refused with the one refusal
message, never read and never a bare OSError. The swaps run in another process (tests/swap_race.py)."""
from __future__ import annotations

import os
import time

import pytest
import swap_race

from core.paths import PathRefused, read_contained

pytestmark = pytest.mark.skipif(not swap_race.available(), reason="needs Linux renameat2(RENAME_EXCHANGE)")

INSIDE, SECRET = b'{"inside": true}', b'{"secret": "sk-do-not-leak"}'
SECONDS, MAX_CALLS = 3.0, 200_000


def _hammer(root: str, name: str, swapper: swap_race.Swapper) -> dict[str, int]:
    """Read ``name`` over and over while the swapper runs; every outcome is the inside bytes or the refusal."""
    seen = {"read": 0, "refused": 0}
    calls = 0
    while swapper.running() and calls < MAX_CALLS:
        calls += 1
        try:
            data = read_contained(root, name, 2**20, "the test folder")
        except PathRefused as e:
            assert "cannot be read" in str(e) and "secret" not in str(e)
            seen["refused"] += 1
            continue
        assert data != SECRET, f"call {calls}: the file outside the folder was read"
        assert data == INSIDE
        seen["read"] += 1
    return seen


@pytest.fixture
def places(tmp_path):
    root, outside = tmp_path / "input", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "a.json").write_bytes(SECRET)
    return str(root), outside


def test_file_swapped_with_a_symlink_to_the_outside_is_never_read(places):
    root, outside = places
    with open(os.path.join(root, "a.json"), "wb") as f:
        f.write(INSIDE)
    os.symlink(outside / "a.json", os.path.join(root, "link.json"))
    with swap_race.Swapper(os.path.join(root, "a.json"), os.path.join(root, "link.json"), SECONDS) as sw:
        seen = _hammer(root, "a.json", sw)
    assert seen["read"] > 0 and seen["refused"] > 0, seen


def test_directory_swapped_with_a_symlink_to_the_outside_is_never_read(places):
    """realpath sees a real directory, then the directory becomes a symlink before the open: the old code
    (``O_NOFOLLOW`` on the last component only, inode compared with a ``stat`` that followed the same swap)
    returned the outside file."""
    root, outside = places
    os.mkdir(os.path.join(root, "d"))
    with open(os.path.join(root, "d", "a.json"), "wb") as f:
        f.write(INSIDE)
    os.symlink(outside, os.path.join(root, "s"))
    with swap_race.Swapper(os.path.join(root, "d"), os.path.join(root, "s"), SECONDS) as sw:
        seen = _hammer(root, "d/a.json", sw)
    assert seen["read"] > 0 and seen["refused"] > 0, seen


def test_symlinks_that_stay_inside_still_read(places):
    """Opening component by component refuses only swaps: a symlinked subfolder or file inside the folder (resolved
    by realpath first) reads as before."""
    root, _ = places
    os.makedirs(os.path.join(root, "real", "deep"))
    with open(os.path.join(root, "real", "deep", "a.json"), "wb") as f:
        f.write(INSIDE)
    os.symlink(os.path.join(root, "real"), os.path.join(root, "alias"))
    os.symlink("deep/a.json", os.path.join(root, "real", "rel.json"))
    t0 = time.monotonic()
    assert read_contained(root, "alias/deep/a.json", 2**20, "x") == INSIDE
    assert read_contained(root, "alias/rel.json", 2**20, "x") == INSIDE
    assert time.monotonic() - t0 < 5
