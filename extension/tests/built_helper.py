"""The PL/Python helper as the extension ships it: built by extension/build_helper.py, loaded as one
module (tests run the concatenated text, not the modules it is made of)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

EXTENSION = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXTENSION))

from build_helper import build  # noqa: E402


def built_helper(name: str) -> ModuleType:
    """A fresh module `name` executed from the built helper text."""
    module = ModuleType(name)
    module.__file__ = f"<{name}: built helper>"
    sys.modules[name] = module  # dataclasses look their module up there
    exec(compile(build(), module.__file__, "exec"), module.__dict__)
    return module
