"""A synthetic world of coloured shapes in which hallucination can be counted exactly.

Every 64×64 image holds one to three non-overlapping objects on a grey background, each a distinct
(colour, shape) pair, so each image comes with its ground truth ("red circle", "blue square"). Tiny models
trained on this world on a CPU (`training.shapes_models`) make the RLAIF-V loop measurable: the policy's
answers name objects, and an answer's hallucinations are the objects it names that the image lacks.

Captions give one sentence per object, left to right ("There is a red circle. There is a blue square."),
because the rule splitter (`labeling.divide.divide_by_rules`) then turns each sentence into exactly one claim,
"There is a red circle.", asked as "Is it true that there is a red circle?": the claims the labeler judges are
the object mentions that CHAIR counts.

Absent objects (for "No" questions and for the hallucinations injected into the policy's training captions)
are chosen to be confusable with a present one: same shape in another colour, or same colour in another shape.
"""

import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from labeling.conquer import labeler_prompt

IMAGE_PX = 64
BACKGROUND = (128, 128, 128)
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")
OBJECTS = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)
MIN_SIZE, MAX_SIZE = 14, 21  # an object's width and height in pixels
MAX_OBJECTS = 3
GAP = 2  # pixels kept free between two objects' boxes, so no two objects touch

# The policy answers every wording with the caption.
INSTRUCTIONS = (
    "Describe the image.",
    "What shapes do you see?",
    "List the objects in the picture.",
    "What is in the image?",
    "Describe the shapes in the picture.",
)

# How an absent object is drawn: same shape other colour, same colour other shape, anything absent.
CONFUSABLE_WEIGHTS = {"same_shape": 0.4, "same_colour": 0.4, "any": 0.2}


@dataclass(frozen=True)
class Shape:
    """One drawn object: its colour and shape, and its box (left, top, size in pixels)."""

    colour: str
    shape: str
    left: int
    top: int
    size: int

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), inclusive, as PIL draws it."""
        return self.left, self.top, self.left + self.size - 1, self.top + self.size - 1

    @property
    def centre(self) -> tuple[float, float]:
        return self.left + (self.size - 1) / 2, self.top + (self.size - 1) / 2


@dataclass(frozen=True)
class Scene:
    """An image's objects, sorted left to right (by box centre), which is the caption's order."""

    shapes: tuple[Shape, ...]

    @property
    def objects(self) -> tuple[str, ...]:
        return tuple(shape.name for shape in self.shapes)


def _apart(a: Shape, b: Shape) -> bool:
    """Boxes at least GAP pixels apart on one axis."""
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    return ax1 + GAP < bx0 or bx1 + GAP < ax0 or ay1 + GAP < by0 or by1 + GAP < ay0


def random_scene(rng: random.Random) -> Scene:
    """1–3 distinct (colour, shape) objects at random non-overlapping places; sizes 14–21 px."""
    n = rng.randint(1, MAX_OBJECTS)
    while True:  # three objects of at most 21 px always fit in 64×64; a few redraws at most
        placed: list[Shape] = []
        for name in rng.sample(OBJECTS, n):
            colour, shape = name.split()
            for _ in range(50):
                size = rng.randint(MIN_SIZE, MAX_SIZE)
                candidate = Shape(
                    colour, shape, rng.randint(1, IMAGE_PX - size - 1), rng.randint(1, IMAGE_PX - size - 1), size
                )
                if all(_apart(candidate, other) for other in placed):
                    placed.append(candidate)
                    break
        if len(placed) == n:
            return Scene(tuple(sorted(placed, key=lambda s: (s.centre[0], s.centre[1]))))


def draw(scene: Scene) -> Image.Image:
    """The scene as an RGB image; shapes are drawn without anti-aliasing, so every pixel is one colour."""
    image = Image.new("RGB", (IMAGE_PX, IMAGE_PX), BACKGROUND)
    pen = ImageDraw.Draw(image)
    for shape in scene.shapes:
        fill = COLOURS[shape.colour]
        x0, y0, x1, y1 = shape.box
        if shape.shape == "circle":
            pen.ellipse(shape.box, fill=fill)
        elif shape.shape == "square":
            pen.rectangle(shape.box, fill=fill)
        else:
            pen.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return image


# --- text -----------------------------------------------------------------------------------------------


def object_claim(name: str) -> str:
    """The sentence a caption uses for one object; the rule splitter keeps it as one claim."""
    return f"There is a {name}."


def object_question(name: str) -> str:
    """The yes/no question the rule splitter makes of `object_claim(name)`."""
    return f"Is it true that there is a {name}?"


def caption(objects: Sequence[str]) -> str:
    """One sentence per object, in the given (left-to-right) order."""
    return " ".join(object_claim(name) for name in objects)


def absent_object(present: Sequence[str], rng: random.Random) -> str:
    """An object the image lacks, confusable with a present one (see CONFUSABLE_WEIGHTS)."""
    absent = [name for name in OBJECTS if name not in present]
    kind = rng.choices(list(CONFUSABLE_WEIGHTS), weights=list(CONFUSABLE_WEIGHTS.values()))[0]
    if kind != "any" and present:
        colour, shape = rng.choice(list(present)).split()
        if kind == "same_shape":
            near = [name for name in absent if name.split()[1] == shape]
        else:
            near = [name for name in absent if name.split()[0] == colour]
        if near:
            return rng.choice(near)
    return rng.choice(absent)


def hallucinated_objects(objects: Sequence[str], rng: random.Random, rate: float, place: str = "anywhere") -> list[str]:
    """`objects`, with one absent object added with probability `rate`, at a random place or at the end.

    This is what the base policy is trained to say, so that it hallucinates at a measurable rate.
    """
    if place not in ("anywhere", "end"):
        raise ValueError(f"place must be 'anywhere' or 'end', not {place!r}")
    objects = list(objects)
    if rng.random() < rate:
        where = len(objects) if place == "end" else rng.randint(0, len(objects))
        objects.insert(where, absent_object(objects, rng))
    return objects


_WORD = re.compile(r"[a-z]+")
_PLURALS = {shape + "s": shape for shape in SHAPES}


def mentioned_objects(text: str) -> list[str]:
    """The objects a text names, in order, a repeated one each time: a colour word followed by a shape word.

    Tolerant of what a small policy writes: case, punctuation and spacing are ignored, plurals count, and
    a colour without a shape ("There is a red.") or a shape without a colour names nothing.
    """
    words = _WORD.findall(text.lower())
    found = []
    for colour, shape in zip(words, words[1:], strict=False):
        shape = _PLURALS.get(shape, shape)
        if colour in COLOURS and shape in SHAPES:
            found.append(f"{colour} {shape}")
    return found


def question_is_true(question: str, objects: Iterable[str]) -> bool | None:
    """Whether a claim or question about one object is true of an image with `objects`.

    None when the text names no object or several (the truth of such a claim is not one object's).
    """
    named = set(mentioned_objects(question))
    if len(named) != 1:
        return None
    return named.pop() in set(objects)


def description_is_true(text: str, objects: Iterable[str]) -> bool | None:
    """Whether a description (a whole answer, or a question about one) names only objects of the image.

    None when it names no object. For a claim about one object this is `question_is_true`.
    """
    named = set(mentioned_objects(text))
    if not named:
        return None
    return named <= set(objects)


def truth_metrics(answers: Iterable[tuple[str, Sequence[str]]]) -> dict:
    """CHAIR against the true objects, for (answer text, true objects) pairs.

    chair_s: answers with at least one hallucinated object ÷ answers mentioning at least one object;
    chair_i: hallucinated mentions ÷ all mentions (an object named twice counts twice, as in training.chair);
    recall: true objects an answer names ÷ true objects, summed over answers;
    mean_words: whitespace words per answer.

    The count-aware pair (`count_chair_s`, `count_chair_i`) also counts a mention beyond an object's true count
    as hallucinated: `objects` lists an object once per copy in the picture, so naming the one red circle twice
    is one hallucinated mention. Set-based CHAIR cannot see a policy that pads its answers with repeats.
    """
    counts = dict.fromkeys(
        ["answers", "answers_with_objects", "hallucinated_answers", "mentions", "hallucinated_mentions"], 0
    )
    counts |= {"recalled": 0, "true_objects": 0, "words": 0, "count_hallucinated_answers": 0}
    counts |= {"count_hallucinated_mentions": 0}
    for text, objects in answers:
        truth = set(objects)
        mentions = mentioned_objects(text)
        hallucinated = [name for name in mentions if name not in truth]
        beyond = Counter(mentions) - Counter(objects)  # mentions past each object's true count
        counts["count_hallucinated_answers"] += bool(beyond)
        counts["count_hallucinated_mentions"] += sum(beyond.values())
        counts["answers"] += 1
        counts["answers_with_objects"] += bool(mentions)
        counts["hallucinated_answers"] += bool(hallucinated)
        counts["mentions"] += len(mentions)
        counts["hallucinated_mentions"] += len(hallucinated)
        counts["recalled"] += len(set(mentions) & truth)
        counts["true_objects"] += len(truth)
        counts["words"] += len(text.split())

    def ratio(a: str, b: str) -> float | None:
        return counts[a] / counts[b] if counts[b] else None

    return {
        "chair_s": ratio("hallucinated_answers", "answers_with_objects"),
        "chair_i": ratio("hallucinated_mentions", "mentions"),
        "count_chair_s": ratio("count_hallucinated_answers", "answers_with_objects"),
        "count_chair_i": ratio("count_hallucinated_mentions", "mentions"),
        "recall": ratio("recalled", "true_objects"),
        "mean_words": ratio("words", "answers"),
        **counts,
    }


def vocabulary() -> list[str]:
    """Every word the world's prompts and answers use, for the tiny models' WordLevel tokenizer.

    Yes/No come first after the chat words so their ids are small and fixed; the order never changes.
    """
    texts = [
        "USER: ASSISTANT: Yes No yes no",
        *INSTRUCTIONS,
        caption(OBJECTS),
        *(labeler_prompt(object_question(name)) for name in OBJECTS),
        " ".join(shape + "s" for shape in SHAPES),
    ]
    words = []
    for text in texts:
        words += re.findall(r"\w+|[^\w\s]", text)
    return list(dict.fromkeys(words))


# --- instruction sets -----------------------------------------------------------------------------------


SPLITS = ("train", "validation", "heldout")  # held-out is the test split: benches and the reported figures only


def scene_rng(seed: int, split: str) -> random.Random:
    """The random stream of a (seed, split): the train, validation and held-out (test) images of one seed never
    share a stream."""
    return random.Random(f"shapes-{split}-{seed}")


def write_instruction_set(
    folder,
    n_images: int,
    split: str = "train",
    seed: int = 0,
    questions_per_image: int = 1,
    jsonl_name: str = "instructions.jsonl",
    append: bool = False,
) -> Path:
    """Write `n_images` PNG scenes and one JSONL line per instruction; returns the JSONL path.

    Lines read `{"image": "images/<split>-<seed>-00000.png", "question": ..., "split": ..., "source":
    "shapes", "objects": ["red circle", ...]}` with objects left to right. Each image gets
    `questions_per_image` distinct wordings. The same arguments always write the same files; with
    `append`, lines are added to an existing JSONL (e.g. a held-out set next to a training set).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if not 1 <= questions_per_image <= len(INSTRUCTIONS):
        raise ValueError(f"questions_per_image must be 1..{len(INSTRUCTIONS)}")
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = scene_rng(seed, split)
    lines = []
    for i in range(n_images):
        scene = random_scene(rng)
        relative = f"images/{split}-{seed}-{i:05d}.png"
        draw(scene).save(folder / relative)
        for question in rng.sample(INSTRUCTIONS, questions_per_image):
            row = {"image": relative, "question": question, "split": split, "source": "shapes"}
            lines.append(json.dumps(row | {"objects": list(scene.objects)}))
    path = folder / jsonl_name
    with path.open("a" if append else "w", encoding="utf-8") as out:
        out.writelines(line + "\n" for line in lines)
    return path


def read_instruction_set(path) -> list[dict]:
    """The JSONL lines of `write_instruction_set`, with `image` made an absolute path."""
    path = Path(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row | {"image": str(path.parent / row["image"])} for row in rows]
