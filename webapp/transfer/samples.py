"""Bundled sample instructions: real photos that ship inside scikit-image, so the demo needs no download."""

import json
import tempfile
from pathlib import Path

from labeling.sample_images import sample_image
from webapp.transfer.importing import import_instructions

DESCRIBE = "Describe this image in detail."

# (skimage.data function, a question about the photo, split)
SAMPLES = [
    ("astronaut", "What is the person in the picture wearing?", "train"),
    ("coffee", "What drink is in the cup?", "train"),
    ("chelsea", "What animal is in the picture and what color is it?", "train"),
    ("rocket", "What is standing on the launch pad?", "train"),
    ("motorcycle_left", "What vehicle is shown and what color is it?", "train"),
    ("camera", "What is the man holding?", "train"),
    ("coins", "How many coins are in the picture?", "train"),
    ("hubble_deep_field", "What objects can be seen in the sky?", "train"),
    ("moon", "What celestial body is shown?", "heldout"),
    ("clock", "What time does the clock show?", "heldout"),
]


def load_samples(source: str = "demo"):
    """Import 20 instructions (a description prompt and a question per photo); idempotent."""
    with tempfile.TemporaryDirectory() as tmp:
        lines = []
        for name, question, split in SAMPLES:
            sample_image(name).save(Path(tmp) / f"{name}.png")
            for prompt in (DESCRIBE, question):
                record = {"image": f"{name}.png", "question": prompt, "source": source, "split": split}
                lines.append((len(lines) + 1, json.dumps(record)))
        return import_instructions(lines, Path(tmp), default_source=source)
