"""Export and import in the browser: streamed downloads equal the command's files; uploads are imported by the
job exactly as `import_instructions` imports, all or nothing, and every unsafe zip is refused naming its member."""

import io
import json
import stat
import struct
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils.html import escape

from tests.factories import IterationFactory
from tests.test_export_import import export, two_pair_iteration
from tests.test_importing import png_bytes
from webapp import slots
from webapp.jobs.imports import fail_import, run_import
from webapp.models import ImportState, Instruction, InstructionImport
from webapp.tasks import run_import as run_import_task
from webapp.transfer.archives import END, ArchiveError, Limits, declared_size, unpack
from webapp.transfer.importing import import_instructions

pytestmark = pytest.mark.django_db


@pytest.fixture
def iteration(media_root):
    return two_pair_iteration()


# --- the streamed export ------------------------------------------------------------------------------------


def download(client, fmt, number=1) -> StreamingHttpResponse:
    response = client.get(reverse("iteration-export", args=[number, fmt]))
    assert response.status_code == 200, response.content
    assert response.streaming
    return response


def unzipped(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def folder_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt, out", [("rlaifv", "pairs.parquet"), ("trl", "pairs.parquet")])
def test_a_streamed_parquet_download_is_the_commands_file_byte_for_byte(client, bob, iteration, tmp_path, fmt, out):
    client.force_login(bob)
    response = download(client, fmt)
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert response["Content-Disposition"] == f'attachment; filename="iteration-1-{fmt}.parquet"'
    export(fmt, tmp_path / out)
    assert b"".join(response.streaming_content) == (tmp_path / out).read_bytes()


def test_the_jsonl_download_is_a_zip_of_the_commands_folder(client, bob, iteration, tmp_path):
    client.force_login(bob)
    response = download(client, "jsonl")
    assert response["Content-Disposition"] == 'attachment; filename="iteration-1-jsonl.zip"'
    export("jsonl", tmp_path / "out" / "pairs.jsonl")
    files = unzipped(b"".join(response.streaming_content))
    assert files == folder_files(tmp_path / "out")
    assert list(files)[0] == "pairs.jsonl" and len(files) == 3  # the rows, then two images


def test_rows_are_read_a_chunk_at_a_time_and_sent_as_they_are_written(client, bob, iteration, tmp_path, monkeypatch):
    monkeypatch.setattr("webapp.transfer.exporting.PAIR_CHUNK", 1)
    monkeypatch.setattr("labeling.formats._BATCH_ROWS", 1)
    client.force_login(bob)
    pieces = list(download(client, "rlaifv").streaming_content)
    assert len(pieces) == 3  # one piece per pair, then the footer
    export("rlaifv", tmp_path / "pairs.parquet")
    assert b"".join(pieces) == (tmp_path / "pairs.parquet").read_bytes()


def test_only_staff_download_and_only_staff_see_the_links(client, alice, charlie, bob, iteration):
    url = reverse("iteration-export", args=[1, "trl"])
    assert client.get(url).status_code == 302  # to log in
    for user in (alice, charlie):
        client.force_login(user)
        assert client.get(url).status_code == 403
    client.force_login(alice)
    assert url not in client.get(reverse("iteration", args=[1])).content.decode()
    client.force_login(bob)
    page = client.get(reverse("iteration", args=[1])).content.decode()
    assert all(reverse("iteration-export", args=[1, fmt]) in page for fmt in ("trl", "rlaifv", "jsonl"))


def test_an_unknown_format_or_iteration_is_not_found_and_no_pairs_is_said(client, bob, iteration):
    client.force_login(bob)
    assert client.get(reverse("iteration-export", args=[1, "csv"])).status_code == 404
    assert client.get(reverse("iteration-export", args=[9, "trl"])).status_code == 404
    IterationFactory(number=2)
    response = client.get(reverse("iteration-export", args=[2, "trl"]), follow=True)
    assert "Iteration 2 has no pairs to export" in response.content.decode()


# --- the zip of images --------------------------------------------------------------------------------------

LIMITS = Limits(members=10, member_bytes=50_000, total_bytes=200_000, ratio=50)


def member(name, mode=stat.S_IFREG | 0o644):
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


def zip_of(*members, compression=zipfile.ZIP_STORED) -> bytes:
    """A zip of (name or ZipInfo, bytes) members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data, compress_type=compression)
    return buffer.getvalue()


def nameless_zip() -> bytes:
    """A zip whose one member's name is empty (zipfile cannot write one: its is_dir() reads the name's last
    character, which was an IndexError, a 500, before the name check)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a", b"x")
    data = bytearray(buffer.getvalue())
    struct.pack_into("<H", data, 26, 0)  # the local header's name length; its name follows at 30
    del data[30]
    index = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, index + 28, 0)  # the index entry's name length; its name follows at 46
    del data[index + 46]
    at = data.find(b"PK\x05\x06")
    fields = list(END.unpack_from(data, at))
    fields[5], fields[6] = fields[5] - 1, fields[6] - 1  # the index is a byte shorter and a byte earlier
    END.pack_into(data, at, *fields)
    return bytes(data)


def with_end(data: bytes, **fields) -> bytes:
    """The zip with its end record saying other `members` or `index_bytes` than its index holds."""
    at = data.rfind(b"PK\x05\x06")
    signature, disk, index_disk, here, members, index_bytes, offset, comment = END.unpack_from(data, at)
    members, index_bytes = fields.get("members", members), fields.get("index_bytes", index_bytes)
    here = min(here, members)
    end = END.pack(signature, disk, index_disk, here, members, index_bytes, offset, comment)
    return data[:at] + end + data[at + END.size :]


def test_the_member_count_is_read_from_the_end_record_before_the_index(tmp_path):
    """A million members took half a GiB of worker memory to list before the count refused them: the end
    record's count refuses them first. Here the index is garbage, which only the index reading would notice."""
    data = zip_of(*[(f"{n}.png", b"x") for n in range(11)])
    index = data.rfind(b"PK\x01\x02", 0, data.rfind(b"PK\x05\x06"))
    garbage = data[: data.find(b"PK\x01\x02")] + b"\xff" * (data.rfind(b"PK\x05\x06") - data.find(b"PK\x01\x02"))
    garbage += data[data.rfind(b"PK\x05\x06") :]
    assert index > 0 and len(garbage) == len(data)
    with pytest.raises(ArchiveError, match="the zip declares 11 members"):
        unpack(io.BytesIO(garbage), tmp_path, LIMITS)
    with pytest.raises(ArchiveError, match="not a readable zip file"):
        unpack(io.BytesIO(garbage), tmp_path, Limits(members=20, member_bytes=50_000, total_bytes=200_000, ratio=50))


def test_a_zip64_end_record_is_read_too():
    import os
    import tempfile

    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", allowZip64=True) as archive:
            for n in range(70_000):  # past 65,535 members: the classic record says 0xFFFF, zip64's the count
                archive.writestr(f"{n}", b"")
        handle.seek(0, os.SEEK_END)
        assert declared_size(handle)[0] == 70_000


@pytest.mark.parametrize(
    "data, message",
    [
        (b"PK\x03\x04 this is no zip", "not a readable zip file"),
        (zip_of(("ok.png", b"x"), ("bomb.png", b"\0" * 40_000), compression=zipfile.ZIP_DEFLATED),
         "member 'bomb.png' expands .* times, over the limit of 50 \\(a zip bomb\\?\\)"),
        (zip_of(*[(f"{n}.png", bytes(40_000)) for n in range(6)]),
         "member '5.png' takes the unpacked size over the limit of 200000 bytes"),
        (zip_of(("big.png", bytes(50_001))), "member 'big.png' is 50001 bytes, over the limit of 50000"),
        (zip_of(*[(f"{n}.png", b"x") for n in range(11)]), "the zip declares 11 members, over the limit of 10"),
        (with_end(zip_of(*[(f"{n}.png", b"x") for n in range(11)]), members=1),
         "the zip holds 11 members, over the limit of 10"),  # an end record that lies: the index is counted too
        (with_end(zip_of(("a.png", b"x")), index_bytes=10 * 1024 + 1), "the zip's index is 10241 bytes"),
        (nameless_zip(), "a member has no name"),
        (zip_of(("images/../../evil.png", b"x")), "member 'images/../../evil.png': its path leaves the archive"),
        (zip_of(("/etc/evil.png", b"x")), "member '/etc/evil.png': an absolute or non-portable path"),
        (zip_of(("C:/evil.png", b"x")), "member 'C:/evil.png': an absolute or non-portable path"),
        (zip_of((member("link.png", stat.S_IFLNK | 0o777), b"/etc/passwd")), "member 'link.png' is a symbolic link"),
        (zip_of((member("pipe.png", stat.S_IFIFO | 0o644), b"")), "member 'pipe.png' is not a regular file"),
        (zip_of(("a.png", b"x"), ("./a.png", b"y")), "member './a.png' appears twice"),
    ],
    ids=["not-a-zip", "bomb-ratio", "bomb-total", "oversize", "too-many", "lying-end", "huge-index", "no-name",
         "traversal", "absolute", "drive", "symlink", "fifo", "twice"],
)  # fmt: skip
def test_an_unsafe_zip_is_refused_whole_naming_the_member(tmp_path, data, message):
    with pytest.raises(ArchiveError, match=message):
        unpack(io.BytesIO(data), tmp_path, LIMITS)
    assert list(tmp_path.iterdir()) == []  # checked whole before a byte is written


def test_a_safe_zip_unpacks_with_its_folders(tmp_path):
    data = zip_of(("images/", b""), ("images/red.png", png_bytes()), ("blue.png", png_bytes(color=(0, 0, 255))))
    assert unpack(io.BytesIO(data), tmp_path, LIMITS) == 2
    assert (tmp_path / "images" / "red.png").read_bytes() == png_bytes()


def test_the_command_takes_a_zip_of_images_and_refuses_an_unsafe_one(tmp_path, media_root):
    (tmp_path / "data.jsonl").write_text(json.dumps({"image": "shapes/red.png", "question": "What is it?"}) + "\n")
    (tmp_path / "images.zip").write_bytes(zip_of(("shapes/red.png", png_bytes())))
    call_command("import_instructions", str(tmp_path / "data.jsonl"), "--images", str(tmp_path / "images.zip"))
    assert Instruction.objects.get().question == "What is it?"
    (tmp_path / "evil.zip").write_bytes(zip_of(("../red.png", png_bytes())))
    with pytest.raises(CommandError, match="evil.zip: member '../red.png': its path leaves the archive; nothing"):
        call_command("import_instructions", str(tmp_path / "data.jsonl"), "--images", str(tmp_path / "evil.zip"))


# --- the upload and its import ------------------------------------------------------------------------------

LINES = [
    {"image": "red.png", "question": "What color is it?"},
    {"image": "shapes/blue.png", "question": "Describe it.", "split": "heldout"},
]
IMAGES = [("red.png", png_bytes()), ("shapes/blue.png", png_bytes(color=(0, 0, 255)))]


def upload_form(lines=LINES, images=IMAGES, source="web"):
    jsonl = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines).encode()
    return {
        "jsonl": SimpleUploadedFile("data.jsonl", jsonl, "application/jsonl"),
        "images": SimpleUploadedFile("images.zip", zip_of(*images), "application/zip"),
        "source": source,
    }


def upload(client, django_capture_on_commit_callbacks, **form) -> InstructionImport:
    """Post the form as the browser does; the import is sent to the workers once the upload commits."""
    with django_capture_on_commit_callbacks() as sent:
        response = client.post(reverse("imports"), upload_form(**form))
    made = InstructionImport.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("import", args=[made.pk])
    assert len(sent) == 1
    return made


def stored_images(media_root) -> list[Path]:
    return sorted((media_root / "images").rglob("*.*")) if (media_root / "images").exists() else []


def uploaded_files(media_root) -> list[Path]:
    return sorted((media_root / "imports").glob("*")) if (media_root / "imports").exists() else []


def test_an_upload_is_imported_by_the_job_and_its_files_removed(
    client, bob, media_root, django_capture_on_commit_callbacks
):
    client.force_login(bob)
    made = upload(client, django_capture_on_commit_callbacks)
    assert made.state == ImportState.PENDING and len(uploaded_files(media_root)) == 2
    run_import(made.pk, worker="test")
    made.refresh_from_db()
    assert (made.state, made.created, made.skipped, made.percent, made.error) == ("succeeded", 2, 0, 100, "")
    assert sorted(Instruction.objects.values_list("question", "source", "split")) == [
        ("Describe it.", "web", "heldout"),
        ("What color is it?", "web", "train"),
    ]
    assert len(stored_images(media_root)) == 2 and uploaded_files(media_root) == []
    page = client.get(reverse("import", args=[made.pk]), headers={"HX-Request": "true"})
    assert page.status_code == 286  # HTMX: stop polling
    assert "2 instructions imported, 0 already there" in page.content.decode()
    run_import(made.pk)  # a duplicate delivery finds it done
    assert Instruction.objects.count() == 2


@pytest.mark.parametrize(
    "lines, images, message",
    [
        (LINES, [IMAGES[0], ("shapes/blue.png", b"<html>not an image</html>")],
         "data.jsonl: line 2: shapes/blue.png: not a readable image"),
        (LINES, [*IMAGES, ("../escape.png", png_bytes())], "images.zip: member '../escape.png': its path leaves"),
        (LINES, IMAGES[:1], "data.jsonl: line 2: image file not found: shapes/blue.png"),
        ([*LINES, "{not json"], IMAGES, "data.jsonl: line 3: not valid JSON"),
    ],
    ids=["bad-image", "traversal", "missing-image", "bad-line"],
)  # fmt: skip
def test_a_bad_line_or_member_fails_the_whole_upload(
    client, bob, media_root, django_capture_on_commit_callbacks, lines, images, message
):
    client.force_login(bob)
    made = upload(client, django_capture_on_commit_callbacks, lines=lines, images=images)
    run_import(made.pk)
    made.refresh_from_db()
    assert made.state == ImportState.FAILED and made.error.startswith(message), made.error
    assert not Instruction.objects.exists() and stored_images(media_root) == [] and uploaded_files(media_root) == []
    page = client.get(reverse("import", args=[made.pk])).content.decode()
    assert "Nothing was imported" in page and escape(message.split(": ")[1]) in page


def test_an_unexpected_error_fails_the_import_with_it(client, bob, media_root, django_capture_on_commit_callbacks):
    """What the task's on_failure does once retries are spent or the error is not a transient one."""
    client.force_login(bob)
    made = upload(client, django_capture_on_commit_callbacks)
    fail_import(made.pk, RuntimeError("disk on fire"))
    made.refresh_from_db()
    assert (made.state, made.error) == (ImportState.FAILED, "RuntimeError: disk on fire")
    assert uploaded_files(media_root) == []
    run_import(made.pk)  # a late delivery changes nothing
    assert not Instruction.objects.exists()


def test_the_task_retries_a_transient_error_and_fails_the_import_when_the_retries_run_out(
    client, bob, media_root, django_capture_on_commit_callbacks, monkeypatch
):
    """Celery's own retry hook, through `apply` (in this process, hooks included); the worker is in the browser
    tests."""
    client.force_login(bob)
    made = upload(client, django_capture_on_commit_callbacks)
    attempts = []

    def database_away(*args, **kwargs):
        attempts.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("webapp.jobs.imports.import_instructions", database_away)
    assert run_import_task.apply(args=[made.pk]).failed()
    assert len(attempts) == 1 + run_import_task.max_retries
    made.refresh_from_db()
    assert (made.state, made.error) == (
        ImportState.FAILED,
        "OperationalError: server closed the connection unexpectedly",
    )
    assert uploaded_files(media_root) == []


def test_a_transient_error_that_passes_leaves_the_import_done(
    client, bob, media_root, django_capture_on_commit_callbacks, monkeypatch
):
    client.force_login(bob)
    made = upload(client, django_capture_on_commit_callbacks)
    attempts = []

    def flaky(*args, **kwargs):
        attempts.append(1)
        if len(attempts) < 3:
            raise OperationalError("connection refused")
        return import_instructions(*args, **kwargs)

    monkeypatch.setattr("webapp.jobs.imports.import_instructions", flaky)
    assert run_import_task.apply(args=[made.pk]).successful()
    made.refresh_from_db()
    assert (len(attempts), made.state, made.created) == (3, ImportState.SUCCEEDED, 2)


def test_the_page_polls_while_the_import_runs(client, bob, media_root, django_capture_on_commit_callbacks):
    client.force_login(bob)
    made = upload(client, django_capture_on_commit_callbacks)
    InstructionImport.objects.filter(pk=made.pk).update(state="running", phase="checking", done=1, total=4)
    page = client.get(reverse("import", args=[made.pk])).content.decode()
    assert 'hx-trigger="every 1s"' in page and "1 / 4 lines checked" in page
    fragment = client.get(reverse("import", args=[made.pk]), headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and 'value="25"' in fragment.content.decode()


def test_only_staff_upload_or_watch_imports(client, alice, charlie, bob, media_root):
    made = InstructionImport.objects.create(jsonl="imports/a.jsonl", images="imports/a.zip", uploaded_by=bob)
    urls = [reverse("imports"), reverse("import", args=[made.pk])]
    for url in urls:
        assert client.get(url).status_code == 302  # to log in
    for user in (alice, charlie):
        client.force_login(user)
        for url in urls:
            assert client.get(url).status_code == 403
        assert client.post(urls[0], upload_form()).status_code == 403
    assert InstructionImport.objects.count() == 1 and uploaded_files(media_root) == []
    client.force_login(bob)
    assert client.get(urls[0]).status_code == 200
    assert client.get(reverse("import", args=[made.pk + 1])).status_code == 404


def test_an_upload_over_the_limit_is_refused_before_it_is_read(client, bob, settings, media_root):
    settings.IMPORT_MAX_BYTES = 100
    client.force_login(bob)
    response = client.post(reverse("imports"), upload_form())
    assert response.status_code == 413
    assert "over the upload limit of 100\xa0bytes (IMPORT_MAX_BYTES)" in response.content.decode()
    assert not InstructionImport.objects.exists() and uploaded_files(media_root) == []


def test_the_form_needs_both_files_and_a_source(client, bob, media_root):
    client.force_login(bob)
    form = upload_form(source="  ")
    del form["images"]
    page = client.post(reverse("imports"), form).content.decode()
    assert page.count("This field is required.") == 2  # the zip, and a blank source
    assert not InstructionImport.objects.exists()


def release_leaked_slots():
    """The test client leaves a download it never read open, and with it the slot its streaming holds on the
    tests' one connection (a WSGI server always closes a response)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock_all()")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks: PostgreSQL")
def test_exports_past_the_sites_concurrency_are_refused_at_once(client, bob, iteration, settings):
    """Found by an attack: 12 exports at once held every web worker and the login page took 45 s. While
    EXPORT_CONCURRENCY downloads stream, one more is refused at once."""
    import psycopg

    settings.EXPORT_CONCURRENCY = 1
    client.force_login(bob)
    url = reverse("iteration-export", args=[iteration.number, "trl"])
    release_leaked_slots()
    other = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    assert other.execute("SELECT pg_try_advisory_lock(%s, 0)", [slots.EXPORT]).fetchone()[0]  # another download
    refused = client.get(url)
    assert refused.status_code == 429 and b"Other exports are running" in refused.content
    other.execute("SELECT pg_advisory_unlock(%s, 0)", [slots.EXPORT])  # that download ended
    response = client.get(url)
    try:
        assert not other.execute("SELECT pg_try_advisory_lock(%s, 0)", [slots.EXPORT]).fetchone()[0]  # streaming
        assert response.status_code == 200 and b"".join(response.streaming_content)[:4] == b"PAR1"
        assert other.execute("SELECT pg_try_advisory_lock(%s, 0)", [slots.EXPORT]).fetchone()[0]  # sent: given back
    finally:
        other.close()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks: PostgreSQL")
def test_a_streamed_response_gives_its_slot_back_when_closed_started_or_not(db):
    import psycopg

    release_leaked_slots()
    other = psycopg.connect(**connection.get_connection_params(), autocommit=True)

    def free() -> bool:
        taken = other.execute("SELECT pg_try_advisory_lock(%s, 0)", [slots.EXPORT]).fetchone()[0]
        if taken:
            other.execute("SELECT pg_advisory_unlock(%s, 0)", [slots.EXPORT])
        return taken

    for started in (True, False):
        slot = slots.take(slots.EXPORT, 1, session=True)
        stream = slots.HeldWhileStreaming(iter([b"a", b"b"]), slots.EXPORT, slot)
        if started:
            assert next(stream) == b"a"
        assert slot == 0 and not free()
        stream.close()
        assert free()
    other.close()
