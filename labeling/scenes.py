"""Shapes world 2: scenes rich enough that feedback quality matters, with the truth of every fact.

World 1 (`labeling.shapes`) draws 1–3 objects and its answers are 1–4 one-object sentences, so scoring claim by
claim and scoring the whole answer rank nearly every pair alike. Here a 96×96 picture holds 4–8 objects; each
is a (colour, shape) that may appear more than once, and has a size (small, big) and a pattern (plain, striped);
objects stand left of or above one another, and a small object may sit inside a big plain one. A detailed
description states 10–30 facts (`scene_facts`): how many of each kind there are, the size and pattern of each
kind seen once, and one relation per such object.

Habits: some kinds of object usually come with a companion (`COMPANIONS`: a red circle with a yellow square…).
Scenes draw the companion beside its anchor more often than not, so a policy trained on descriptions learns to
name the companion whenever it sees the anchor, and hallucinates it when the companion is absent: AMBER's
"cognition" errors, counted apart from the others.

Everything here is plain Python and Pillow, seeded: the same (seed, split) always draws the same pictures.
"""

import random
from collections import Counter
from dataclasses import dataclass

from PIL import Image, ImageDraw

IMAGE_PX = 96
BACKGROUND = (128, 128, 128)
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 190),
}
SHAPES = ("circle", "square", "triangle", "diamond")
KINDS = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)
SIZES = {"small": (9, 12), "big": (16, 20)}  # an object's width and height in pixels, by its size
PATTERNS = ("plain", "striped")
MIN_OBJECTS, MAX_OBJECTS, MAX_COPIES = 4, 8, 3
GAP = 2  # pixels kept free between two objects' boxes, so no two touch
STRIPE_EVERY = 3  # a striped object leaves every third pixel row of its body unpainted
# An anchor kind and the companion it usually comes with: in scenes, and so in the descriptions models learn.
COMPANIONS = {
    "red circle": "yellow square",
    "blue triangle": "green diamond",
    "purple square": "red triangle",
    "green circle": "blue diamond",
    "yellow triangle": "purple circle",
}
COMPANION_RATE = 0.7  # how often a scene with an anchor also holds its companion
COPY_RATE = 0.2  # how often an object added to a scene is another copy of a kind already there
INSIDE_RATE = 0.5  # how often a scene has a small object drawn inside a big plain circle or square
CONTAINERS = ("circle", "square")


@dataclass(frozen=True)
class Thing:
    """One drawn object: its kind (colour, shape), size, pattern and box (left, top, width = height)."""

    colour: str
    shape: str
    size: str
    pattern: str
    left: int
    top: int
    px: int

    @property
    def kind(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), inclusive, as PIL draws it."""
        return self.left, self.top, self.left + self.px - 1, self.top + self.px - 1

    @property
    def centre(self) -> tuple[float, float]:
        return self.left + (self.px - 1) / 2, self.top + (self.px - 1) / 2

    def as_row(self) -> list:
        return [self.colour, self.shape, self.size, self.pattern, self.left, self.top, self.px]


def left_of(a: Thing, b: Thing) -> bool:
    """a's box ends GAP pixels before b's begins: left of it whatever their heights."""
    return a.box[2] + GAP <= b.box[0]


def above(a: Thing, b: Thing) -> bool:
    return a.box[3] + GAP <= b.box[1]


def inside(a: Thing, b: Thing) -> bool:
    """a is drawn within b's box (only a small object in a big plain circle or square is)."""
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    return a is not b and bx0 < ax0 and by0 < ay0 and ax1 < bx1 and ay1 < by1


RELATIONS = {"left_of": left_of, "above": above, "inside": inside}


@dataclass(frozen=True)
class Scene:
    """A picture's objects, left to right by centre: the order descriptions follow."""

    things: tuple[Thing, ...]

    @property
    def counts(self) -> Counter:
        """How many of each kind the picture holds."""
        return Counter(t.kind for t in self.things)

    def of_kind(self, kind: str) -> list[Thing]:
        return [t for t in self.things if t.kind == kind]

    def single(self, kind: str) -> Thing | None:
        """The one object of a kind seen exactly once; None for a kind absent or seen several times."""
        found = self.of_kind(kind)
        return found[0] if len(found) == 1 else None

    def as_rows(self) -> list[list]:
        """The scene as JSON-ready rows (one per object), as instruction files store it."""
        return [t.as_row() for t in self.things]

    @classmethod
    def from_rows(cls, rows) -> "Scene":
        return cls(tuple(Thing(*row) for row in rows))


def _apart(a: Thing, b: Thing) -> bool:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    return ax1 + GAP < bx0 or bx1 + GAP < ax0 or ay1 + GAP < by0 or by1 + GAP < ay0


def _kinds(rng: random.Random) -> list[str]:
    """4–8 kinds with repeats (at most MAX_COPIES of one), companions added beside their anchors."""
    n = rng.randint(MIN_OBJECTS, MAX_OBJECTS)
    kinds = [rng.choice(KINDS)]
    while len(kinds) < n:
        companion = next((COMPANIONS[k] for k in kinds if k in COMPANIONS and COMPANIONS[k] not in kinds), None)
        if companion and rng.random() < COMPANION_RATE:
            kinds.append(companion)
        elif rng.random() < COPY_RATE and any(kinds.count(k) < MAX_COPIES for k in kinds):
            kinds.append(rng.choice([k for k in kinds if kinds.count(k) < MAX_COPIES]))  # another copy
        else:
            kinds.append(rng.choice([k for k in KINDS if k not in kinds]))
    return kinds


def random_scene(rng: random.Random) -> Scene:
    """4–8 objects at random non-overlapping places, perhaps one small object inside a big plain one."""
    while True:
        kinds = _kinds(rng)
        placed: list[Thing] = []
        for kind in kinds:
            colour, shape = kind.split()
            size, pattern = rng.choice(list(SIZES)), rng.choice(PATTERNS)
            for _ in range(60):
                px = rng.randint(*SIZES[size])
                left, top = rng.randint(1, IMAGE_PX - px - 1), rng.randint(1, IMAGE_PX - px - 1)
                candidate = Thing(colour, shape, size, pattern, left, top, px)
                if all(_apart(candidate, other) for other in placed):
                    placed.append(candidate)
                    break
        if len(placed) == len(kinds):
            break
    if rng.random() < INSIDE_RATE:
        placed = _put_one_inside(placed, rng)
    return Scene(tuple(sorted(placed, key=lambda t: (t.centre[0], t.centre[1]))))


def _put_one_inside(placed: list[Thing], rng: random.Random) -> list[Thing]:
    """Make a big circle or square plain and move a small object of another colour to its middle."""
    hosts = [t for t in placed if t.size == "big" and t.shape in CONTAINERS]
    for host in rng.sample(hosts, len(hosts)):
        guests = [t for t in placed if t.size == "small" and t.colour != host.colour and t.px <= host.px - 8]
        if not guests:
            continue
        guest = rng.choice(guests)
        plain = Thing(host.colour, host.shape, host.size, "plain", host.left, host.top, host.px)
        offset = (host.px - guest.px) // 2
        moved = Thing(
            guest.colour, guest.shape, guest.size, guest.pattern, host.left + offset, host.top + offset, guest.px
        )
        return [plain if t is host else moved if t is guest else t for t in placed]
    return placed


def _polygon(thing: Thing) -> list[tuple[float, float]] | None:
    x0, y0, x1, y1 = thing.box
    if thing.shape == "triangle":
        return [((x0 + x1) / 2, y0), (x1, y1), (x0, y1)]
    if thing.shape == "diamond":
        return [((x0 + x1) / 2, y0), (x1, (y0 + y1) / 2), ((x0 + x1) / 2, y1), (x0, (y0 + y1) / 2)]
    return None


def draw(scene: Scene) -> Image.Image:
    """The scene as an RGB picture, without anti-aliasing; a contained object is drawn over its container."""
    image = Image.new("RGB", (IMAGE_PX, IMAGE_PX), BACKGROUND)
    contained = {id(a) for a in scene.things for b in scene.things if inside(a, b)}
    for thing in sorted(scene.things, key=lambda t: id(t) in contained):
        mask = Image.new("L", image.size, 0)
        pen = ImageDraw.Draw(mask)
        polygon = _polygon(thing)
        if polygon:
            pen.polygon(polygon, fill=255)
        elif thing.shape == "circle":
            pen.ellipse(thing.box, fill=255)
        else:
            pen.rectangle(thing.box, fill=255)
        if thing.pattern == "striped":
            x0, y0, x1, y1 = thing.box
            for y in range(y0 + STRIPE_EVERY - 1, y1, STRIPE_EVERY):
                pen.line([(x0, y), (x1, y)], fill=0)
        image.paste(COLOURS[thing.colour], mask=mask)
    return image


def scene_rng(seed: int, split: str) -> random.Random:
    """The stream of a (seed, split): train, validation and test pictures of one seed never share one."""
    return random.Random(f"scenes-{split}-{seed}")
