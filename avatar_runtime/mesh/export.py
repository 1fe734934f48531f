"""`export_avatar`: an Avatar -> a .glb, .obj (+ .mtl + .png) or .ply file, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..avatar import Avatar
from ..errors import InvalidArgument, Unimplemented
from ..head.model import HeadModel
from .files import write_atomically
from .formats import obj_files, ply_bytes
from .gltf import Layers, export_glb
from .inputs import check_expression

FORMATS = ("glb", "obj", "ply")
MESH_TENSORS = ("identity", "texture")  # what a parametric-head avatar must carry
SOURCES = ("mesh", "volume")  # the fitted head, or the surface extracted from the learned field


def export_avatar(avatar: Avatar, head: HeadModel, format: str, out_path: Path | str,
                  expression: np.ndarray | None = None) -> list[Path]:
    """Write `avatar` as `format` to `out_path`; returns the paths written (main file first).

    expression [52] ARKit weights (Live Link order): glb stores them as the default
    morph weights (rest pose stays neutral), obj/ply bake them into the vertices.
    Either every file appears complete or none does (temp files + rename).
    """
    out = _check_target(format, Path(out_path))
    named = mesh_files(avatar, head, format, out.stem, expression)
    files = {out.with_name(name): data for name, data in named.items()}  # main file first
    write_atomically(files)
    return list(files)


def mesh_files(avatar: Avatar, head: HeadModel, format: str, stem: str,
               expression: np.ndarray | None = None, source: str = "mesh",
               field=None) -> dict[str, bytes]:
    """{file name: bytes} of the export, main file first (obj adds its .mtl and .png).

    source="volume" (portrait4d avatars, glb only) exports the iso-surface of `field`, the
    avatar's radiance field (a `TriplaneField`) already animated to `expression`.
    """
    if source == "volume":
        return {f"{stem}.glb": _volume_glb(avatar, format, field)}
    if source != "mesh":
        raise InvalidArgument(f"unknown export source {source!r}; allowed: {', '.join(SOURCES)}")
    if format not in FORMATS:
        raise InvalidArgument(f"unsupported export format {format!r}; allowed: {', '.join(FORMATS)}")
    identity, texture = _mesh_tensors(avatar, head)
    expression = check_expression(expression)
    if format == "glb":
        return {f"{stem}.glb": export_glb(head, identity, texture, None, expression, name=avatar.name,
                                          layers=avatar_layers(avatar, head))}
    if format == "obj":
        return obj_files(head, head.shape(identity, expression), texture, stem)
    return {f"{stem}.ply": ply_bytes(head, head.shape(identity, expression), texture)}


def avatar_layers(avatar: Avatar, head: HeadModel) -> Layers:
    """The hair, long hair and bust an avatar carries (none for avatars made before them)."""
    from ..head.bust import load_bust_model
    from ..head.hair import hair_shell
    from ..head.hair_curtain import stored_curtain

    t = avatar.tensors
    hair = hair_shell(head, t["hair_offset"]) if "hair_offset" in t else None
    return Layers(hair, load_bust_model(), t.get("bust_texture"), t.get("shoulder_widths"),
                  stored_curtain(t))


def _volume_glb(avatar: Avatar, format: str, field) -> bytes:
    """The extracted surface of a learned avatar's field as .glb bytes."""
    if field is None and avatar.reconstructor != "portrait4d":
        raise Unimplemented(f"volume export needs a portrait4d avatar or one created with refine "
                            f"'volume'; avatar {avatar.id!r} was made by {avatar.reconstructor!r} "
                            "without a refined volume")
    if format != "glb":
        raise InvalidArgument(f"volume export writes glb only, not {format!r}")
    if field is None:
        raise InvalidArgument("volume export needs the avatar's radiance field")
    from .gltf_static import field_glb  # torch + open3d: only for learned avatars

    return field_glb(field, name=avatar.name)


def _check_target(format: str, out: Path) -> Path:
    """The output path, after checking the format, its suffix and its directory."""
    if format not in FORMATS:
        raise InvalidArgument(f"unsupported export format {format!r}; allowed: {', '.join(FORMATS)}")
    if out.suffix.lower() != f".{format}":
        # OBJ's .mtl/.png are named after the .obj; a matching suffix keeps them distinct.
        raise InvalidArgument(f"output file for format {format!r} must end in .{format}, got {out.name!r}")
    if not out.parent.is_dir():
        raise InvalidArgument(f"output directory {str(out.parent)!r} does not exist")
    return out


def _mesh_tensors(avatar: Avatar, head: HeadModel) -> tuple[np.ndarray, np.ndarray]:
    """(identity [K], texture [T, T, 3]) of a parametric-head avatar."""
    missing = [t for t in MESH_TENSORS if t not in avatar.tensors]
    if missing:
        raise Unimplemented(f"mesh export needs a parametric-head avatar (tensors "
                            f"{', '.join(MESH_TENSORS)}); avatar {avatar.id!r} made by "
                            f"{avatar.reconstructor!r} lacks {', '.join(missing)}")
    from ..reconstruct.texture import current_texture  # open3d: only for mesh exports

    return avatar.tensors["identity"], current_texture(head, avatar.tensors["texture"], avatar.meta)
