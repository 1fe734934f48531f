"""glTF 2.0 binary (.glb) export: one skinned mesh, 52 ARKit morph targets, baked texture.

Layout of the file (what engines and DCC tools rely on):
- nodes: the 7-joint skeleton (`rig.KEPT_BONES`: root > neck > head > jaw > tongue, head >
  eye.L / eye.R; translations relative to the parent, no rotations) plus one mesh node at
  the scene root carrying the skin (the validator warns about skinned meshes elsewhere).
- mesh: three primitives, each with its own material: skin, eyes (the eyeballs, skinned to
  eye.L / eye.R) and mouth (teeth on head / jaw, tongue on tongue); vertices split at UV
  seams; POSITION (the avatar's neutral shape), NORMAL, TEXCOORD_0, JOINTS_0 (uint16),
  WEIGHTS_0 (float); 52 morph targets in ARKit (Live Link) order holding POSITION (+
  NORMAL) deltas, named in `mesh.extras.targetNames` with the ARKit names (the eyeLook*
  targets turn the eyeballs too, linearised, for engines that drive curves only);
  `mesh.weights` = the baked-in expression (zeros by default).
- materials: PBR metallic-roughness, not metallic, base colour = the avatar texture (one
  PNG); the eyes glossy, the mouth moist, the skin soft.
- layers (`Layers`), each a mesh of its own on the same skin and a node at the scene root:
  `<name>_hair` (the hair shell, on the head joint, the head texture, its own material;
  with long hair a second primitive, the curtain, on the head joint, its own PNG and a
  double-sided material `<name>_hair_long`) and `<name>_body` (neck, shoulders and chest;
  root/neck weights, the head's own along the neck cut; its own PNG and material). They
  carry no morph targets: expressions move the bust's neck at most ~1.5 mm and the hair
  not at all.

The runtime's world already is glTF's (metres, +Y up, face toward +Z): no axis conversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
import pygltflib as gl

from ..faces.image import encode_png
from ..head.bust import BustModel
from ..head.hair import HairShell
from ..head.hair_curtain import HairCurtain, grid_faces
from ..head.model import EYE_PARTS, MOUTH_INTERIOR, SKIN, TEETH, HeadModel
from ..motion.arkit import ARKIT_NAMES, NUM_ARKIT
from .files import write_atomically
from .geometry import SeamSplit, split_seams, vertex_normals
from .inputs import check_expression, check_texture
from .rig import ExportRig, build_rig, top_influences

GENERATOR = "avatar-runtime"
HAIR_ROUGHNESS = 0.5
ROUGHNESS = 0.6  # skin reads as a soft dielectric; engines' defaults (1.0) look chalky
# (name, part labels, roughness): the cornea is wet glass, the mouth moist.
PRIMITIVES = (("skin", (SKIN,), ROUGHNESS), ("eyes", EYE_PARTS, 0.1),
              ("mouth", (TEETH, MOUTH_INTERIOR), 0.35))
_COMPONENT = {np.dtype(np.float32): gl.FLOAT, np.dtype(np.uint16): gl.UNSIGNED_SHORT,
              np.dtype(np.uint32): gl.UNSIGNED_INT}
_TYPE = {1: gl.SCALAR, 2: gl.VEC2, 3: gl.VEC3, 4: gl.VEC4, 16: gl.MAT4}


@dataclass(frozen=True)
class Layers:
    """What an avatar has beyond the head: each exports as a mesh of its own on the same
    skin (hair on the head joint; the bust on root/neck, welded to the head's weights
    along the neck cut), with its own material."""

    hair: HairShell | None = None
    bust: BustModel | None = None
    bust_texture: np.ndarray | None = None
    shoulders: np.ndarray | None = None  # the bust's width profile (BustModel.shape)
    curtain: HairCurtain | None = None   # long hair, exported with the hair


def export_glb(head: HeadModel, identity: np.ndarray, texture: np.ndarray,
               path: Path | str | None = None, expression: np.ndarray | None = None,
               name: str = "avatar", morph_normals: bool = True, layers: Layers = Layers()) -> bytes:
    """The avatar as .glb bytes; also written atomically to `path` when one is given.

    identity [K] float; texture [T, T, 3|4] uint8, row 0 at the top; expression [52]
    ARKit weights (Live Link order) stored as the mesh's default morph weights, so the
    file opens showing that expression while the rest pose stays neutral.
    morph_normals=False drops the NORMAL deltas (about 40% smaller files).
    """
    expression = check_expression(expression)
    texture = check_texture(texture)
    rest = head.shape(identity, None)  # [V, 3]; expressions live in the morph targets
    normals = vertex_normals(rest, head.faces)  # on the unsplit head: seams shade smoothly
    normal_deltas = (_normal_deltas(head, rest, normals) if morph_normals else None)
    gltf = gl.GLTF2(asset=gl.Asset(generator=GENERATOR), scene=0)
    blob = _Blob(gltf)
    rig = build_rig(head, rest)
    skin = _add_skeleton(gltf, blob, rig)
    image = _add_texture(gltf, blob, texture, name)
    primitives = []
    for part, labels, roughness in PRIMITIVES:
        faces = np.isin(head.part_labels[head.faces[:, 0]], labels)
        split = split_seams(head.faces[faces], head.face_uvs[faces])
        primitives.append(gl.Primitive(
            attributes=_add_vertices(blob, rest, normals, split, rig),
            indices=blob.accessor(_indices(split), target=gl.ELEMENT_ARRAY_BUFFER),
            material=_add_material(gltf, image, f"{name}_{part}", roughness),
            targets=_add_morph_targets(blob, head, normal_deltas, split),
        ))
    gltf.meshes.append(gl.Mesh(name=name, primitives=primitives, weights=expression.tolist(),
                               extras={"targetNames": list(ARKIT_NAMES)}))
    gltf.nodes.append(gl.Node(name=name, mesh=0, skin=skin))
    roots = [0, len(gltf.nodes) - 1]  # root joint, mesh
    for mesh_name, parts in groupby(_layer_meshes(head, identity, layers, rig), lambda p: p.mesh):
        gltf.meshes.append(gl.Mesh(name=f"{name}_{mesh_name}", primitives=[gl.Primitive(
            attributes=_add_layer_vertices(blob, part),
            indices=blob.accessor(_indices(part.split), target=gl.ELEMENT_ARRAY_BUFFER),
            material=_add_material(gltf, image if part.texture is None
                                   else _add_texture(gltf, blob, part.texture, f"{name}_{part.name}"),
                                   f"{name}_{part.name}", part.roughness, part.double_sided))
            for part in parts]))
        gltf.nodes.append(gl.Node(name=f"{name}_{mesh_name}", mesh=len(gltf.meshes) - 1, skin=skin))
        roots.append(len(gltf.nodes) - 1)
    gltf.scenes.append(gl.Scene(name=name, nodes=roots))
    data = blob.finish()
    if path is not None:
        write_atomically({Path(path): data})
    return data


class _Blob:
    """The GLB's binary chunk: appends bufferViews and accessors to `gltf`, 4-byte aligned."""

    def __init__(self, gltf: gl.GLTF2):
        self.gltf = gltf
        self.data = bytearray()

    def view(self, payload: bytes, target: int | None = None) -> int:
        """Append raw bytes as a new bufferView; returns its index."""
        self.data += b"\0" * (-len(self.data) % 4)  # accessors need component alignment
        self.gltf.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(self.data),
                                                   byteLength=len(payload), target=target))
        self.data += payload
        return len(self.gltf.bufferViews) - 1

    def accessor(self, array: np.ndarray, target: int | None = gl.ARRAY_BUFFER,
                 bounds: bool = False) -> int:
        """array [N] or [N, C] (float32 / uint16 / uint32) -> accessor index.

        bounds=True records per-component min/max (required on POSITION accessors, morph
        targets included); float32 values survive the JSON round trip exactly.
        """
        flat = array.reshape(len(array), -1)
        accessor = gl.Accessor(bufferView=self.view(np.ascontiguousarray(array).tobytes(), target),
                               componentType=_COMPONENT[array.dtype], count=len(array),
                               type=_TYPE[flat.shape[1]] if array.ndim > 1 else gl.SCALAR)
        if bounds:
            accessor.min = flat.min(0).tolist()
            accessor.max = flat.max(0).tolist()
        self.gltf.accessors.append(accessor)
        return len(self.gltf.accessors) - 1

    def finish(self) -> bytes:
        """Attach the chunk as buffer 0 and serialise the whole file."""
        self.data += b"\0" * (-len(self.data) % 4)
        self.gltf.buffers = [gl.Buffer(byteLength=len(self.data))]
        self.gltf.set_binary_blob(bytes(self.data))
        return b"".join(self.gltf.save_to_bytes())


def _indices(split: SeamSplit) -> np.ndarray:
    """[3F] triangle indices, uint16 when they fit (65535 is reserved for restarts)."""
    dtype = np.uint16 if split.num_vertices < 65535 else np.uint32
    return split.faces.reshape(-1).astype(dtype)


def _add_vertices(blob: _Blob, rest: np.ndarray, normals: np.ndarray, split: SeamSplit,
                  rig: ExportRig) -> gl.Attributes:
    """Per split-vertex attributes from per-head-vertex rest [V, 3] and normals [V, 3]."""
    m = split.vertex_map
    uv = split.uvs.copy()
    uv[:, 1] = 1.0 - uv[:, 1]  # OBJ v-up (origin bottom-left) -> glTF origin top-left
    return gl.Attributes(
        POSITION=blob.accessor(rest[m].astype(np.float32), bounds=True),
        NORMAL=blob.accessor(normals[m]),
        TEXCOORD_0=blob.accessor(uv.astype(np.float32)),
        JOINTS_0=blob.accessor(rig.joints[m]),
        WEIGHTS_0=blob.accessor(rig.weights[m]),
    )


@dataclass
class _LayerMesh:
    """One primitive of a layer; consecutive ones with the same `mesh` share a glTF mesh."""

    name: str                    # the material's (and texture's) suffix
    rest: np.ndarray             # [N, 3]
    normals: np.ndarray          # [N, 3]
    split: SeamSplit
    joints: np.ndarray           # [N, 4] uint16
    weights: np.ndarray          # [N, 4] float32
    texture: np.ndarray | None   # None: shares the head's texture
    roughness: float
    mesh: str = ""               # the glTF mesh's suffix ("" -> `name`)
    double_sided: bool = False

    def __post_init__(self):
        self.mesh = self.mesh or self.name


def _layer_meshes(head: HeadModel, identity: np.ndarray, layers: Layers, rig: ExportRig) -> list[_LayerMesh]:
    """The hair (shell, then curtain) and bust of `layers` at rest, skinned onto `rig`'s joints."""
    rest = head.shape(identity)
    out = []
    if layers.hair is not None:
        hair = layers.hair
        shell = hair.vertices(rest)
        out.append(_LayerMesh("hair", shell, vertex_normals(shell, hair.faces),
                              split_seams(hair.faces, hair.face_uvs), *_on_head(rig, hair.num_vertices),
                              None, HAIR_ROUGHNESS))
        if layers.curtain is not None:
            faces, face_uvs = grid_faces()
            sheet = layers.curtain.vertices()
            out.append(_LayerMesh("hair_long", sheet, vertex_normals(sheet, faces),
                                  split_seams(faces, face_uvs), *_on_head(rig, len(sheet)),
                                  layers.curtain.texture, HAIR_ROUGHNESS, mesh="hair", double_sided=True))
    if layers.bust is not None and layers.bust_texture is not None:
        bust = layers.bust
        joints, weights = top_influences(bust.joint_weights.astype(np.float64))
        # Along the neck cut the bust takes the head's own skinning: no crack when the
        # head joint turns.
        joints[bust.seam_body], weights[bust.seam_body] = rig.joints[bust.seam_head], rig.weights[bust.seam_head]
        body = bust.shape(rest, identity, None, layers.shoulders)
        out.append(_LayerMesh("body", body, vertex_normals(body, bust.faces),
                              split_seams(bust.faces, bust.face_uvs), joints, weights,
                              layers.bust_texture, ROUGHNESS))
    return out


def _on_head(rig: ExportRig, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(joints [count, 4] uint16, weights [count, 4] float32): all on the head joint."""
    joints = np.zeros((count, 4), np.uint16)
    joints[:, 0] = rig.names.index("head")
    weights = np.zeros((count, 4), np.float32)
    weights[:, 0] = 1.0
    return joints, weights


def _add_layer_vertices(blob: _Blob, layer: _LayerMesh) -> gl.Attributes:
    m = layer.split.vertex_map
    uv = layer.split.uvs.copy()
    uv[:, 1] = 1.0 - uv[:, 1]
    return gl.Attributes(
        POSITION=blob.accessor(layer.rest[m].astype(np.float32), bounds=True),
        NORMAL=blob.accessor(layer.normals[m]),
        TEXCOORD_0=blob.accessor(uv.astype(np.float32)),
        JOINTS_0=blob.accessor(layer.joints[m]),
        WEIGHTS_0=blob.accessor(layer.weights[m]),
    )


def _normal_deltas(head: HeadModel, rest: np.ndarray, rest_normals: np.ndarray) -> np.ndarray:
    """[52, V, 3] each expression's change of the vertex normals (they depend on the
    identity's rest shape, unlike the position deltas)."""
    return vertex_normals(rest + head.expression_basis, head.faces) - rest_normals


def _add_morph_targets(blob: _Blob, head: HeadModel, normal_deltas: np.ndarray | None,
                       split: SeamSplit) -> list[gl.Attributes]:
    """52 targets in ARKit order: POSITION deltas [N, 3] per unit weight, plus NORMAL
    deltas when normal_deltas [52, V, 3] is given.

    The head model is linear, so a target's position delta is its expression basis
    regardless of identity.
    """
    m = split.vertex_map
    deltas = head.expression_basis[:, m].astype(np.float32)  # [52, N, 3]
    targets = []
    for k in range(NUM_ARKIT):
        target = gl.Attributes(POSITION=blob.accessor(deltas[k], bounds=True))
        if normal_deltas is not None:
            target.NORMAL = blob.accessor(np.ascontiguousarray(normal_deltas[k, m]))
        targets.append(target)
    return targets


def _add_skeleton(gltf: gl.GLTF2, blob: _Blob, rig: ExportRig) -> int:
    """Joint nodes (indices 0..J-1, root first) and the skin; returns the skin index."""
    translations = rig.local_translations()
    for j, joint in enumerate(rig.names):
        children = [c for c in range(len(rig.names)) if rig.parents[c] == j]
        gltf.nodes.append(gl.Node(name=joint, translation=translations[j].tolist(),
                                  children=children))
    # glTF matrices are column-major: a row-major matrix's transpose has the same bytes.
    ibm = np.ascontiguousarray(rig.inverse_bind_matrices().transpose(0, 2, 1)).reshape(-1, 16)
    gltf.skins.append(gl.Skin(name="skeleton", joints=list(range(len(rig.names))), skeleton=0,
                              inverseBindMatrices=blob.accessor(ibm, target=None)))
    return len(gltf.skins) - 1


def _add_texture(gltf: gl.GLTF2, blob: _Blob, texture: np.ndarray, name: str) -> int:
    """Embed the texture as PNG; returns the glTF texture index."""
    gltf.images.append(gl.Image(name=f"{name}_texture", mimeType="image/png",
                                bufferView=blob.view(encode_png(texture))))
    gltf.samplers.append(gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR,
                                    wrapS=gl.CLAMP_TO_EDGE, wrapT=gl.CLAMP_TO_EDGE))
    gltf.textures.append(gl.Texture(source=len(gltf.images) - 1, sampler=len(gltf.samplers) - 1))
    return len(gltf.textures) - 1


def _add_material(gltf: gl.GLTF2, texture: int, name: str, roughness: float,
                  double_sided: bool = False) -> int:
    """A PBR material over texture index `texture`; returns its index."""
    pbr = gl.PbrMetallicRoughness(baseColorTexture=gl.TextureInfo(index=texture),
                                  metallicFactor=0.0, roughnessFactor=roughness)
    gltf.materials.append(gl.Material(name=name, pbrMetallicRoughness=pbr, doubleSided=double_sided))
    return len(gltf.materials) - 1
