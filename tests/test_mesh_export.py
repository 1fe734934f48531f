"""Mesh export: glTF validity (Khronos validator), real Blender import, round trips, OBJ/PLY,
atomic writes and error handling, the `export` CLI command.

One avatar (the astronaut) is created for the module; exported files are shared by tests.
Blender runs in-process through the `bpy` wheel (it coexists with the runtime's imports).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pygltflib as gl
import pytest
from scipy.spatial import cKDTree
from skimage import data

from avatar_runtime.avatar import Avatar
from avatar_runtime.errors import AvatarNotFound, InvalidArgument, Unimplemented
from avatar_runtime.faces.image import encode_png
from avatar_runtime.mesh import files as mesh_files
from avatar_runtime.mesh.export import FORMATS, export_avatar
from avatar_runtime.head.hair_curtain import COLUMNS, ROWS
from avatar_runtime.head.model import EYE_LEFT, EYE_RIGHT, MOUTH_INTERIOR, TEETH
from avatar_runtime.mesh.geometry import split_seams, vertex_normals
from avatar_runtime.mesh.gltf import PRIMITIVES
from avatar_runtime.mesh.rig import KEPT_BONES
from avatar_runtime.motion.arkit import ARKIT_INDEX, ARKIT_NAMES, NUM_ARKIT
from engine_bridge import cli

from conftest import wait_for_background_work
from texture_cases import with_long_hair

REPO_DIR = Path(__file__).resolve().parents[1]
VALIDATOR_DIR = REPO_DIR / "tools" / "gltf-validator"
JOINTS = tuple(KEPT_BONES.values())


# -- fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """(service, data_dir, avatar): one runtime + the astronaut avatar for this module."""
    from avatar_runtime.service import AvatarService

    data_dir = tmp_path_factory.mktemp("store")
    service = AvatarService(data_dir)
    avatar_id = service.create(encode_png(data.astronaut()), name="astronaut")["id"]
    return SimpleNamespace(service=service, data_dir=data_dir, avatar=service.avatar(avatar_id),
                           head=service.head)


@pytest.fixture(scope="module")
def smile() -> np.ndarray:
    """[52] a test expression: smile, half-open jaw, left blink."""
    weights = np.zeros(NUM_ARKIT, np.float32)
    for name, value in [("mouthSmileLeft", 0.8), ("mouthSmileRight", 0.8), ("jawOpen", 0.5),
                        ("eyeBlinkLeft", 1.0)]:
        weights[ARKIT_INDEX[name]] = value
    return weights


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def neutral_glb(runtime, out_dir) -> Path:
    path = out_dir / "neutral.glb"
    export_avatar(runtime.avatar, runtime.head, "glb", path)
    return path


@pytest.fixture(scope="module")
def smile_glb(runtime, out_dir, smile) -> Path:
    path = out_dir / "smile.glb"
    export_avatar(runtime.avatar, runtime.head, "glb", path, expression=smile)
    return path


@pytest.fixture(scope="module")
def long_hair_glb(runtime, out_dir) -> Path:
    """The astronaut with long hair (texture_cases.with_long_hair): hair shell + curtain."""
    from avatar_runtime.faces.hair_matte import hair_matte

    service, rgb = runtime.service, data.astronaut()
    landmarks = service.analyzer.landmarks(rgb).landmarks
    photo, _ = with_long_hair(rgb, landmarks, hair_matte(rgb, landmarks, service.analyzer.matte(rgb)).mask)
    avatar = service.avatar(service.create(encode_png(photo), name="long")["id"])
    assert "hair_curtain" in avatar.tensors
    path = out_dir / "long.glb"
    export_avatar(avatar, runtime.head, "glb", path)
    return path


@pytest.fixture(scope="module")
def rest(runtime) -> np.ndarray:
    """[V, 3] the runtime's neutral mesh for the avatar."""
    return runtime.head.shape(runtime.avatar.tensors["identity"], None)


def dir_listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


# -- geometry helpers ----------------------------------------------------------------

def test_vertex_normals_point_outward_and_batch():
    import open3d as o3d

    sphere = o3d.geometry.TriangleMesh.create_sphere(radius=0.1, resolution=12)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.triangles)
    normals = vertex_normals(v, f)
    np.testing.assert_allclose(normals, v / 0.1, atol=0.05)  # a sphere's normal is radial
    batch = vertex_normals(np.stack([v, 2 * v]), f)
    np.testing.assert_allclose(batch, np.stack([normals, normals]), atol=1e-6)


def test_split_seams_keeps_one_uv_per_vertex():
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uvs = np.array([[[0, 0], [1, 0], [1, 1]], [[0.5, 0], [1, 1], [0, 1]]], float)  # 0 on a seam
    split = split_seams(faces, uvs)
    assert split.num_vertices == 5
    np.testing.assert_array_equal(split.vertex_map[split.faces], faces)
    np.testing.assert_allclose(split.uvs[split.faces], uvs)


# -- Khronos glTF validator -------------------------------------------------------------

def run_validator(path: Path) -> dict:
    """The validator's JSON report for `path` (node + the pinned npm package)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the Khronos glTF validator (npm gltf-validator) needs it")
    assert (VALIDATOR_DIR / "node_modules" / "gltf-validator").is_dir(), (
        f"the glTF validator is not installed: run `npm ci --prefix {VALIDATOR_DIR}`")
    done = subprocess.run([node, str(VALIDATOR_DIR / "validate.mjs"), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("which", ["neutral_glb", "smile_glb"])
def test_glb_passes_khronos_validator(which, request):
    report = run_validator(request.getfixturevalue(which))
    issues = report["issues"]
    problems = [m for m in issues["messages"] if m["severity"] <= 1]  # 0 error, 1 warning
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, json.dumps(problems, indent=1)
    info = report["info"]
    assert info["hasSkins"] and info["hasMorphTargets"] and info["hasTextures"]
    # The head's three primitives, then the hair and the body (the astronaut has both).
    assert info["maxInfluences"] == 4 and info["drawCallCount"] == len(PRIMITIVES) + 2


def test_long_hair_exports_as_a_second_hair_primitive(long_hair_glb):
    report = run_validator(long_hair_glb)
    assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, (
        json.dumps(report["issues"]["messages"], indent=1))
    assert report["info"]["drawCallCount"] == len(PRIMITIVES) + 3
    gltf = gl.GLTF2.load_from_bytes(long_hair_glb.read_bytes())
    hair = next(m for m in gltf.meshes if m.name == "long_hair")
    shell, curtain = (gltf.materials[p.material] for p in hair.primitives)
    assert (shell.name, curtain.name) == ("long_hair", "long_hair_long")
    assert curtain.doubleSided and not shell.doubleSided  # its inner face is seen beside the neck
    own = curtain.pbrMetallicRoughness.baseColorTexture.index
    assert own != shell.pbrMetallicRoughness.baseColorTexture.index
    head = JOINTS.index("head")
    joints, weights = (read_accessor(gltf, getattr(hair.primitives[1].attributes, a)) for a in ("JOINTS_0", "WEIGHTS_0"))
    assert (joints[:, 0] == head).all() and (weights[:, 0] == 1).all() and (weights[:, 1:] == 0).all()


# -- round trip through pygltflib ---------------------------------------------------------

_DTYPES = {gl.FLOAT: np.float32, gl.UNSIGNED_SHORT: np.uint16, gl.UNSIGNED_INT: np.uint32,
           gl.UNSIGNED_BYTE: np.uint8}
_WIDTH = {gl.SCALAR: 1, gl.VEC2: 2, gl.VEC3: 3, gl.VEC4: 4, gl.MAT4: 16}


def read_accessor(gltf: gl.GLTF2, index: int) -> np.ndarray:
    """Decode accessor `index` from the GLB's binary chunk -> [count, components]."""
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    assert view.byteStride in (None, 0), "the exporter writes tightly packed views"
    dtype, width = np.dtype(_DTYPES[acc.componentType]), _WIDTH[acc.type]
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    flat = np.frombuffer(gltf.binary_blob(), dtype, acc.count * width, start)
    return flat.reshape(acc.count, width)


def read_view(gltf: gl.GLTF2, index: int) -> bytes:
    view = gltf.bufferViews[index]
    return gltf.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength]


@pytest.fixture(scope="module")
def neutral_gltf(neutral_glb) -> gl.GLTF2:
    return gl.GLTF2.load_from_bytes(neutral_glb.read_bytes())


def primitive_faces(head) -> list[np.ndarray]:
    """The head's face indices each exported primitive holds, in primitive order."""
    return [np.flatnonzero(np.isin(head.part_labels[head.faces[:, 0]], labels))
            for _, labels, _ in PRIMITIVES]


def test_primitives_split_the_head_by_part(runtime, neutral_gltf):
    gltf, head = neutral_gltf, runtime.head
    names = [gltf.materials[p.material].name for p in gltf.meshes[0].primitives]
    assert names == [f"astronaut_{part}" for part, _, _ in PRIMITIVES]
    held = np.concatenate(primitive_faces(head))
    np.testing.assert_array_equal(np.sort(held), np.arange(len(head.faces)))  # each face once
    eyes, mouth = (set(head.part_labels[head.faces[f, 0]]) for f in primitive_faces(head)[1:])
    assert eyes == {EYE_LEFT, EYE_RIGHT} and mouth == {TEETH, MOUTH_INTERIOR}


def test_round_trip_positions_uvs_and_topology(runtime, neutral_gltf, rest):
    gltf, head = neutral_gltf, runtime.head
    total = 0
    for prim, faces in zip(gltf.meshes[0].primitives, primitive_faces(head)):
        positions = read_accessor(gltf, prim.attributes.POSITION)
        uvs = read_accessor(gltf, prim.attributes.TEXCOORD_0)
        tris = read_accessor(gltf, prim.indices).reshape(-1, 3)
        # Per triangle corner: the exported vertex is the head vertex, with that corner's UV.
        np.testing.assert_allclose(positions[tris], rest[head.faces[faces]], atol=1e-7)
        face_uvs = head.face_uvs[faces]
        flipped = np.stack([face_uvs[..., 0], 1.0 - face_uvs[..., 1]], -1)  # v-up -> top-left
        np.testing.assert_allclose(uvs[tris], flipped, atol=1e-7)
        # Vertices are split at seams only: no two vertices share both position and UV.
        assert len(np.unique(np.column_stack([positions, uvs]), axis=0)) == len(positions)
        acc = gltf.accessors[prim.attributes.POSITION]
        np.testing.assert_array_equal(acc.min, positions.min(0))
        np.testing.assert_array_equal(acc.max, positions.max(0))
        normals = read_accessor(gltf, prim.attributes.NORMAL)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
        total += len(positions)
    assert total < 1.2 * head.num_vertices


def test_round_trip_morph_targets(runtime, neutral_gltf, smile_glb, smile):
    gltf, head = neutral_gltf, runtime.head
    mesh = gltf.meshes[0]
    assert mesh.extras["targetNames"] == list(ARKIT_NAMES)
    assert "Basis" not in mesh.extras["targetNames"]
    assert mesh.weights == [0.0] * NUM_ARKIT
    for prim, faces in zip(mesh.primitives, primitive_faces(head)):
        tris = read_accessor(gltf, prim.indices).reshape(-1, 3)
        assert len(prim.targets) == NUM_ARKIT
        for k, target in enumerate(prim.targets):  # pygltflib loads targets as plain dicts
            delta = read_accessor(gltf, target["POSITION"])
            np.testing.assert_allclose(delta[tris], head.expression_basis[k][head.faces[faces]], atol=1e-7)
            acc = gltf.accessors[target["POSITION"]]
            assert acc.min is not None and acc.max is not None
            assert read_accessor(gltf, target["NORMAL"]).shape == delta.shape
    smiling = gl.GLTF2.load_from_bytes(smile_glb.read_bytes()).meshes[0]
    np.testing.assert_allclose(smiling.weights, smile, atol=1e-7)


def test_round_trip_skin_and_skeleton(runtime, neutral_gltf):
    gltf, head = neutral_gltf, runtime.head
    skin = gltf.skins[0]
    names = [gltf.nodes[j].name for j in skin.joints]
    assert tuple(names) == JOINTS
    assert gltf.scenes[gltf.scene].nodes[0] == skin.skeleton == skin.joints[0]
    world = joint_world_positions(gltf)
    ibm = read_accessor(gltf, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    for j, joint in zip(skin.joints, names):
        bind = np.eye(4)
        bind[:3, 3] = world[joint]
        np.testing.assert_allclose(ibm[skin.joints.index(j)] @ bind, np.eye(4), atol=1e-6)
    main_joint = {}  # part -> set of first joints of its vertices
    chin_joints = None
    chin = np.argmax(np.linalg.norm(head.expression_basis[ARKIT_INDEX["jawOpen"]], axis=1))
    for prim, faces in zip(gltf.meshes[0].primitives, primitive_faces(head)):
        joints = read_accessor(gltf, prim.attributes.JOINTS_0)
        weights = read_accessor(gltf, prim.attributes.WEIGHTS_0)
        assert joints.dtype == np.uint16 and weights.dtype == np.float32
        np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-6)
        tris = read_accessor(gltf, prim.indices).reshape(-1, 3)
        vertex_of = np.zeros(len(joints), int)
        vertex_of[tris.ravel()] = head.faces[faces].ravel()
        for part in np.unique(head.part_labels[vertex_of]):
            main_joint[part] = {JOINTS[j] for j in joints[head.part_labels[vertex_of] == part, 0]}
        if (vertex_of == chin).any():
            chin_joints = set(joints[vertex_of == chin, 0])
    # Eyeballs follow their eye joints, the chin the jaw; the teeth ride on head and jaw,
    # the tongue on its own joint.
    assert main_joint[EYE_LEFT] == {"eye.L"} and main_joint[EYE_RIGHT] == {"eye.R"}
    assert chin_joints == {JOINTS.index("jaw")}
    assert main_joint[TEETH] == {"head", "jaw"}
    assert "tongue" in main_joint[MOUTH_INTERIOR]


def joint_world_positions(gltf: gl.GLTF2) -> dict[str, np.ndarray]:
    """Joint name -> world position, composing the node translations from the root."""
    out: dict[str, np.ndarray] = {}

    def walk(index: int, parent: np.ndarray) -> None:
        node = gltf.nodes[index]
        assert node.rotation is None and node.scale is None and node.matrix is None
        out[node.name] = parent + np.asarray(node.translation or [0, 0, 0])
        for child in node.children:
            walk(child, out[node.name])

    walk(gltf.skins[0].skeleton, np.zeros(3))
    return out


def test_round_trip_texture_and_material(runtime, neutral_gltf):
    gltf = neutral_gltf
    skin, eyes, mouth = (gltf.materials[p.material].pbrMetallicRoughness
                         for p in gltf.meshes[0].primitives)
    assert skin.metallicFactor == 0.0 and 0.4 <= skin.roughnessFactor <= 0.8
    assert eyes.roughnessFactor < mouth.roughnessFactor < skin.roughnessFactor  # wet, moist, soft
    assert skin.baseColorTexture.index == eyes.baseColorTexture.index == mouth.baseColorTexture.index
    hair, body = (gltf.materials[m.primitives[0].material].pbrMetallicRoughness for m in gltf.meshes[1:])
    assert hair.baseColorTexture.index == skin.baseColorTexture.index  # the shell shows the head texture
    assert body.baseColorTexture.index != skin.baseColorTexture.index
    assert len(gltf.images) == 2
    image = gltf.images[gltf.textures[skin.baseColorTexture.index].source]
    assert image.mimeType == "image/png"
    png = np.frombuffer(read_view(gltf, image.bufferView), np.uint8)
    decoded = cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decoded, runtime.avatar.tensors["texture"])


# -- real Blender ----------------------------------------------------------------------

@pytest.fixture
def blender(blender_scene):
    wait_for_background_work()  # before each test's bpy calls too (see conftest)
    return blender_scene


@pytest.fixture(scope="module")
def blender_scene(neutral_glb):
    """bpy after importing the neutral glb into a fresh factory-settings scene."""
    bpy = pytest.importorskip("bpy")
    wait_for_background_work()  # see conftest: bpy runs with no other Python thread at work
    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.import_scene.gltf(filepath=str(neutral_glb))
    assert result == {"FINISHED"}
    return bpy


def blender_meshes(bpy) -> list:
    """Mesh objects of the scene, the head (the one with shape keys) first, minus the
    importer's bone-display helper ('Icosphere' in its own 'glTF_not_exported' collection)."""
    found = [o for o in bpy.context.scene.objects if o.type == "MESH"
             and all(c.name != "glTF_not_exported" for c in o.users_collection)]
    return sorted(found, key=lambda o: (o.data.shape_keys is None, o.name))


def blender_vertices_as_gltf(bpy, obj) -> np.ndarray:
    """[N, 3] evaluated world vertices (shape keys + armature) in glTF axes (Y up).

    Blender's importer turns glTF's Y-up into Z-up: blender (x, y, z) = gltf (x, -z, y).
    """
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    co = np.empty(len(mesh.vertices) * 3)
    mesh.vertices.foreach_get("co", co)
    evaluated.to_mesh_clear()
    matrix = np.array(obj.matrix_world)
    co = co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
    return np.stack([co[:, 0], co[:, 2], -co[:, 1]], axis=1)


def test_blender_imports_head_hair_and_body_on_one_armature(blender):
    bpy = blender
    meshes = blender_meshes(bpy)
    assert [o.name for o in meshes] == ["astronaut", "astronaut_body", "astronaut_hair"]
    armature = meshes[0].parent
    assert armature is not None and armature.type == "ARMATURE"
    assert {b.name for b in armature.data.bones} == set(JOINTS)
    for obj in meshes:
        assert obj.parent == armature
        modifiers = [m for m in obj.modifiers if m.type == "ARMATURE"]
        assert len(modifiers) == 1 and modifiers[0].object == armature
        assert {g.name for g in obj.vertex_groups} <= set(JOINTS)
    hair = meshes[2]  # rides on the head joint alone
    weighted = {hair.vertex_groups[g.group].name for v in hair.data.vertices for g in v.groups if g.weight > 0}
    assert weighted == {"head"}
    for obj in meshes[1:]:  # each layer has its own textured material
        material = obj.material_slots[0].material
        assert material.name == obj.name
        assert any(n.type == "TEX_IMAGE" and n.image is not None for n in material.node_tree.nodes)


def test_blender_shape_keys_are_the_arkit_names(blender):
    keys = blender_meshes(blender)[0].data.shape_keys.key_blocks
    assert keys[0].name == "Basis"  # Blender's own reference key, not in the file
    assert [k.name for k in keys[1:]] == list(ARKIT_NAMES)


def test_blender_material_has_the_texture(blender, runtime):
    slots = blender_meshes(blender)[0].material_slots
    assert [s.material.name for s in slots] == [f"astronaut_{part}" for part, _, _ in PRIMITIVES]
    for slot in slots:
        images = [n.image for n in slot.material.node_tree.nodes if n.type == "TEX_IMAGE"]
        assert len(images) == 1 and images[0] is not None
        assert tuple(images[0].size) == runtime.avatar.tensors["texture"].shape[1::-1]


def test_blender_rest_pose_matches_runtime(blender, rest):
    verts = blender_vertices_as_gltf(blender, blender_meshes(blender)[0])
    # Order-free comparison, both ways: every vertex has its twin within 0.1 mm.
    assert cKDTree(rest).query(verts)[0].max() < 1e-4
    assert cKDTree(verts).query(rest)[0].max() < 1e-4


def test_blender_jaw_open_moves_the_chin_down_only(blender, runtime, rest):
    obj = blender_meshes(blender)[0]
    before = blender_vertices_as_gltf(blender, obj)
    key = obj.data.shape_keys.key_blocks["jawOpen"]
    key.value = 1.0
    try:
        after = blender_vertices_as_gltf(blender, obj)
    finally:
        key.value = 0.0
    moved = after - before  # glTF axes: -Y here is -Z in Blender
    chin = np.argmax(np.linalg.norm(runtime.head.expression_basis[ARKIT_INDEX["jawOpen"]], axis=1))
    at_chin = np.linalg.norm(before - rest[chin], axis=1) < 1e-5
    assert at_chin.any()
    assert (moved[at_chin, 1] < -0.01).all()  # more than 1 cm down
    top = np.linalg.norm(before - rest[np.argmax(rest[:, 1])], axis=1) < 1e-5
    assert top.any() and np.abs(moved[top]).max() < 1e-7


def test_blender_imports_long_hair_with_both_hair_materials(long_hair_glb):
    """Last of the Blender tests: it replaces the scene the others share."""
    bpy = pytest.importorskip("bpy")
    wait_for_background_work()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert bpy.ops.import_scene.gltf(filepath=str(long_hair_glb)) == {"FINISHED"}
    hair = next(o for o in blender_meshes(bpy) if o.name == "long_hair")
    assert [s.material.name for s in hair.material_slots] == ["long_hair", "long_hair_long"]
    for slot in hair.material_slots:
        assert any(n.type == "TEX_IMAGE" and n.image is not None for n in slot.material.node_tree.nodes)
    assert not hair.material_slots[1].material.use_backface_culling
    weighted = {hair.vertex_groups[g.group].name for v in hair.data.vertices for g in v.groups if g.weight > 0}
    assert weighted == {"head"}
    # The curtain's faces are those with the second material: they hang below the head.
    curtain = [p for p in hair.data.polygons if p.material_index == 1]
    assert len(curtain) == 2 * (ROWS - 1) * (COLUMNS - 1)
    lowest = min(hair.data.vertices[i].co.z for p in curtain for i in p.vertices)
    shell_lowest = min(hair.data.vertices[i].co.z for p in hair.data.polygons if p.material_index == 0
                       for i in p.vertices)
    assert lowest < shell_lowest - 0.05


# -- OBJ and PLY --------------------------------------------------------------------------

def test_obj_bakes_expression_with_texture(runtime, tmp_path, smile):
    out = tmp_path / "head.obj"
    paths = export_avatar(runtime.avatar, runtime.head, "obj", out, expression=smile)
    assert [p.name for p in paths] == ["head.obj", "head.mtl", "head.png"]
    assert dir_listing(tmp_path) == ["head.mtl", "head.obj", "head.png"]
    text = out.read_text().splitlines()
    assert "mtllib head.mtl" in text
    v = np.array([line.split()[1:] for line in text if line.startswith("v ")], float)
    vt = np.array([line.split()[1:] for line in text if line.startswith("vt ")], float)
    faces = [line.split()[1:] for line in text if line.startswith("f ")]
    expected = runtime.head.shape(runtime.avatar.tensors["identity"], smile)
    np.testing.assert_allclose(v, expected, atol=1e-6)
    corners = np.array([[c.split("/") for c in f] for f in faces], int) - 1  # [F, 3, (v, vt, vn)]
    np.testing.assert_array_equal(corners[..., 0], runtime.head.faces)
    np.testing.assert_allclose(vt[corners[..., 1]], runtime.head.face_uvs, atol=1e-6)
    assert "map_Kd head.png" in (tmp_path / "head.mtl").read_text()
    png = cv2.cvtColor(cv2.imread(str(tmp_path / "head.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(png, runtime.avatar.tensors["texture"])


def test_ply_reads_back_in_open3d(runtime, tmp_path, smile):
    import open3d as o3d

    out = tmp_path / "head.ply"
    export_avatar(runtime.avatar, runtime.head, "ply", out, expression=smile)
    mesh = o3d.io.read_triangle_mesh(str(out))
    expected = runtime.head.shape(runtime.avatar.tensors["identity"], smile)
    np.testing.assert_allclose(np.asarray(mesh.vertices), expected, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mesh.triangles), runtime.head.faces)
    assert mesh.has_vertex_normals() and mesh.has_vertex_colors()
    colours = np.asarray(mesh.vertex_colors)
    assert colours.std() > 0.05  # sampled from the photo, not a constant


# -- bad input, atomicity ----------------------------------------------------------------

def test_unsupported_format_is_rejected_without_files(runtime, tmp_path):
    with pytest.raises(InvalidArgument) as err:
        export_avatar(runtime.avatar, runtime.head, "fbx", tmp_path / "head.fbx")
    assert all(f in err.value.message for f in FORMATS)
    assert dir_listing(tmp_path) == []


@pytest.mark.parametrize("name, problem", [("head.obj", "must end in .glb"),
                                           ("missing/head.glb", "does not exist")])
def test_bad_output_path_is_rejected(runtime, tmp_path, name, problem):
    with pytest.raises(InvalidArgument, match=problem):
        export_avatar(runtime.avatar, runtime.head, "glb", tmp_path / name)
    assert dir_listing(tmp_path) == []


def test_bad_expression_is_rejected(runtime, tmp_path):
    with pytest.raises(InvalidArgument, match="52 finite ARKit weights"):
        export_avatar(runtime.avatar, runtime.head, "glb", tmp_path / "a.glb", expression=[0.5] * 51)
    assert dir_listing(tmp_path) == []


def test_avatar_without_mesh_tensors_is_unimplemented(runtime, tmp_path):
    volumetric = Avatar("0123456789abcdef", "v", "portrait4d", {"planes": np.zeros((3, 4, 4))})
    with pytest.raises(Unimplemented, match="parametric-head"):
        export_avatar(volumetric, runtime.head, "glb", tmp_path / "a.glb")


def test_unknown_avatar_id(runtime):
    with pytest.raises(AvatarNotFound):
        runtime.service.avatar("feedfacefeedface")


@pytest.mark.parametrize("fmt", FORMATS)
def test_failed_write_leaves_no_partial_files(runtime, tmp_path, monkeypatch, fmt):
    """The last rename fails: files already renamed and temps are removed; an older
    export at the same path survives untouched."""
    out = tmp_path / f"head.{fmt}"
    out.write_bytes(b"previous export")
    real_replace, calls = os.replace, []

    def replace(src, dst):
        if Path(dst).parent == tmp_path:  # not the store's own writes (calibration in the background)
            calls.append(dst)
        if Path(dst) == out:  # the main file is renamed last
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(mesh_files.os, "replace", replace)
    with pytest.raises(OSError):
        export_avatar(runtime.avatar, runtime.head, fmt, out)
    assert dir_listing(tmp_path) == [out.name]
    assert out.read_bytes() == b"previous export"
    assert len(calls) == (3 if fmt == "obj" else 1)


# -- CLI -------------------------------------------------------------------------------

def test_cli_exports_a_stored_avatar(runtime, tmp_path, capsys):
    out = tmp_path / "cli.glb"
    code = cli.main(["export", runtime.avatar.id, "--format", "glb", "--out", str(out),
                     "--data-dir", str(runtime.data_dir)])
    assert code == 0, capsys.readouterr().err
    assert gl.GLTF2.load_from_bytes(out.read_bytes()).meshes[0].extras["targetNames"] == list(ARKIT_NAMES)
    assert runtime.avatar.id in capsys.readouterr().out


def test_cli_exports_from_an_image(runtime, tmp_path, capsys):
    image = tmp_path / "astronaut.png"
    from avatar_runtime.service import avatar_id_for

    image.write_bytes(encode_png(data.astronaut()))
    out = tmp_path / "cli.ply"
    code = cli.main(["export", "--image", str(image), "--format", "ply", "--out", str(out),
                     "--data-dir", str(runtime.data_dir)])
    assert code == 0, capsys.readouterr().err
    assert out.stat().st_size > 0
    # No name given: the photo's own id (the module's avatar has a name, so it is another one).
    assert f"created avatar {avatar_id_for(image.read_bytes(), 'fit')}" in capsys.readouterr().out


def test_cli_unknown_avatar_fails_cleanly(runtime, tmp_path, capsys):
    out = tmp_path / "x.glb"
    code = cli.main(["export", "feedfacefeedface", "--format", "glb", "--out", str(out),
                     "--data-dir", str(runtime.data_dir)])
    assert code == 2
    assert "NOT_FOUND" in capsys.readouterr().err
    assert dir_listing(tmp_path) == []


def test_cli_rejects_unknown_format(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["export", "feedfacefeedface", "--format", "fbx", "--out", str(tmp_path / "x.fbx")])
    assert "glb" in capsys.readouterr().err
