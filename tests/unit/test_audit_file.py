"""The audit file on real file systems: whole lines only, torn tails kept as evidence, untrusted files refused."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_ci_tools.audit import AuditLog, AuditRecord, AuditUnavailable, JsonlFileSink
from tests.conftest import FakeClock

NOBODY = 65534
TORN = '{"ts":"2027-01-15T08:00:00.000Z","token":"sha256:0123456789ab","event":"result","tool":"restart_jo'


def record(request_id: str, padding: int = 0) -> AuditRecord:
    return AuditRecord(
        event="attempt",
        tool="restart_job",
        token="sha256:0123456789ab",
        token_sha256="0123456789abefefefefefefefefefefefefefefefefefefefefefefefefefef",
        request_id=request_id,
        decision="allowed",
        detail={"padding": "p" * padding} if padding else {},
    )


def unchained(line: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in line.items() if key not in ("seq", "prev")}


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every line of the file as JSON; fails the test if any line is not a JSON object or the last is unended."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), data[-80:]
    parsed = [json.loads(line) for line in data.decode().splitlines()]
    assert all(isinstance(line, dict) for line in parsed)
    return parsed


def request_ids(path: Path) -> list[str]:
    return [line["request_id"] for line in lines_of(path) if "request_id" in line]


class FillsUpOnce:
    """A `write(2)` that, when armed, writes half the line and then fails as a full disk does."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self, fd: int, data: bytes) -> int:
        if not self.armed:
            return os.write(fd, data)
        self.armed = False
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


class ShortThenFull:
    """The kernel's way: a short write that succeeds, then ENOSPC for the rest."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fd: int, data: bytes) -> int:
        self.calls += 1
        if self.calls == 1:
            return os.write(fd, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")


# Whole lines or nothing -----------------------------------------------------------------------------


def test_a_write_that_fills_the_disk_mid_line_leaves_no_part_of_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write = FillsUpOnce()
    log = AuditLog(JsonlFileSink(path, write=write))
    log.write_now(record("a"), durable=True)

    write.armed = True
    with pytest.raises(AuditUnavailable, match="No space left on device"):
        log.write_now(record("b"), durable=True)
    log.write_now(record("c"), durable=True)

    assert request_ids(path) == ["a", "c"]
    assert not (tmp_path / "audit.jsonl.torn").exists()


def test_a_short_write_followed_by_a_full_disk_leaves_no_part_of_the_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog(JsonlFileSink(path)).write_now(record("a"), durable=True)

    with pytest.raises(AuditUnavailable):
        AuditLog(JsonlFileSink(path, write=ShortThenFull())).write_now(record("b"), durable=False)
    AuditLog(JsonlFileSink(path)).write_now(record("c"), durable=False)

    assert request_ids(path) == ["a", "c"]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root and mount permission; skipped where that is not allowed)."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir(mode=0o700)
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mountpoint)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def test_a_real_disk_that_fills_and_is_freed_keeps_every_line_whole(tiny_disk: Path) -> None:
    path = tiny_disk / "audit.jsonl"
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(b"x" * 56 * 1024)
    log = AuditLog(JsonlFileSink(path))
    written: list[str] = []
    refused: list[str] = []
    for n in range(400):
        try:
            log.write_now(record(f"r{n:03}", padding=80), durable=True)
        except AuditUnavailable:
            refused.append(f"r{n:03}")
        else:
            written.append(f"r{n:03}")

    assert written and refused  # the disk did fill up
    ballast.unlink()  # the operator frees space
    log.write_now(record("after", padding=80), durable=True)

    assert request_ids(path) == [*written, "after"]  # every line parses; every completed record is there
    assert not (tiny_disk / "audit.jsonl.torn").exists()


def test_concurrent_writers_in_threads_and_two_sinks_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    logs = [AuditLog(JsonlFileSink(path)), AuditLog(JsonlFileSink(path))]

    def writer(n: int) -> None:
        for i in range(40):
            logs[n % 2].write_now(record(f"{n}-{i}", padding=3000), durable=False)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(request_ids(path)) == sorted(f"{n}-{i}" for n in range(6) for i in range(40))


# Torn tails -----------------------------------------------------------------------------------------


def test_a_torn_tail_from_another_process_is_kept_as_a_torn_record_at_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonlFileSink(path, clock=FakeClock(1_800_000_000.5)), clock=FakeClock())
    log.write_now(record("a"), durable=True)
    offset = path.stat().st_size
    with path.open("ab") as other_process:
        other_process.write(TORN.encode())

    log.write_now(record("b"), durable=True)

    first, torn, last = lines_of(path)
    written = path.read_bytes().splitlines()
    assert (first["request_id"], last["request_id"]) == ("a", "b")
    assert (first["seq"], last["seq"]) == (1, 3)  # the torn record takes the place of the lost line
    assert last["prev"] == hashlib.sha256(written[1]).hexdigest()
    assert torn == {
        "seq": 2,
        "prev": hashlib.sha256(written[0]).hexdigest(),
        "ts": "2027-01-15T08:00:00.500Z",
        "event": "torn",
        "offset": offset,
        "bytes": len(TORN),
        "sha256": hashlib.sha256(TORN.encode()).hexdigest(),
        "fragment_b64": base64.b64encode(TORN.encode()).decode(),
    }
    assert base64.b64decode(torn["fragment_b64"]) == TORN.encode()
    # the copy made before the fragment was cut (the quarantine file is not chained)
    assert lines_of(tmp_path / "audit.jsonl.torn") == [unchained(torn)]


def test_a_torn_tail_is_repaired_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"event":"attempt"}\n' + TORN.encode())
    path.chmod(0o600)

    quarantined = JsonlFileSink(path).repair()

    assert quarantined == len(TORN)
    [_, torn] = lines_of(path)
    assert base64.b64decode(torn["fragment_b64"]) == TORN.encode()
    assert JsonlFileSink(path).repair() == 0  # nothing left to repair


def test_a_whole_record_that_only_lacks_its_newline_stays_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"request_id":"a"}')
    path.chmod(0o600)

    AuditLog(JsonlFileSink(path)).write_now(record("b"), durable=True)

    assert request_ids(path) == ["a", "b"]
    assert not (tmp_path / "audit.jsonl.torn").exists()


def test_a_file_of_one_fragment_and_an_interrupted_earlier_copy_are_both_repaired(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"{")
    path.chmod(0o600)
    quarantine = tmp_path / "audit.jsonl.torn"
    quarantine.write_bytes(b'{"event":"torn","offset":0,"bytes":1,"fragm')  # a copy cut short by a crash
    quarantine.chmod(0o600)

    AuditLog(JsonlFileSink(path)).write_now(record("a"), durable=True)

    [torn, written] = lines_of(path)
    assert (torn["offset"], base64.b64decode(torn["fragment_b64"]), written["request_id"]) == (0, b"{", "a")
    assert lines_of(quarantine) == [unchained(torn)]


def test_a_torn_tail_that_cannot_be_copied_for_lack_of_space_stays_and_the_write_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"request_id":"a"}\n' + TORN.encode())
    path.chmod(0o600)
    write = FillsUpOnce()
    write.armed = True  # the copy to audit.jsonl.torn is the first write and fails

    with pytest.raises(AuditUnavailable, match="No space left on device"):
        AuditLog(JsonlFileSink(path, write=write)).write_now(record("b"), durable=True)

    assert path.read_bytes() == b'{"request_id":"a"}\n' + TORN.encode()  # untouched: nothing lost
    AuditLog(JsonlFileSink(path)).write_now(record("b"), durable=True)
    assert [line.get("event") for line in lines_of(path)] == [None, "torn", "attempt"]


def test_a_tail_too_long_to_be_an_audit_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"x" * (1024 * 1024 + 1))
    path.chmod(0o600)

    with pytest.raises(AuditUnavailable, match=r"MCP_CI_AUDIT_LOG .* without a newline"):
        AuditLog(JsonlFileSink(path)).write_now(record("a"), durable=True)
    assert path.stat().st_size == 1024 * 1024 + 1


# Files that are not trusted -------------------------------------------------------------------------


def refused(path: Path) -> str:
    with pytest.raises(AuditUnavailable) as caught:
        AuditLog(JsonlFileSink(path)).write_now(record("a"), durable=True)
    message = str(caught.value)
    assert f"MCP_CI_AUDIT_LOG {path}" in message
    return message


def test_a_symlinked_audit_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "authorized_keys"
    target.parent.mkdir()
    target.write_text("ssh-ed25519 AAAA original\n")
    before = target.stat()
    path = tmp_path / "audit.jsonl"
    path.symlink_to(target)

    assert "is a symbolic link" in refused(path)
    assert target.read_text() == "ssh-ed25519 AAAA original\n"
    assert target.stat().st_mtime_ns == before.st_mtime_ns


def test_a_dangling_symlink_is_refused_and_nothing_is_created_where_it_points(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.symlink_to(tmp_path / "created-through-the-link")

    assert "is a symbolic link" in refused(path)
    assert not (tmp_path / "created-through-the-link").exists()


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    os.mkfifo(path, 0o600)

    assert "is not a regular file (a FIFO)" in refused(path)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.mkdir(mode=0o700)

    assert "is not a regular file (a directory)" in refused(path)


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602], ids=["0666", "0620", "0602"])
def test_a_file_others_can_write_is_refused_and_left_as_it_is(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"old":true}\n')
    path.chmod(mode)

    assert f"is writable by other users (mode {mode:04o}" in refused(path)
    assert path.read_text() == '{"old":true}\n'


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


@needs_root
def test_a_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"old":true}\n')
    path.chmod(0o600)
    os.chown(path, NOBODY, NOBODY)

    assert f"is owned by uid {NOBODY}, not by this server's user (uid 0)" in refused(path)
    assert path.read_text() == '{"old":true}\n'


@needs_root
def test_a_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY, NOBODY)

    assert f"owned by uid {NOBODY}" in refused(directory / "audit.jsonl")
    assert not (directory / "audit.jsonl").exists()


def test_a_directory_others_can_write_is_refused_unless_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)

    assert "that other users can write (mode 0777)" in refused(shared / "audit.jsonl")
    assert not (shared / "audit.jsonl").exists()

    shared.chmod(0o1777)  # like /tmp: others cannot replace or delete this user's file
    AuditLog(JsonlFileSink(shared / "audit.jsonl")).write_now(record("a"), durable=True)
    assert request_ids(shared / "audit.jsonl") == ["a"]


def test_a_new_file_is_private_in_a_private_directory(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit.jsonl"

    AuditLog(JsonlFileSink(path)).write_now(record("a"), durable=True)

    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


class StallingSync:
    """An `fsync(2)` that, when armed, blocks until released and then succeeds or fails with EIO."""

    def __init__(self) -> None:
        self.armed = False
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.fail = False

    def __call__(self, fd: int) -> None:
        if self.armed:
            self.armed = False
            self.stalled.set()
            assert self.release.wait(10), "the test never released the stalled fsync"
            if self.fail:
                raise OSError(errno.EIO, "Input/output error")
        os.fsync(fd)


def _durable_write_in_a_thread(
    log: AuditLog, request_id: str
) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def write() -> None:
        try:
            log.write_now(record(request_id), durable=True)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=write)
    thread.start()
    return thread, errors


def test_a_stalled_fsync_delays_only_its_own_record(tmp_path: Path) -> None:
    from mcp_ci_tools.audit.trail import verify

    path = tmp_path / "audit.jsonl"
    sync = StallingSync()
    log = AuditLog(JsonlFileSink(path, sync=sync), clock=FakeClock())
    log.write_now(record("r-1"), durable=True)
    sync.armed = True

    stalled, errors = _durable_write_in_a_thread(log, "r-2")
    assert sync.stalled.wait(10)
    log.write_now(record("r-3"), durable=False)  # neither lock is held while r-2 waits for the disk
    sync_of_r4, r4_errors = _durable_write_in_a_thread(log, "r-4")  # another sync overlaps the stalled one
    sync_of_r4.join(10)

    assert not sync_of_r4.is_alive() and not r4_errors
    assert stalled.is_alive()  # a durable record's write returns only once it is synced
    assert request_ids(path) == ["r-1", "r-2", "r-3", "r-4"]
    sync.release.set()
    stalled.join(10)
    assert not stalled.is_alive() and not errors
    assert verify([path]).whole


def test_a_failed_fsync_cuts_the_record_off_and_the_chain_goes_on_whole(tmp_path: Path) -> None:
    from mcp_ci_tools.audit.trail import verify

    path = tmp_path / "audit.jsonl"
    sync = StallingSync()
    log = AuditLog(JsonlFileSink(path, sync=sync), clock=FakeClock())
    log.write_now(record("r-1"), durable=True)
    sync.armed, sync.fail = True, True
    sync.release.set()

    with pytest.raises(AuditUnavailable, match="not writable"):
        log.write_now(record("r-2"), durable=True)
    log.write_now(record("r-3"), durable=True)

    assert request_ids(path) == ["r-1", "r-3"]
    assert [line["seq"] for line in lines_of(path)] == [1, 2]
    assert verify([path]).whole


def test_a_failed_fsync_after_another_line_followed_keeps_both_lines_and_refuses_the_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mcp_ci_tools.audit.trail import verify

    path = tmp_path / "audit.jsonl"
    sync = StallingSync()
    log = AuditLog(JsonlFileSink(path, sync=sync), clock=FakeClock())
    sync.armed, sync.fail = True, True
    stalled, errors = _durable_write_in_a_thread(log, "r-1")
    assert sync.stalled.wait(10)
    log.write_now(record("r-2"), durable=False)
    sync.release.set()
    stalled.join(10)

    assert [type(error) for error in errors] == [AuditUnavailable]
    assert request_ids(path) == ["r-1", "r-2"]  # r-1 cannot go without breaking r-2's link
    assert verify([path]).whole
    assert "could not be cut off again" in caplog.text
