"""Real photographs that ship inside the scikit-image wheel, written out as image files.

The demo, the tests and the benchmarks need real images and nothing may be downloaded here; these are
the ones `skimage.data` holds locally (astronaut, coffee, chelsea the cat, a rocket launch, ...).
"""

from pathlib import Path

from PIL import Image

SAMPLE_IMAGES = [
    "astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "motorcycle_right", "hubble_deep_field",
    "immunohistochemistry", "retina", "colorwheel", "logo", "camera", "coins", "moon", "clock", "text",
    "page", "brick", "grass", "gravel", "cell",
]  # fmt: skip


def sample_image(name: str) -> Image.Image:
    from skimage import data  # imported here: only the callers that want pictures pay for it

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        return Image.fromarray(left if name.endswith("left") else right)
    return Image.fromarray(getattr(data, name)())


def save_sample_images(folder, names=None) -> list[Path]:
    """Write the named images (all of SAMPLE_IMAGES by default) as PNG files; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names or SAMPLE_IMAGES:
        path = folder / f"{name}.png"
        if not path.exists():
            sample_image(name).save(path)
        paths.append(path)
    return paths
