"""labeling.formats: TRL rows as DPOTrainer reads them, the RLAIF-V parquet both ways, clear errors on bad files."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Image, load_from_disk
from PIL import Image as PILImage

from labeling.formats import (
    FormatError,
    RlaifvRecord,
    load_trl_jsonl,
    read_rlaifv,
    trl_row,
    write_rlaifv,
    write_trl_dataset,
    write_trl_jsonl,
    write_trl_parquet,
)


def png_bytes(color=(200, 30, 30), size=(16, 12)):
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


RED, BLUE = png_bytes(), png_bytes((0, 0, 255))
PAIRS = [
    RlaifvRecord(
        RED, "What color is it?", "It is red.", "It is blue.", "images/red.png", "RLAIF-V", "VQAv2", "{}", "7"
    ),
    RlaifvRecord(
        BLUE, "Describe it.", "A blue square.", "A red circle.", "images/blue.png", "RLAIF-V", "COCO", "", "8"
    ),
]


def pixels(image):
    return image.convert("RGB").tobytes()


def test_it_builds_conversational_rows_with_one_image():
    assert trl_row("img", "What color is it?", "Red.", "Blue.") == {
        "images": ["img"],
        "prompt": [{"role": "user", "content": "What color is it?"}],
        "chosen": [{"role": "assistant", "content": "Red."}],
        "rejected": [{"role": "assistant", "content": "Blue."}],
    }


def test_the_trl_dataset_loads_from_disk_with_decoded_images(tmp_path):
    assert write_trl_dataset(PAIRS, tmp_path / "pairs") == 2
    dataset = load_from_disk(str(tmp_path / "pairs"))
    assert dataset.column_names == ["images", "prompt", "chosen", "rejected"]
    row = dataset[1]
    assert pixels(row["images"][0]) == pixels(PILImage.open(io.BytesIO(BLUE)))
    assert row["prompt"] == [{"role": "user", "content": "Describe it."}]
    assert row["chosen"] == [{"role": "assistant", "content": "A blue square."}]
    assert row["rejected"] == [{"role": "assistant", "content": "A red circle."}]


def test_the_trl_parquet_holds_the_same_rows(tmp_path):
    write_trl_parquet(PAIRS, tmp_path / "pairs.parquet")
    dataset = Dataset.from_parquet(str(tmp_path / "pairs.parquet"), cache_dir=str(tmp_path / "cache"))
    assert dataset.column_names == ["images", "prompt", "chosen", "rejected"]
    assert dataset[0]["chosen"][0]["content"] == "It is red."
    assert pixels(dataset[0]["images"][0]) == pixels(PILImage.open(io.BytesIO(RED)))


def test_the_jsonl_names_images_relative_to_its_folder(tmp_path):
    assert write_trl_jsonl(PAIRS, tmp_path / "pairs.jsonl") == 2
    first = json.loads((tmp_path / "pairs.jsonl").read_text().splitlines()[0])
    assert first == trl_row("images/red.png", "What color is it?", "It is red.", "It is blue.")
    assert (tmp_path / "images" / "red.png").read_bytes() == RED
    dataset = load_trl_jsonl(tmp_path / "pairs.jsonl")
    assert pixels(dataset[1]["images"][0]) == pixels(PILImage.open(io.BytesIO(BLUE)))


def test_the_jsonl_refuses_image_paths_outside_its_folder(tmp_path):
    escaping = RlaifvRecord(RED, "q", "a", "b", image_path="../evil.png")
    with pytest.raises(ValueError, match="relative path inside"):
        write_trl_jsonl([escaping], tmp_path / "pairs.jsonl")
    assert not (tmp_path.parent / "evil.png").exists()


def test_trl_writers_need_a_pair(tmp_path):
    with pytest.raises(ValueError, match="no chosen/rejected"):
        write_trl_parquet([RlaifvRecord(RED, "q")], tmp_path / "pairs.parquet")


def test_the_rlaifv_layout_round_trips(tmp_path):
    bare = RlaifvRecord(RED, "What shape is it?", idx="9", origin_dataset="OKVQA")
    assert write_rlaifv([*PAIRS, bare], tmp_path / "data.parquet") == 3
    assert [record for _, record in read_rlaifv(tmp_path / "data.parquet")] == [*PAIRS, bare]
    assert pq.read_schema(tmp_path / "data.parquet").names == [
        "ds_name", "image", "question", "chosen", "rejected", "origin_dataset", "origin_split", "idx", "image_path",
    ]  # fmt: skip


def test_the_rlaifv_file_loads_in_datasets_with_an_image_column(tmp_path):
    write_rlaifv(PAIRS, tmp_path / "data.parquet")
    dataset = Dataset.from_parquet(str(tmp_path / "data.parquet"), cache_dir=str(tmp_path / "cache"))
    assert dataset.features["image"] == Image()
    assert dataset[0]["image"].size == (16, 12)


def write_table(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


def image(data, path=None):
    return {"bytes": data, "path": path}


def test_it_reads_files_with_only_the_required_columns_and_integer_idx(tmp_path):
    path = write_table(tmp_path / "x.parquet", image=[image(RED)], question=[" Why? "], idx=[3])
    [(row, record)] = read_rlaifv(path)
    assert (row, record) == (0, RlaifvRecord(RED, "Why?", idx="3"))


def read_all(path):
    return list(read_rlaifv(path))


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"image": [image(RED)]}, "missing column 'question'"),
        ({"question": ["q"]}, "missing column 'image'"),
        ({"image": [image(RED)], "question": ["q"], "chosen": ["a"]}, "'chosen' is present but 'rejected' is missing"),
        ({"image": [image(RED)], "question": [7]}, "column 'question' has type int64, expected string"),
        ({"image": ["red.png"], "question": ["q"]}, "column 'image' has type string, expected struct<bytes"),
        ({"image": [image(RED)], "question": ["q"], "idx": [1.5]}, "column 'idx' has type double"),
        ({"image": [image(RED), image(None, "red.png")], "question": ["q", "q"]}, "row 1: column 'image' has no image"),
        (
            {"image": [image(RED), image(b"not pixels")], "question": ["q", "q"]},
            "row 1: column 'image': not a readable",
        ),
        ({"image": [image(RED), image(RED)], "question": ["q", "  "]}, "row 1: column 'question' is empty"),
        ({"image": [image(RED)], "question": ["q\x00"]}, "row 0: column 'question' contains a NUL character"),
        (
            {"image": [image(RED)], "question": ["q"], "chosen": ["a"], "rejected": pa.array([None], pa.string())},
            "row 0: column 'rejected' is empty but its partner is set",
        ),
    ],
)
def test_bad_files_name_the_column_and_row(tmp_path, columns, message):
    path = write_table(tmp_path / "bad.parquet", **columns)
    with pytest.raises(FormatError, match=message.replace("(", r"\(")):
        read_all(path)


def test_a_file_that_is_not_parquet_is_refused(tmp_path):
    (tmp_path / "x.parquet").write_text("a,b\n1,2\n")
    with pytest.raises(FormatError, match="not a readable parquet file"):
        read_all(tmp_path / "x.parquet")


def test_a_truncated_image_is_refused(tmp_path):
    PILImage.effect_noise((64, 64), 50).convert("RGB").save(buffer := io.BytesIO(), format="PNG")
    cut = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    path = write_table(tmp_path / "bad.parquet", image=[image(cut)], question=["q"])
    with pytest.raises(FormatError, match="row 0: column 'image': not a readable image"):
        read_all(path)
    assert [record.image for _, record in read_rlaifv(path, check_images=False)] == [cut]  # left to the caller
