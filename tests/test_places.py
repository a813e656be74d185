"""Model names and config data paths reach only MODELS_DIR and DATA_DIR (webapp/places.py).

Found by an attack: staff set the policy to `../../../tmp/x` and a model outside MODELS_DIR loaded; `coco_instances:
/etc/passwd` was read by the evaluate stage.
"""

import shutil

import pytest
from django.urls import reverse

from tests.factories import IterationFactory
from tests.review_data import reviewing_iteration
from webapp.iterations.forms import DraftForm
from webapp.jobs.engines import ModelLoadError, backend_for, reward_models
from webapp.models import Iteration
from webapp.places import PlaceError, check_model_name, data_file, model_folder

pytestmark = pytest.mark.django_db

OUTSIDE = ["../../../tmp/x", "checkpoints/../../x", "/etc", "/tmp/models-elsewhere/x", ".."]
FORM = {"policy": "tiny-llava", "labeler": "tiny-llava", "splitter": "rule", "engine": "transformers",
        "split": "train", "n": 4, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 32, "seed": 0,
        "pairs_per_instruction": 2, "beta": 0.1, "learning_rate": 5e-7, "epochs": 1}  # fmt: skip


@pytest.fixture
def iteration():
    """Train-split instructions for the form to choose."""
    return reviewing_iteration([[0.9, 0.8], [0.9, 0.45]])


@pytest.fixture
def models(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    settings.MODELS_DIR.mkdir()
    return settings.MODELS_DIR


@pytest.mark.parametrize("name", OUTSIDE)
def test_a_name_outside_models_dir_is_refused(models, name):
    with pytest.raises(PlaceError, match="outside MODELS_DIR"):
        check_model_name(name)
    with pytest.raises(PlaceError, match="outside MODELS_DIR"):
        model_folder(name)


def test_names_under_models_dir_the_control_and_a_servers_names_are_taken(models):
    (models / "checkpoints" / "iteration-1").mkdir(parents=True)
    assert check_model_name("tiny-llava") == "tiny-llava"  # a worker's MODELS_DIR may hold it
    assert model_folder("checkpoints/iteration-1") == str(models / "checkpoints" / "iteration-1")
    assert model_folder(str(models / "checkpoints" / "iteration-1")) == str(models / "checkpoints" / "iteration-1")
    assert model_folder("coin-flip") == check_model_name("coin-flip") == "coin-flip"
    assert check_model_name("Qwen/Qwen2-VL-7B-Instruct", "openai") == "Qwen/Qwen2-VL-7B-Instruct"
    with pytest.raises(PlaceError, match="not a URL"):
        check_model_name("https://example.com/v1", "openai")


def test_a_hub_id_with_no_folder_is_refused_by_the_worker_saying_what_to_do(models):
    with pytest.raises(PlaceError, match="no model folder 'llava-hf/llava-1.5-7b-hf' under MODELS_DIR.*copy"):
        model_folder("llava-hf/llava-1.5-7b-hf")
    (models / "llava-hf" / "llava-1.5-7b-hf").mkdir(parents=True)
    assert model_folder("llava-hf/llava-1.5-7b-hf") == str(models / "llava-hf" / "llava-1.5-7b-hf")


@pytest.mark.parametrize("name", ["/etc/passwd", "../../etc/passwd", "https://example.com/instances.json"])
def test_a_data_file_outside_data_dir_is_refused(settings, tmp_path, name):
    settings.DATA_DIR = tmp_path / "data"
    with pytest.raises(PlaceError, match="coco_instances"):
        data_file(name, "coco_instances")
    assert data_file("coco/instances.json", "coco_instances") == tmp_path / "data" / "coco" / "instances.json"


@pytest.mark.parametrize("field", ["policy", "labeler", "splitter"])
def test_the_iteration_form_refuses_a_model_outside_models_dir(client, bob, iteration, models, field):
    before = Iteration.objects.count()
    client.force_login(bob)
    response = client.post(reverse("iteration-new"), FORM | {field: "../../../tmp/x"})
    assert response.status_code == 200 and "outside MODELS_DIR" in response.content.decode()
    assert Iteration.objects.count() == before


@pytest.mark.parametrize(
    ("settings_json", "message"),
    [
        ('{"second_labeler": "../../../tmp/x"}', "outside MODELS_DIR"),
        ('{"reference": "/tmp/x"}', "outside MODELS_DIR"),
        ('{"generator": "../x"}', "outside MODELS_DIR"),
        ('{"coco_instances": "/etc/passwd"}', "outside DATA_DIR"),
        ('{"coco_images": "../../"}', "outside DATA_DIR"),
    ],
)
def test_every_model_and_data_key_of_the_settings_is_confined(client, bob, iteration, models, settings_json, message):
    before = Iteration.objects.count()
    client.force_login(bob)
    response = client.post(reverse("iteration-new"), FORM | {"other_settings": settings_json})
    assert response.status_code == 200 and message in response.content.decode()
    assert Iteration.objects.count() == before
    draft = IterationFactory(status="draft")
    form = DraftForm(
        {"policy": "p", "labeler": "l", "splitter": "rule", "engine": "transformers", "config": settings_json},
        instance=draft,
    )
    assert not form.is_valid() and message in str(form.errors["config"])


def test_an_openai_iterations_names_are_the_servers(client, bob, iteration, models):
    client.force_login(bob)
    named = FORM | {"engine": "openai", "policy": "Qwen/Qwen2-VL-7B-Instruct", "labeler": "Qwen/Qwen2-VL-7B-Instruct"}
    response = client.post(reverse("iteration-new"), named)
    assert response.status_code == 302
    assert Iteration.objects.latest("pk").policy == "Qwen/Qwen2-VL-7B-Instruct"


@pytest.mark.slow
def test_a_worker_never_loads_a_model_outside_models_dir(settings, tiny_models_dir, tmp_path, engines):
    """A name that reached an iteration row anyway (written to the database by hand): a real, loadable model
    outside MODELS_DIR is refused before it is opened, by every loader a worker uses."""
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tiny_models_dir / "tiny-llava", elsewhere)
    settings.MODELS_DIR = tmp_path / "models"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny-llava").symlink_to(tiny_models_dir / "tiny-llava")  # the operator's link: fine
    for name in (str(elsewhere), "../elsewhere"):
        with pytest.raises(ModelLoadError, match="outside MODELS_DIR"):
            backend_for("transformers", name)
        with pytest.raises(ModelLoadError, match="outside MODELS_DIR"):
            backend_for("transformers", "tiny-llava", name)
        with pytest.raises(ModelLoadError, match="outside MODELS_DIR"):
            reward_models(name, "tiny-llava")
    assert backend_for("transformers", "tiny-llava") is not None
