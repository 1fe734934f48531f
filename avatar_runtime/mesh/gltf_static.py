"""glTF 2.0 binary (.glb) of a static vertex-coloured mesh (an extracted volume surface).

Layout: one node, one mesh, one primitive with POSITION (min/max), NORMAL and COLOR_0
(float RGB: a VEC3 of unsigned bytes would break glTF's 4-byte attribute alignment),
uint16/uint32 indices, and a white, non-metallic PBR material, so the vertex colours
(which glTF multiplies with baseColorFactor) are what shows. Same world as the skinned
export: metres, +Y up, face toward +Z.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib as gl

from .extract import extract_surface
from .files import write_atomically
from .geometry import vertex_normals
from .gltf import GENERATOR, ROUGHNESS, _Blob


def static_glb(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray,
               name: str = "avatar") -> bytes:
    """vertices [V, 3] float (m), faces [F, 3] int (counter-clockwise from outside),
    colours [V, 3] uint8 sRGB -> .glb bytes."""
    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces)
    if len(faces) == 0 or faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"faces must index the {len(vertices)} vertices and not be empty")
    gltf = gl.GLTF2(asset=gl.Asset(generator=GENERATOR), scene=0)
    blob = _Blob(gltf)
    index_type = np.uint16 if len(vertices) < 65535 else np.uint32  # 65535: restart index
    primitive = gl.Primitive(
        attributes=gl.Attributes(
            POSITION=blob.accessor(vertices, bounds=True),
            NORMAL=blob.accessor(vertex_normals(vertices, faces)),
            COLOR_0=blob.accessor(np.asarray(colours, np.float32) / 255.0)),
        indices=blob.accessor(faces.reshape(-1).astype(index_type), target=gl.ELEMENT_ARRAY_BUFFER),
        material=0)
    pbr = gl.PbrMetallicRoughness(baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0,
                                  roughnessFactor=ROUGHNESS)
    gltf.materials.append(gl.Material(name=f"{name}_surface", pbrMetallicRoughness=pbr))
    gltf.meshes.append(gl.Mesh(name=name, primitives=[primitive]))
    gltf.nodes.append(gl.Node(name=name, mesh=0))
    gltf.scenes.append(gl.Scene(name=name, nodes=[0]))
    return blob.finish()


def field_glb(field, name: str = "avatar", **extract_options) -> bytes:
    """A radiance field's extracted surface as .glb bytes (options: `extract_surface`'s)."""
    vertices, faces, colours = extract_surface(field, **extract_options)
    return static_glb(vertices, faces, colours, name)


def export_field_glb(field, path: Path | str, name: str = "avatar", **extract_options) -> bytes:
    """`field_glb`, also written atomically to `path` (no partial file on failure)."""
    data = field_glb(field, name, **extract_options)
    write_atomically({Path(path): data})
    return data
