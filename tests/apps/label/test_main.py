"""MONAI Label's entry file (apps/label/main.py): it exposes the app class, and the launcher copies it into the
app folder MONAI Label starts from."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.apps.label.conftest import REPO

MAIN = REPO / "monai_ext" / "apps" / "label" / "main.py"


def test_main_imports_the_app_class_from_the_app_module() -> None:
    tree = ast.parse(MAIN.read_text())
    imports = [(node.module, [alias.name for alias in node.names]) for node in tree.body
               if isinstance(node, ast.ImportFrom)]
    assert ("monai_ext.apps.label.app", ["UltrasoundClassifierApp"]) in imports
    exported = [node for node in tree.body if isinstance(node, ast.Assign)
                and any(getattr(target, "id", "") == "__all__" for target in node.targets)]
    assert exported and ast.literal_eval(exported[0].value) == ["UltrasoundClassifierApp"]


def test_the_launcher_copies_main_into_the_app_folder() -> None:
    script = (REPO / "scripts" / "run_label_server.sh").read_text()
    assert 'cp "$REPO_ROOT/monai_ext/apps/label/main.py" "$APP_DIR/main.py"' in script
    assert Path(MAIN).is_file()


@pytest.mark.slow
def test_monai_label_finds_one_app_class_in_main(label_env) -> None:
    """MONAI Label loads the app from main.py by looking for the MONAILabelApp subclass defined or imported there."""
    found = label_env.run("""
import inspect, json
from monailabel.interfaces.app import MONAILabelApp
import monai_ext.apps.label.main as main
from monai_ext.apps.label.app import UltrasoundClassifierApp
apps = [name for name, value in vars(main).items()
        if inspect.isclass(value) and issubclass(value, MONAILabelApp) and value is not MONAILabelApp]
print(json.dumps({"apps": apps, "same": main.UltrasoundClassifierApp is UltrasoundClassifierApp}))
""")
    assert found == {"apps": ["UltrasoundClassifierApp"], "same": True}
