"""import_instructions: the happy path, and every bad input aborts with `line N:` and writes nothing."""

import io
import json
import random
import re
import tracemalloc

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from webapp.models import Instruction

pytestmark = pytest.mark.django_db


def png_bytes(size=(64, 48), color=(200, 30, 30), mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "red.png").write_bytes(png_bytes())
    (images / "blue.png").write_bytes(png_bytes(color=(0, 0, 255)))
    return tmp_path


def write_jsonl(folder, *records):
    path = folder / "data.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def run_import(folder, *records) -> str:
    out = io.StringIO()
    jsonl = str(write_jsonl(folder, *records))
    call_command("import_instructions", jsonl, "--images", str(folder / "images"), stdout=out)
    return out.getvalue()


def stored_files(media_root):
    return sorted(p.name for p in media_root.rglob("*") if p.is_file()) if media_root.exists() else []


GOOD = [
    {"image": "red.png", "question": "What color is it?"},
    {"image": "blue.png", "question": "Describe it.", "source": "coco", "split": "heldout"},
    {"image": "red.png", "question": "Describe it."},
]


def test_it_imports_lines_and_stores_images_by_content(folder, media_root):
    run_import(folder, *GOOD)
    assert Instruction.objects.count() == 3
    held_out = Instruction.objects.get(source="coco")
    assert (held_out.split, held_out.width, held_out.height) == ("heldout", 64, 48)
    red = Instruction.objects.filter(question="What color is it?").get()
    assert red.image.name == f"images/{red.image_sha256[:2]}/{red.image_sha256}.png"
    assert red.image.read() == png_bytes()
    assert len(stored_files(media_root)) == 2  # red stored once for two instructions


def test_it_keeps_the_objects_an_image_shows_as_ground_truth(folder, media_root):
    run_import(folder, GOOD[0] | {"objects": ["red  square", "blue circle"]}, GOOD[1])
    assert Instruction.objects.get(question="What color is it?").objects_present == ["red square", "blue circle"]
    assert Instruction.objects.get(question="Describe it.").objects_present is None


def test_importing_twice_adds_nothing(folder, media_root):
    run_import(folder, *GOOD)
    run_import(folder, *GOOD)
    assert Instruction.objects.count() == 3


def truncated(folder):
    Image.effect_noise((300, 300), 50).convert("RGB").save(buffer := io.BytesIO(), format="PNG")
    (folder / "images" / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def bomb(folder):
    # 100M pixels declared, a few KB on disk.
    Image.new("1", (10_000, 10_000)).save(folder / "images" / "bomb.png")


def not_an_image(folder):
    (folder / "images" / "notes.png").write_text("these are not pixels")


@pytest.mark.parametrize(
    "bad_line, prepare, message",
    [
        ({"image": "missing.png", "question": "Q?"}, None, "line 2: image file not found: missing.png"),
        ({"image": "notes.png", "question": "Q?"}, not_an_image, "line 2: notes.png: not a readable image"),
        ({"image": "cut.png", "question": "Q?"}, truncated, "line 2: cut.png: not a readable image"),
        ({"image": "bomb.png", "question": "Q?"}, bomb, "line 2: bomb.png: image is 10000×10000"),
        ({"image": "red.png"}, None, "line 2: missing field 'question'"),
        ({"question": "Q?"}, None, "line 2: missing field 'image'"),
        ('{"image": "red.png", "question": ', None, "line 2: not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, None, "line 2: JSON nested too deeply"),  # was a RecursionError
        ({"image": "red.png", "question": 42}, None, "line 2: field 'question' must be a string, not a number"),
        ({"image": ["red.png"], "question": "Q?"}, None, "line 2: field 'image' must be a string, not an array"),
        ([1, 2], None, "line 2: expected a JSON object, got an array"),
        ({"image": "red.png", "question": "  "}, None, "line 2: field 'question' is empty"),
        ({"image": "red.png", "question": "Q?", "split": "test"}, None, "line 2: field 'split' must be one of"),
        ({"image": "../data.jsonl", "question": "Q?"}, None, "line 2: image path '../data.jsonl' leaves the images"),
        ({"image": "red.png", "question": "Q\u0000?"}, None, "line 2: field 'question' contains a NUL character"),
        ({"image": "red.png", "question": "Q" * 4001}, None, "line 2: field 'question' is 4001 characters long, over"),
        ({"image": "x" * 300 + ".png", "question": "Q?"}, None, "line 2: image 'xxxxx"),
        (
            {"image": "red.png", "question": "Q?", "objects": "red circle"},
            None,
            "line 2: field 'objects' must be a list",
        ),
        ({"image": "red.png", "question": "Q?", "objects": ["red circle", ""]}, None, "line 2: field 'objects' must"),
        ({"image": "red.png", "question": "Q?", "objects": ["x" * 101]}, None, "line 2: field 'objects' holds over"),
    ],
)
def test_a_bad_line_aborts_the_import_and_writes_nothing(folder, media_root, bad_line, prepare, message):
    if prepare:
        prepare(folder)
    with pytest.raises(CommandError) as error:
        run_import(folder, GOOD[0], bad_line, GOOD[1])
    assert message in str(error.value)
    assert "nothing was imported" in str(error.value)
    assert not re.search(
        r"<[\w.]+ object at 0x|(not|got) (int|float|list|dict|str|NoneType)\b", str(error.value)
    )  # no Python reprs
    assert Instruction.objects.count() == 0
    assert stored_files(media_root) == []


def test_a_failed_write_removes_the_images_it_stored(folder, media_root, monkeypatch):
    from webapp.transfer import importing

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(importing.Instruction.objects, "bulk_create", fail)
    with pytest.raises(RuntimeError):
        run_import(folder, *GOOD)
    assert Instruction.objects.count() == 0
    assert stored_files(media_root) == []


def test_lines_repeating_an_instruction_import_it_once_and_count_the_rest_as_there(folder, media_root):
    run_import(folder, GOOD[0])
    output = run_import(folder, *GOOD, GOOD[1], GOOD[0])
    assert Instruction.objects.count() == 3
    assert "2 instructions imported, 3 already there" in output


def test_an_empty_file_is_an_error(folder, media_root):
    (folder / "empty.jsonl").write_text("\n\n")
    with pytest.raises(CommandError, match="no instructions to import"):
        call_command("import_instructions", str(folder / "empty.jsonl"), "--images", str(folder / "images"))


def test_load_samples_imports_twenty_real_photos_once(media_root):
    call_command("load_samples")
    call_command("load_samples")
    demo = Instruction.objects.filter(source="demo")
    assert demo.count() == 20
    assert demo.filter(split="heldout").count() == 4
    assert len(stored_files(media_root)) == 10
    astronaut = demo.filter(question__contains="wearing").get()
    assert (astronaut.width, astronaut.height) == (512, 512)


# --- memory: an upload may unpack to gigabytes ------------------------------------------------------------------


def noise_png(seed: int, side=300) -> bytes:
    """A PNG that does not compress: about side² × 3 bytes."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(side * side * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_import_holds_one_images_bytes_at_a_time(tmp_path, media_root):
    """Found by an audit: every image's bytes stayed in memory from its check to the write, so the worker's
    memory grew with the whole upload (up to IMPORT_MAX_UNPACKED_BYTES)."""
    from webapp.transfer.importing import import_instructions, read_jsonl

    (tmp_path / "images").mkdir()
    sizes = []
    for n in range(30):
        sizes.append((tmp_path / "images" / f"{n}.png").write_bytes(noise_png(n)))
    jsonl = write_jsonl(tmp_path, *({"image": f"{n}.png", "question": f"What is {n}?"} for n in range(30)))
    tracemalloc.start()
    try:
        result = import_instructions(read_jsonl(jsonl), tmp_path / "images")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.created == 30 and Instruction.objects.count() == 30
    assert peak < 4 * max(sizes) < sum(sizes) / 5, (peak, max(sizes), sum(sizes))


def test_a_changed_image_between_check_and_write_is_refused(tmp_path, media_root):
    """The bytes are read again to be written: a file changed since its check is not written unchecked."""
    from webapp.transfer.importing import ImportFailed, import_instructions, read_jsonl

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(noise_png(1, side=16))
    jsonl = write_jsonl(tmp_path, {"image": "a.png", "question": "Q?"})

    def swap_when_writing(phase, done, total):
        if phase == "writing":
            (tmp_path / "images" / "a.png").write_bytes(noise_png(2, side=16))

    with pytest.raises(ImportFailed, match="'a.png' changed while it was being imported"):
        import_instructions(read_jsonl(jsonl), tmp_path / "images", progress=swap_when_writing)
    assert not Instruction.objects.exists() and not list(media_root.rglob("*.png"))


def test_an_endless_line_is_refused_without_reading_it_whole(tmp_path):
    from webapp.transfer.importing import MAX_LINE_BYTES, ImportFailed, read_jsonl

    path = tmp_path / "data.jsonl"
    with open(path, "wb") as handle:
        handle.write(b'{"image": "a.png", "question": "Q?"}\n')
        handle.write(b'{"question": "' + b"x" * (20 * 1024 * 1024) + b'"}\n')
    tracemalloc.start()
    try:
        with pytest.raises(ImportFailed, match=f"line 2: longer than {MAX_LINE_BYTES} bytes"):
            read_jsonl(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_LINE_BYTES


def test_line_numbers_and_byte_offsets_count_as_before(tmp_path):
    from webapp.transfer.importing import ImportFailed, read_jsonl

    path = tmp_path / "data.jsonl"
    path.write_bytes(b"a\r\nb\rc\n\n  \nd\n")
    assert read_jsonl(path) == [(1, "a"), (2, "b"), (3, "c"), (6, "d")]
    path.write_bytes(b'{"a": 1}\n{"b": "\xff"}\n')
    with pytest.raises(ImportFailed, match=r"not UTF-8 text \(byte 16\)"):
        read_jsonl(path)
