"""Where the site reads models and data from, and nowhere else.

Staff type model names and data paths (the new iteration form, a draft's config in the admin, `run_iteration`);
a worker opens them. So a model name is a folder under MODELS_DIR (`Qwen2-VL-7B-Instruct`,
`checkpoints/iteration-3`; an absolute path is taken only when it lies under MODELS_DIR), and a data file named in
a config (COCO's ground truth) lies under DATA_DIR. Neither may reach a file elsewhere (`../../etc/x`,
`/etc/passwd`) or the network: a URL is refused, and so is a hub id with no folder of its name under MODELS_DIR,
since nothing downloads at run time (the images set HF_HUB_OFFLINE=1). The one remote place is the openai
engine's server, OPENAI_BASE_URL, which the operator sets: its model names are the server's, never files.

The check is lexical (`..` and absolute paths are resolved by normpath, links are not followed), so the operator
may link a folder kept elsewhere into MODELS_DIR; staff cannot make links there.
"""

import os
from pathlib import Path

from django.conf import settings

from labeling.backends.coin_flip import COIN_FLIP  # the control labeler: no model at all

SERVED = "openai"  # the engine whose model names are its server's (OPENAI_BASE_URL)


class PlaceError(ValueError):
    """A name that points outside the places the site reads from; the message says which and why."""


def _inside(root: str | os.PathLike, name: str, what: str, setting: str) -> Path:
    """`name` (relative to `root`, or absolute) as a path lexically inside `root`, else PlaceError."""
    if "://" in name:
        raise PlaceError(f"{what} {name!r}: give a path under {setting}, not a URL")
    if "\x00" in name or not name.strip():
        raise PlaceError(f"{what} {name!r} is not a path")
    base = Path(os.path.normpath(os.path.abspath(root)))
    path = Path(os.path.normpath(os.path.join(base, name)))  # an absolute name replaces base
    if base not in path.parents:
        raise PlaceError(f"{what} {name!r} lies outside {setting} ({base})")
    return path


def check_model_name(name: str, engine: str | None = None) -> str:
    """A model name that stays in its place: a path under MODELS_DIR (whether it is there is `check_installed`'s
    and `model_folder`'s to say), the control `coin-flip`, or, for the openai engine, the server's name for one."""
    name = name.strip()
    if name == COIN_FLIP:
        return name
    if engine == SERVED:
        if "://" in name:
            raise PlaceError(f"model {name!r}: give the name the server at OPENAI_BASE_URL knows, not a URL")
        return name
    _inside(settings.MODELS_DIR, name, "model", "MODELS_DIR")
    return name


def installed_models() -> list[str]:
    """The model folders under MODELS_DIR, checkpoints included: each holds a config.json."""
    root = Path(settings.MODELS_DIR)
    if not root.is_dir():
        return []
    folders = [*root.glob("*/config.json"), *root.glob("*/*/config.json")]
    return sorted(str(path.parent.relative_to(root)) for path in folders)


def check_installed(name: str, engine: str | None = None) -> str:
    """`check_model_name`, and the folder is there: what the forms take (a worker checks again, `model_folder`)."""
    name = check_model_name(name, engine)
    if name == COIN_FLIP or engine == SERVED:
        return name
    if not (_inside(settings.MODELS_DIR, name, "model", "MODELS_DIR") / "config.json").is_file():
        known = installed_models()
        offer = f"installed: {', '.join(known[:8])}{', …' if len(known) > 8 else ''}" if known else "none is"
        raise PlaceError(f"no model {name!r} is installed under MODELS_DIR ({offer})")
    return name


def model_folder(name: str) -> str:
    """The folder a worker loads `name` from: under MODELS_DIR and present, else PlaceError saying what to do."""
    if name == COIN_FLIP:
        return name
    path = _inside(settings.MODELS_DIR, name, "model", "MODELS_DIR")
    if not path.is_dir():
        raise PlaceError(
            f"no model folder {name!r} under MODELS_DIR ({settings.MODELS_DIR}): copy the checkpoint there "
            "(nothing is downloaded at run time)"
        )
    return str(path)


def data_file(name: str, key: str) -> Path:
    """A data file or folder a config names (`key`, e.g. coco_instances): under DATA_DIR, else PlaceError."""
    if not isinstance(name, str):
        raise PlaceError(f"{key} must be a path under DATA_DIR")
    return _inside(settings.DATA_DIR, name, key, "DATA_DIR")


def data_files(value, key: str) -> list[Path]:
    """The data files a config key names: one path or a list of them (COCO train and val 2014), each under DATA_DIR."""
    names = value if isinstance(value, list) else [value]
    if not names:
        raise PlaceError(f"{key} names no file")
    return [data_file(name, key) for name in names]
