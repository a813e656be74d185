"""Unpacking an uploaded zip of images, refusing anything that could harm the worker that unpacks it.

A zip is checked whole before one byte is written: too many members, a member larger than an image may be,
a total or a compression ratio that gives a zip bomb away, a path that is absolute or climbs out (`..`), a
symlink or any other member that is not a regular file or folder, an encrypted member, or a name given twice
are all refused with an error naming the member. The sizes a zip declares can lie, so the bytes actually
unpacked are counted against the same limits. What the images *are* is checked later, by the import
(webapp/transfer/images.py), exactly as for a folder given to `import_instructions --images`.
"""

import stat
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from tempfile import TemporaryDirectory

from django.conf import settings

PIECE = 1024 * 1024  # bytes unpacked at a time


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


def _kind(member: zipfile.ZipInfo) -> int:
    """The member's Unix file type (0 when the zip was made where there is none, e.g. on Windows)."""
    return stat.S_IFMT(member.external_attr >> 16)


def _check_name(member: zipfile.ZipInfo) -> PurePosixPath:
    name = member.filename
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
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise ArchiveError(f"not a readable zip file ({exc})") from None
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
