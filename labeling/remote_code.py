"""Whether a model folder's own Python code may run: only where staff marked the folder as trusted.

Some checkpoints (OmniLMM, MiniCPM-V: the reference's labelers) ship their architecture as Python files
named by `auto_map` in their configs, which transformers (and vLLM) run only with `trust_remote_code=True`.
That code runs with the worker's rights, so the project passes it only for a folder holding a file named
`TRUST_REMOTE_CODE`, which staff place beside the weights; nothing a form, an import or a config sends can
create it. Every load path (the engines, DPO, self-reward) asks `trust_remote_code(path)` first. The mark
is read from the folder itself, so the DPO child process and the GPU workers see the same decision.
"""

import json
from pathlib import Path

MARKER = "TRUST_REMOTE_CODE"
# The files whose `auto_map` names code the folder ships: model, processor, image processor, tokenizer.
CODE_FILES = ("config.json", "processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


class UntrustedRemoteCode(ValueError):
    """A folder needs its own code to load and is not marked as trusted; the message says how to trust it."""


def ships_code(path) -> bool:
    """Whether the folder's configs name Python code of its own (an `auto_map`)."""
    for name in CODE_FILES:
        file = Path(path, name)
        if file.is_file() and json.loads(file.read_text()).get("auto_map"):
            return True
    return False


def is_trusted(path) -> bool:
    return Path(path, MARKER).is_file()


def trust_remote_code(path) -> bool:
    """The `trust_remote_code` to load `path` with: True for a marked folder, False for one that ships no code.

    A folder that ships code and is not marked is refused here, with a message saying what trusting means,
    rather than by transformers' own error, which suggests passing the flag.
    """
    if is_trusted(path):
        return True
    if Path(path).is_dir() and ships_code(path):
        raise UntrustedRemoteCode(
            f"model folder {Path(path).name!r} ships its own Python code (auto_map in its config), which runs only "
            f"in a folder marked as trusted: staff who have read that code place an empty file named {MARKER} "
            f"in the folder ({Path(path, MARKER)}); its code then runs with the worker's rights"
        )
    return False
