"""export_pairs and import_rlaifv: effective verdicts decide what is exported; imports are all or nothing."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, load_from_disk
from django.core.management import CommandError, call_command
from PIL import Image

from labeling.formats import RlaifvRecord, load_trl_jsonl, read_rlaifv, write_rlaifv
from tests.factories import (
    ClaimFactory,
    InstructionFactory,
    IterationFactory,
    PreferencePairFactory,
    ResponseFactory,
    ReviewFactory,
    VerdictFactory,
)
from webapp.models import Decision, Instruction, Iteration, PreferencePair
from webapp.transfer.images import store_image, validate_image

pytestmark = pytest.mark.django_db


def png_bytes(color, size=(40, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def stored_instruction(color, question):
    image = validate_image(png_bytes(color))
    store_image(image)
    return InstructionFactory(image=image.name, image_sha256=image.sha256, width=40, height=30, question=question)


def answer(iteration, instruction, text, *verdicts):
    """A response whose claims the labeler accepted (True) or rejected (False), in order."""
    response = ResponseFactory(iteration=iteration, instruction=instruction, text=text)
    for index, accepted in enumerate(verdicts):
        claim = ClaimFactory(response=response, index=index)
        VerdictFactory(claim=claim, p_yes=0.8 if accepted else 0.1, p_no=0.1 if accepted else 0.8)
    return response


@pytest.fixture
def iteration(media_root):
    return two_pair_iteration()


def two_pair_iteration():
    """Iteration 1: two instructions with one pair each (images stored), and an excluded third pair."""
    iteration = IterationFactory(number=1)
    red = stored_instruction((200, 30, 30), "What color is it?")
    blue = stored_instruction((0, 0, 255), "Describe the picture.")
    right, wrong = answer(iteration, red, "It is red.", True), answer(iteration, red, "It is green.", False)
    full, half = answer(iteration, blue, "A blue square.", True, True), answer(iteration, blue, "A cat.", True, False)
    worst = answer(iteration, blue, "Two cats.", False, False)
    PreferencePairFactory(iteration=iteration, instruction=red, chosen=right, rejected=wrong)
    PreferencePairFactory(iteration=iteration, instruction=blue, chosen=full, rejected=half)
    PreferencePairFactory(
        iteration=iteration, instruction=blue, chosen=full, rejected=worst, score_gap=2, excluded=True
    )
    return iteration


def export(fmt, out, number=1):
    stdout = io.StringIO()
    call_command("export_pairs", "--iteration", str(number), "--format", fmt, "--out", str(out), stdout=stdout)
    return stdout.getvalue()


def texts(rows):
    return [(row["prompt"][0]["content"], row["chosen"][0]["content"], row["rejected"][0]["content"]) for row in rows]


EXPECTED = [
    ("What color is it?", "It is red.", "It is green."),
    ("Describe the picture.", "A blue square.", "A cat."),
]


def test_it_exports_a_trl_dataset_that_loads_from_disk(iteration, tmp_path):
    assert "2 pairs written" in export("trl", tmp_path / "pairs")
    dataset = load_from_disk(str(tmp_path / "pairs"))
    assert dataset.column_names == ["images", "prompt", "chosen", "rejected"]
    assert texts(dataset) == EXPECTED  # the excluded pair is left out
    assert dataset[0]["images"][0].convert("RGB").getpixel((0, 0)) == (200, 30, 30)
    assert not list(tmp_path.glob(".*partial"))


def test_it_exports_trl_parquet_when_the_path_says_so(iteration, tmp_path):
    export("trl", tmp_path / "pairs.parquet")
    dataset = Dataset.from_parquet(str(tmp_path / "pairs.parquet"), cache_dir=str(tmp_path / "cache"))
    assert texts(dataset) == EXPECTED
    assert dataset[1]["images"][0].convert("RGB").getpixel((0, 0)) == (0, 0, 255)


def test_it_exports_jsonl_with_images_beside_it(iteration, tmp_path):
    export("jsonl", tmp_path / "out" / "pairs.jsonl")
    first = json.loads((tmp_path / "out" / "pairs.jsonl").read_text().splitlines()[0])
    red = Instruction.objects.get(question="What color is it?")
    assert first["images"] == [red.image.name]
    assert (tmp_path / "out" / red.image.name).read_bytes() == red.image.read()
    assert texts(load_trl_jsonl(tmp_path / "out" / "pairs.jsonl")) == EXPECTED


def test_it_exports_the_rlaifv_layout(iteration, tmp_path):
    export("rlaifv", tmp_path / "pairs.parquet")
    records = [record for _, record in read_rlaifv(tmp_path / "pairs.parquet")]
    assert [(r.question, r.chosen, r.rejected) for r in records] == EXPECTED
    red = Instruction.objects.get(question="What color is it?")
    first = records[0]
    assert (first.image, first.image_path, first.origin_dataset) == (red.image.read(), red.image.name, "test")
    assert json.loads(first.origin_split) == {"model": "tiny-llava", "feedback_model": "tiny-llava"}


def test_a_reviewer_override_flips_the_exported_pair(iteration, tmp_path, alice):
    # "It is red." loses its only claim, "It is green." gains its: the pair now points the other way.
    ReviewFactory(claim=iteration.responses.get(text="It is red.").claims.get(), reviewer=alice)
    ReviewFactory(claim=iteration.responses.get(text="It is green.").claims.get(), decision=Decision.CORRECT)
    assert "1 flipped by review" in export("trl", tmp_path / "pairs")
    assert texts(load_from_disk(str(tmp_path / "pairs")))[0] == ("What color is it?", "It is green.", "It is red.")


def test_a_flip_onto_a_pair_stored_the_other_way_round_exports_it_once(iteration, tmp_path, alice):
    red = Instruction.objects.get(question="What color is it?")
    right, wrong = iteration.responses.get(text="It is red."), iteration.responses.get(text="It is green.")
    PreferencePairFactory(iteration=iteration, instruction=red, chosen=wrong, rejected=right)  # the wrong way
    assert "2 pairs written" in export("trl", tmp_path / "pairs") and "1 flipped by review" in export(
        "trl", tmp_path / "again"
    )
    assert texts(load_from_disk(str(tmp_path / "pairs"))) == EXPECTED


def test_a_pair_that_became_a_tie_is_dropped(iteration, tmp_path, alice):
    ReviewFactory(claim=iteration.responses.get(text="A cat.").claims.get(index=1), decision=Decision.CORRECT)
    assert "1 pairs written" in export("trl", tmp_path / "pairs")
    assert texts(load_from_disk(str(tmp_path / "pairs"))) == EXPECTED[:1]


def test_an_unsure_review_changes_nothing(iteration, tmp_path):
    ReviewFactory(claim=iteration.responses.get(text="It is red.").claims.get(), decision=Decision.UNSURE)
    export("jsonl", tmp_path / "pairs.jsonl")
    assert texts(load_trl_jsonl(tmp_path / "pairs.jsonl")) == EXPECTED


def test_export_refuses_what_it_cannot_do(iteration, tmp_path):
    with pytest.raises(CommandError, match="there is no iteration 9"):
        export("trl", tmp_path / "x", number=9)
    (tmp_path / "taken").mkdir()
    with pytest.raises(CommandError, match="already exists"):
        export("trl", tmp_path / "taken")
    IterationFactory(number=2)
    with pytest.raises(CommandError, match="Iteration 2 has no pairs to export"):
        export("trl", tmp_path / "empty", number=2)
    assert not (tmp_path / "x").exists() and not (tmp_path / "empty").exists()


def import_rlaifv(path, *args):
    stdout = io.StringIO()
    call_command("import_rlaifv", str(path), *args, stdout=stdout)
    return stdout.getvalue()


def test_an_exported_file_imports_as_a_new_iteration(iteration, tmp_path):
    export("rlaifv", tmp_path / "pairs.parquet")
    output = import_rlaifv(tmp_path / "pairs.parquet")
    assert "0 instructions imported, 2 already there; 2 pairs as Iteration 2" in output
    imported = Iteration.objects.get(number=2)
    assert (imported.policy, imported.labeler, imported.status) == ("imported:pairs.parquet", "imported", "reviewing")
    assert imported.config["imported_from"] == "pairs.parquet"
    assert set(imported.instructions.all()) == set(Instruction.objects.all())
    pairs = imported.pairs.order_by("pk")
    assert [(p.instruction.question, p.chosen.text, p.rejected.text) for p in pairs] == EXPECTED
    assert {p.score_gap for p in pairs} == {1}
    assert [(r.instruction.question, r.seed) for r in imported.responses.order_by("pk")] == [
        ("What color is it?", 0),
        ("What color is it?", 1),
        ("Describe the picture.", 0),
        ("Describe the picture.", 1),
    ]
    # Imported pairs have no claims: exporting them again keeps the dataset's order.
    export("trl", tmp_path / "again", number=2)
    assert texts(load_from_disk(str(tmp_path / "again"))) == EXPECTED


def test_importing_under_another_source_creates_instructions_but_no_new_images(iteration, tmp_path, media_root):
    export("rlaifv", tmp_path / "pairs.parquet")
    files = sorted(media_root.rglob("*.png"))
    assert "2 instructions imported" in import_rlaifv(tmp_path / "pairs.parquet", "--source", "shared")
    shared = Instruction.objects.filter(source="shared")
    assert sorted(i.question for i in shared) == ["Describe the picture.", "What color is it?"]
    assert sorted(media_root.rglob("*.png")) == files


def test_the_same_pairs_are_not_imported_twice(iteration, tmp_path):
    export("rlaifv", tmp_path / "pairs.parquet")
    import_rlaifv(tmp_path / "pairs.parquet")
    with pytest.raises(CommandError, match="already imported as Iteration 2; nothing was imported"):
        import_rlaifv(tmp_path / "pairs.parquet", "--source", "other")
    assert (Iteration.objects.count(), Instruction.objects.count()) == (2, 2)


def instruction_rows(tmp_path, *records):
    path = tmp_path / "data.parquet"
    write_rlaifv([RlaifvRecord(png_bytes(color), question, *pair) for color, question, *pair in records], path)
    return path


def test_rows_without_pairs_import_instructions_only_once(media_root, tmp_path):
    path = instruction_rows(tmp_path, ((1, 2, 3), "What is it?"), ((4, 5, 6), "Where is it?"))
    assert "2 instructions imported, 0 already there; no pairs" in import_rlaifv(path)
    assert "0 instructions imported, 2 already there; no pairs" in import_rlaifv(path)
    assert list(Instruction.objects.values_list("source", flat=True)) == ["rlaifv", "rlaifv"]
    assert not Iteration.objects.exists()


def test_answers_shared_by_two_pairs_are_one_response(media_root, tmp_path):
    color = (9, 9, 9)
    path = instruction_rows(tmp_path, (color, "Why?", "Because.", "No idea."), (color, "Why?", "Because.", "Dunno."))
    import_rlaifv(path)
    iteration = Iteration.objects.get()
    assert sorted(iteration.responses.values_list("text", "seed")) == [("Because.", 0), ("Dunno.", 2), ("No idea.", 1)]
    assert PreferencePair.objects.count() == 2


def stored_files(media_root):
    return [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({"image": {"bytes": b"not pixels"}}, "row 1: column 'image': not a readable image"),
        ({"chosen": "Same.", "rejected": "Same."}, "row 1: columns 'chosen' and 'rejected' hold the same answer"),
        ({"question": ""}, "row 1: column 'question' is empty"),
        ({"question": "Why" * 1500}, "row 1: column 'question' is 4500 characters long, over the limit of 4000"),
        ({"rejected": "No. " * 20_000}, "row 1: column 'rejected' is 80000 characters long, over the limit of 50000"),
    ],
)
def test_a_bad_row_writes_nothing(media_root, tmp_path, bad_row, message):
    good = {"image": {"bytes": png_bytes((1, 2, 3))}, "question": "Why?", "chosen": "A.", "rejected": "B."}
    rows = [good, {**good, "image": {"bytes": png_bytes((7, 7, 7))}, **bad_row}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bad.parquet")
    with pytest.raises(CommandError, match=f"{message}.*; nothing was imported") as error:
        import_rlaifv(tmp_path / "bad.parquet")
    assert " object at 0x" not in str(error.value)  # never a Python repr (Pillow's names its buffer)
    assert not Instruction.objects.exists()
    assert not Iteration.objects.exists()
    assert stored_files(media_root) == []


def test_a_missing_file_is_a_clear_error(db, tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        import_rlaifv(tmp_path / "nope.parquet")


@pytest.mark.slow
def test_trl_dpo_trains_on_the_exported_dataset_unchanged(iteration, tmp_path, tiny_models_dir):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer

    export("trl", tmp_path / "pairs")
    model_path = str(tiny_models_dir / "tiny-llava")
    model = AutoModelForImageTextToText.from_pretrained(model_path)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = DPOConfig(
        output_dir=str(tmp_path / "out"),
        bf16=False,
        dataloader_pin_memory=False,
        max_length=None,
        per_device_train_batch_size=2,
        max_steps=1,
        report_to=[],
        logging_steps=1,
    )
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=load_from_disk(str(tmp_path / "pairs")),
        processing_class=AutoProcessor.from_pretrained(model_path),
    )
    trainer.train()
    assert any("loss" in entry for entry in trainer.state.log_history)
    assert any(not torch.equal(before[name], p) for name, p in model.named_parameters())


def test_an_imported_datasets_metadata_survives_export(media_root, tmp_path):
    rows = [
        RlaifvRecord(png_bytes((1, 2, 3)), "What is it?", "A cup.", "A dog.", "coco/COCO_train2014_000000000009.jpg",
                     "RLAIF-V-Dataset", "VQAv2", '{"model": "OmniLMM-12B", "type": "detailed"}', "1042"),
        RlaifvRecord(png_bytes((1, 2, 3)), "What is it?", "A cup.", "A cat.", "coco/COCO_train2014_000000000009.jpg",
                     "RLAIF-V-Dataset", "VQAv2", '{"model": "OmniLMM-12B", "type": "detailed"}', "1043"),
        RlaifvRecord(png_bytes((4, 5, 6)), "Where is it?", "Indoors.", "On the moon.", "",
                     "other-set", "", "", "7"),
    ]  # fmt: skip
    write_rlaifv(rows, tmp_path / "in.parquet")
    import_rlaifv(tmp_path / "in.parquet", "--source", "renamed")  # the source no longer says VQAv2

    export("rlaifv", tmp_path / "out.parquet")

    exported = [record for _, record in read_rlaifv(tmp_path / "out.parquet")]
    assert exported == rows
    assert pq.read_table(tmp_path / "out.parquet").column("image").to_pylist()[0]["path"] == rows[0].image_path
