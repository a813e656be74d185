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


def save_sample_images(folder, names=None, suffix=".png") -> list[Path]:
    """Write the named images (all of SAMPLE_IMAGES by default) as files; returns their paths.

    PNG keeps the pixels exact; ".jpg" (quality 95, RGB) is how photo datasets such as COCO store them.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names or SAMPLE_IMAGES:
        path = folder / f"{name}{suffix}"
        if not path.exists():
            image = sample_image(name)
            if suffix == ".png":
                image.save(path)
            else:
                image.convert("RGB").save(path, quality=95)
        paths.append(path)
    return paths
