"""The plugins keep their own copy of the 52 ARKit names (they import nothing from the
runtime); this guards the copies against drifting from the runtime's order."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from avatar_runtime.motion.arkit import ARKIT_NAMES

ROOT = Path(__file__).resolve().parents[1]


def test_blender_addon_names_match():
    tree = ast.parse((ROOT / "blender_addon/avatar_runtime_blender/motion.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "ARKIT_NAMES":
            assert ast.literal_eval(node.value) == ARKIT_NAMES
            return
    raise AssertionError("ARKIT_NAMES not found in the add-on")


def test_unreal_core_names_match():
    source = (ROOT / "unreal_plugin/AvatarBridge/Source/AvatarBridgeCore/Private/Arkit.cpp").read_text()
    body = source[source.index("ArkitNames()"):]
    body = body[body.index("{", body.index("names")):body.index("};")]
    assert tuple(re.findall(r'"(\w+)"', body)) == ARKIT_NAMES
