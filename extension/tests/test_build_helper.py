"""The helper's build (extension/build_helper.py) refuses what would make the one-file helper differ
from its modules: an import it cannot honour, a module left out, a name defined twice."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from build_helper import MODULES, PACKAGE_INIT, ROOT, BuildError, build


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the files the build reads."""
    for relative in [*MODULES, PACKAGE_INIT]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    return tmp_path


def _edit(tree: Path, relative: str, old: str, new: str) -> None:
    path = tree / relative
    text = path.read_text()
    assert old in text, (relative, old)
    path.write_text(text.replace(old, new, 1))


def test_the_copy_builds_as_the_checkout_does(tree: Path) -> None:
    assert build(tree) == build()


HELPER = "extension/helper"
REFUSED = {
    # a module imports only from those listed before it: the layers go one way
    "a later module": (f"{HELPER}/settings.py", "from .sql_errors import BridgeError\n",
                       "from .sql_errors import BridgeError\nfrom .training import UPLOAD_ID\n",
                       "not listed before it"),
    # from the module that defines the name, not one that imported it
    "another module": (f"{HELPER}/sync.py", "from .plpy_api import Plpy, prepared\n",
                       "from .sql_errors import Plpy\nfrom .plpy_api import prepared\n",
                       f"must be defined by {HELPER}/sql_errors.py"),
    "an alias": (f"{HELPER}/model_names.py", "from .sql_errors import BridgeError\n",
                 "from .sql_errors import BridgeError as Failure\n", "imported under its own name"),
    "a module": (f"{HELPER}/model_names.py", "from .sql_errors import BridgeError\n", "from . import sql_errors\n",
                 "not modules"),
    "import x": (f"{HELPER}/tokens.py", "import re\n", "import re\nimport requests\n", "not in the standard library"),
    "from x import": (f"{HELPER}/tokens.py", "import re\n", "import re\nfrom yaml import safe_load\n",
                      "not in the standard library"),
    "a name twice": (f"{HELPER}/tokens.py", "def forget_token()", "def check_model() -> None:\n    pass\n\n\n"
                     "def forget_token()", f"also defined in {HELPER}/model_names.py"),
    "code in __init__": (PACKAGE_INIT, '"""\n', '"""\n\nSTART = 1\n', "only a docstring"),
    "the dollar-quote tag": (f"{HELPER}/training.py", "UPLOAD_ROWS_PER_FETCH = 1_000",
                             'UPLOAD_ROWS_PER_FETCH = "$sqlml_helper$"', "dollar-quote tag"),
}  # fmt: skip


@pytest.mark.parametrize(("relative", "old", "new", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_the_build_refuses(tree: Path, relative: str, old: str, new: str, message: str) -> None:
    _edit(tree, relative, old, new)
    with pytest.raises(BuildError, match=re.escape(message)):
        build(tree)


def test_every_helper_module_is_built(tree: Path) -> None:
    (tree / "extension/helper/spare.py").write_text('"""A module nobody listed."""\n')
    with pytest.raises(BuildError, match=re.escape(f"{HELPER}/spare.py: not in build_helper.HELPER")):
        build(tree)
