"""`import open_clip` where no torchvision can be had.

open_clip (`open_clip_torch` on PyPI) imports torchvision at module level, but only for its
training augmentations (`open_clip.transform`) and a frozen-BatchNorm helper
(`open_clip.utils`); building a model from its config, loading weights and running
`encode_image` / `encode_text` never touch it. PyPI's Linux torchvision wheels are CUDA builds
that do not load against the CPU torch this project pins (importing one fails with "operator
torchvision::nms does not exist"), and an installed-but-broken torchvision also breaks
transformers' image processors. So `open_clip_torch` is installed without its dependencies,
and where torchvision is absent a stand-in module satisfies those imports for the duration of
`import open_clip` only: anything that tries to use it raises ImportError, and it is gone from
`sys.modules` before any other code can see it. A real torchvision, where installed, is used.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

from encoders.errors import BundleError

# the torchvision modules open_clip 3.3 imports from (transform.py, utils.py)
_STAND_IN = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
             "torchvision.ops", "torchvision.ops.misc")


class _Missing(type):
    """A class for any torchvision name: attribute access gives it back (so default arguments
    and subclasses at import time work); making an instance raises."""

    def __getattr__(cls, name: str) -> Any:
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise ImportError(f"torchvision is not installed (open_clip asked for {cls.__name__})")


def _stand_in(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__path__ = []  # a package, so its submodules import

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Missing(attr, (), {})

    module.__getattr__ = __getattr__
    return module


def import_open_clip() -> types.ModuleType:
    """The open_clip module, or a BundleError saying what to install."""
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    if importlib.util.find_spec("open_clip") is None:
        raise BundleError("reading OpenCLIP folders needs open_clip_torch: "
                          "pip install --no-deps open_clip_torch==3.3.0 ftfy")
    if importlib.util.find_spec("torchvision") is not None:
        try:
            return importlib.import_module("open_clip")
        except RuntimeError as exc:  # a torchvision built for another torch
            raise BundleError(f"open_clip cannot load: its torchvision does not fit torch "
                              f"({exc}); uninstall torchvision or install the build matching "
                              "this torch") from exc
    # transformers caches "is torchvision installed?" on first asking; ask now, while the
    # answer is still the true one, so the stand-in cannot leak into it
    from transformers.utils import import_utils

    import_utils.is_torchvision_available()
    sys.modules.update({name: _stand_in(name) for name in _STAND_IN})
    try:
        return importlib.import_module("open_clip")
    finally:
        for name in _STAND_IN:
            sys.modules.pop(name, None)
