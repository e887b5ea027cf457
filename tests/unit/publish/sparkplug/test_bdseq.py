"""bdSeq: one more for every CONNECT, 255 -> 0, kept across restarts, never fatal."""

from __future__ import annotations

import logging
import os

import pytest

from edge_ad.publish.sparkplug.bdseq import BDSEQ_FILE, BdSeqCounter


def test_starts_at_0_and_continues_after_a_restart(tmp_path):
    path = tmp_path / BDSEQ_FILE
    counter = BdSeqCounter(path)
    assert counter.last is None
    assert [counter.next() for _ in range(3)] == [0, 1, 2]
    assert BdSeqCounter(path).next() == 3  # the restarted station: the next number, never one already used


def test_wraps_255_to_0_and_is_rewritten_in_place(tmp_path):
    path = tmp_path / BDSEQ_FILE
    path.write_text("254\n")
    inode = path.stat().st_ino
    counter = BdSeqCounter(path)
    assert [counter.next() for _ in range(3)] == [255, 0, 1]
    assert path.read_text() == "  1\n" and path.stat().st_ino == inode  # same file, same 4 bytes


@pytest.mark.parametrize("content", [b"", b"abc\n", b"300\n", b"-1\n", b"\xff\xfe"], ids=repr)
def test_a_damaged_file_starts_again_at_0_with_a_warning(tmp_path, caplog, content):
    path = tmp_path / BDSEQ_FILE
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert BdSeqCounter(path).next() == 0
    assert "bdSeq starts at 0" in caplog.text
    assert BdSeqCounter(path).next() == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anyway")
def test_an_unwritable_directory_counts_on_in_memory(tmp_path, caplog):
    tmp_path.chmod(0o500)
    try:
        counter = BdSeqCounter(tmp_path / BDSEQ_FILE)
        with caplog.at_level(logging.WARNING):
            assert [counter.next() for _ in range(3)] == [0, 1, 2]
    finally:
        tmp_path.chmod(0o700)
    assert caplog.text.count("cannot save bdSeq") == 1  # rate-limited


def test_a_directory_in_the_way_counts_on_in_memory(tmp_path, caplog):
    (tmp_path / BDSEQ_FILE).mkdir()  # works as root too
    counter = BdSeqCounter(tmp_path / BDSEQ_FILE)
    with caplog.at_level(logging.WARNING):
        assert [counter.next() for _ in range(3)] == [0, 1, 2]
    assert caplog.text.count("cannot save bdSeq") == 1
