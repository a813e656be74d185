"""Unpacking an uploaded zip of images, refusing anything that could harm the worker that unpacks it.

A zip is checked whole before one byte is written. First its end record, read from its last bytes before its
index is: a zip that declares more members than allowed, or an index larger than that many members need, is
refused before the index is read into memory (a million members took half a GiB to list). Then its index: too
many members, a member larger than an image may be,
a total or a compression ratio that gives a zip bomb away, a path that is absolute or climbs out (`..`), a
symlink or any other member that is not a regular file or folder, an encrypted member, or a name given twice
are all refused with an error naming the member. The sizes a zip declares can lie, so the bytes actually
unpacked are counted against the same limits. What the images *are* is checked later, by the import
(webapp/transfer/images.py), exactly as for a folder given to `import_instructions --images`.
"""

import os
import stat
import struct
import zipfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from tempfile import TemporaryDirectory

from django.conf import settings

PIECE = 1024 * 1024  # bytes unpacked at a time
# The end records of a zip (PKWARE's APPNOTE 4.3.16, 4.3.15, 4.3.14): the classic one, the zip64 locator before it,
# and the zip64 record the locator points to.
END = struct.Struct("<4s4H2LH")  # signature, disk, index disk, entries here, entries, index size, offset, comment
END64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk, offset of the zip64 end record, disks
END64 = struct.Struct("<4sQ2H2L4Q")  # signature, size, versions, disks, entries here, entries, index size, offset
INDEX_BYTES_PER_MEMBER = 1024  # an index entry: 46 bytes, a name of at most 255 and its extra fields


class ArchiveError(ValueError):
    """The zip is refused; the message names the member at fault."""


@dataclass(frozen=True)
class Limits:
    members: int
    member_bytes: int
    total_bytes: int
    ratio: int

    @classmethod
    def from_settings(cls) -> "Limits":
        return cls(
            members=settings.IMPORT_MAX_MEMBERS,
            member_bytes=settings.IMAGE_MAX_BYTES,
            total_bytes=settings.IMPORT_MAX_UNPACKED_BYTES,
            ratio=settings.IMPORT_MAX_RATIO,
        )


def declared_size(handle) -> tuple[int, int] | None:
    """(members, index bytes) as the zip's end record declares them, read from its last bytes; None when it has
    no end record (then it is not a zip, which opening it says)."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    tail_size = min(size, END.size + 0xFFFF)  # the record, and a comment of at most 64 KiB after it
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + END.size > len(tail):
        return None
    _, _, _, _, members, index_bytes, _, _ = END.unpack_from(tail, at)
    if (members == 0xFFFF or index_bytes == 0xFFFFFFFF) and at >= END64_LOCATOR.size:
        signature, _, offset, _ = END64_LOCATOR.unpack_from(tail, at - END64_LOCATOR.size)
        if signature == b"PK\x06\x07" and offset < size:
            handle.seek(offset)
            record = handle.read(END64.size)
            if len(record) == END64.size and record[:4] == b"PK\x06\x06":
                members, index_bytes = END64.unpack(record)[7:9]
    return members, index_bytes


def _check_declared(handle, limits: "Limits") -> None:
    declared = declared_size(handle)
    handle.seek(0)
    if declared is None:
        return
    members, index_bytes = declared
    if members > limits.members:
        raise ArchiveError(f"the zip declares {members} members, over the limit of {limits.members}")
    if index_bytes > limits.members * INDEX_BYTES_PER_MEMBER:
        raise ArchiveError(f"the zip's index is {index_bytes} bytes, more than {limits.members} members need")


def _kind(member: zipfile.ZipInfo) -> int:
    """The member's Unix file type (0 when the zip was made where there is none, e.g. on Windows)."""
    return stat.S_IFMT(member.external_attr >> 16)


def _check_name(member: zipfile.ZipInfo) -> PurePosixPath:
    name = member.filename
    if not name.strip("/"):
        raise ArchiveError(f"a member has no name ({name!r})")
    path = PurePosixPath(name)
    if "\x00" in name or "\\" in name or path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(f"member {name!r}: an absolute or non-portable path")
    if ".." in path.parts:
        raise ArchiveError(f"member {name!r}: its path leaves the archive")
    return path


def _check_member(member: zipfile.ZipInfo, limits: Limits) -> None:
    name = member.filename
    kind = _kind(member)
    if kind == stat.S_IFLNK:
        raise ArchiveError(f"member {name!r} is a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveError(f"member {name!r} is not a regular file")
    if member.flag_bits & 0x1:
        raise ArchiveError(f"member {name!r} is encrypted")
    if member.file_size > limits.member_bytes:
        raise ArchiveError(f"member {name!r} is {member.file_size} bytes, over the limit of {limits.member_bytes}")
    if member.file_size > limits.ratio * max(member.compress_size, 1):
        ratio = member.file_size // max(member.compress_size, 1)
        raise ArchiveError(f"member {name!r} expands {ratio} times, over the limit of {limits.ratio} (a zip bomb?)")


def _check(members: list[zipfile.ZipInfo], limits: Limits) -> None:
    if len(members) > limits.members:
        raise ArchiveError(f"the zip holds {len(members)} members, over the limit of {limits.members}")
    seen, total = set(), 0
    for member in members:
        path = _check_name(member)
        _check_member(member, limits)
        if path in seen:
            raise ArchiveError(f"member {member.filename!r} appears twice")
        seen.add(path)
        total += member.file_size
        if total > limits.total_bytes:
            raise ArchiveError(
                f"member {member.filename!r} takes the unpacked size over the limit of {limits.total_bytes} bytes"
            )


def _unpack(archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: int, limits: Limits) -> int:
    """Write one member; returns its size. Counts real bytes, since a zip's declared sizes can lie."""
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with archive.open(member) as source, target.open("xb") as out:
        while piece := source.read(PIECE):
            size += len(piece)
            if size > limits.member_bytes or size > budget:
                raise ArchiveError(f"member {member.filename!r} unpacks to more than its zip entry declares")
            out.write(piece)
    return size


def unpack(file, dest: Path, limits: Limits | None = None) -> int:
    """Unpack the zip `file` (a path or a binary file) into the empty folder `dest`; returns the files written."""
    limits = limits or Limits.from_settings()
    with open(file, "rb") if isinstance(file, str | os.PathLike) else nullcontext(file) as handle:
        _check_declared(handle, limits)
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
            raise ArchiveError(f"not a readable zip file ({exc})") from None
        return _unpack_all(archive, dest, limits)


def _unpack_all(archive: zipfile.ZipFile, dest: Path, limits: Limits) -> int:
    with archive:
        members = archive.infolist()
        _check(members, limits)
        budget, written = limits.total_bytes, 0
        for member in members:
            target = dest.joinpath(*_check_name(member).parts)
            try:
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                budget -= _unpack(archive, member, target, budget, limits)
            except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
                raise ArchiveError(f"member {member.filename!r} cannot be unpacked ({exc})") from None
            written += 1
    return written


@contextmanager
def unpacked(file, limits: Limits | None = None):
    """The zip unpacked into a temporary folder, removed afterwards."""
    with TemporaryDirectory(prefix="import-") as tmp:
        unpack(file, Path(tmp), limits)
        yield Path(tmp)
