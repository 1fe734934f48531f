"""No Python class in the project derives from an OpenCV type.

OpenCV lets Python subclass its types (cv2.VideoCapture among them), but their
deallocators free an instance without taking it off the garbage collector's list, which a
Python subclass puts it on: the next collection walks freed memory and the process
segfaults at a random later point, in whatever thread collects (reproduced with
opencv-contrib-python 4.11: 2000 bare subclass instances and a collection every 100). A
test that subclassed cv2.VideoCapture made full runs crash about every other time; wrap
such objects instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("avatar_runtime", "engine_bridge", "blender_addon", "benchmarks", "scripts", "tests")


def cv2_bases(tree: ast.AST) -> list[tuple[str, int]]:
    """(class name, line) of every class with a base spelled cv2.<something>."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "cv2":
                    found.append((node.name, node.lineno))
    return found


def test_no_class_derives_from_a_cv2_type():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name, line in cv2_bases(ast.parse(path.read_text(), str(path))):
                offenders.append(f"{path.relative_to(ROOT)}:{line} class {name}")
    assert not offenders, "subclasses of OpenCV types (wrap them instead): " + ", ".join(offenders)


def test_the_check_sees_such_a_subclass():
    source = "import cv2\n\nclass Uncounted(cv2.VideoCapture):\n    pass\n"
    assert cv2_bases(ast.parse(source)) == [("Uncounted", 3)]
