"""Volume surface extraction (coarse-to-fine marching cubes) and its static glb, on the
closed-form fields of `reference_fields` built from the head template (no weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open3d as o3d
import pygltflib as gl
import pytest

from avatar_runtime.avatar import Avatar
from avatar_runtime.errors import FailedPrecondition, InvalidArgument, Unimplemented
from avatar_runtime.head.model import load_head_model
from avatar_runtime.mesh import files as mesh_files_module
from avatar_runtime.mesh.export import mesh_files
from avatar_runtime.mesh.extract import DEFAULT_LEVEL, extract_surface
from avatar_runtime.mesh.gltf_static import export_field_glb, static_glb
from avatar_runtime.render.volume.reference_fields import MeshShellField, hull_field
from test_mesh_export import run_validator

LEVEL = DEFAULT_LEVEL  # on the hull field: 3 mm outside the visual hull


@pytest.fixture(scope="module")
def head():
    return load_head_model()


@pytest.fixture(scope="module")
def field(head):
    return hull_field(head.template, head.faces)


@pytest.fixture(scope="module")
def surface(field):
    field.reset_count()
    return extract_surface(field, resolution=256, level=LEVEL)


def boundary_edges(faces: np.ndarray) -> int:
    """Edges used by exactly one triangle."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int((counts == 1).sum())


def distance_to(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(faces, np.uint32)))
    return scene.compute_distance(o3d.core.Tensor(np.asarray(points, np.float32))).numpy()


def test_surface_is_closed_decimated_and_coloured(surface):
    vertices, faces, colours = surface
    assert vertices.dtype == np.float32 and faces.dtype == np.int32 and colours.dtype == np.uint8
    assert vertices.shape[1] == 3 and colours.shape == vertices.shape
    assert 15_000 <= len(faces) <= 20_500  # about the decimation target
    assert boundary_edges(faces) <= 0.001 * len(faces)
    assert surface.stats.raw_triangles > len(faces)
    # The hull colour model: skin tones, darker 'hair' at the top; never a flat colour.
    assert colours.std(0).min() > 10 and (colours[:, 0] >= colours[:, 2]).mean() > 0.95


def test_far_fewer_evaluations_than_dense(field, surface):
    stats = surface.stats
    assert stats.dense == 257 ** 3
    assert field.n_evaluations == stats.total
    assert stats.fine < 0.15 * stats.dense and stats.total < 0.2 * stats.dense


def test_surface_encloses_the_head(head, surface):
    """The visual hull contains the head: every template vertex is inside or within 3 mm
    of the surface. (The hull field's density is a step at grid scale, so vertices are
    only placed to within a voxel; the shell-field test below measures accuracy.)"""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(surface.vertices), o3d.core.Tensor(surface.faces.astype(np.uint32)))
    template = o3d.core.Tensor(head.template.astype(np.float32))
    inside = scene.compute_occupancy(template).numpy() > 0
    outside_by = scene.compute_distance(template).numpy()[~inside]
    assert inside.mean() > 0.95 and (outside_by.size == 0 or outside_by.max() < 0.003)


def test_shell_field_surface_is_within_mm_of_template(head):
    """A field whose surface is known exactly: density `shell` (3.2 mm) around the mesh."""
    field = MeshShellField(head.template, head.faces)
    surface = extract_surface(field, resolution=128, coarse=32, level=field.peak / 2)
    d = distance_to(head.template, head.faces, surface.vertices)
    shell_m = field.shell * field.box.half_extent
    assert np.median(np.abs(d - shell_m)) < 0.0005 and np.abs(d - shell_m).max() < 0.003


def test_empty_field_and_bad_grid_are_rejected(field):
    with pytest.raises(FailedPrecondition, match="never crosses"):
        extract_surface(field, resolution=64, coarse=32, level=1e6)
    with pytest.raises(ValueError, match="multiple"):
        extract_surface(field, resolution=100, coarse=64)


@pytest.fixture(scope="module")
def glb_path(field, surface, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("volume") / "hull.glb"
    path.write_bytes(static_glb(*surface, name="hull"))
    return path


def test_glb_passes_khronos_validator(glb_path):
    report = run_validator(glb_path)
    issues = report["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]


def test_glb_round_trips_positions_colours_and_normals(glb_path, surface):
    gltf = gl.GLTF2().load(str(glb_path))
    blob = gltf.binary_blob()

    def read(index: int, dtype, width: int) -> np.ndarray:
        acc = gltf.accessors[index]
        view = gltf.bufferViews[acc.bufferView]
        return np.frombuffer(blob, dtype, acc.count * width, view.byteOffset).reshape(acc.count, width)

    prim = gltf.meshes[0].primitives[0]
    positions = read(prim.attributes.POSITION, np.float32, 3)
    np.testing.assert_array_equal(positions, surface.vertices)
    assert gltf.accessors[prim.attributes.POSITION].min == positions.min(0).tolist()
    colours = read(prim.attributes.COLOR_0, np.float32, 3)
    np.testing.assert_array_equal(np.round(colours * 255).astype(np.uint8), surface.colours)
    normals = read(prim.attributes.NORMAL, np.float32, 3)
    centre = surface.vertices.mean(0)
    assert ((normals * (surface.vertices - centre)).sum(1) > 0).mean() > 0.8  # outward (the neck and ears are not radial)
    index_dtype = np.uint16 if len(positions) < 65535 else np.uint32
    faces = read(prim.indices, index_dtype, 1).reshape(-1, 3)
    np.testing.assert_array_equal(faces, surface.faces)
    pbr = gltf.materials[prim.material].pbrMetallicRoughness
    assert pbr.baseColorFactor == [1.0, 1.0, 1.0, 1.0] and pbr.metallicFactor == 0.0


def test_failed_export_leaves_no_partial_file(field, tmp_path, monkeypatch):
    out = tmp_path / "hull.glb"
    out.write_bytes(b"previous export")

    def replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mesh_files_module.os, "replace", replace)
    with pytest.raises(OSError):
        export_field_glb(field, out, resolution=64, coarse=32, level=LEVEL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hull.glb"]
    assert out.read_bytes() == b"previous export"


def test_mesh_files_volume_source(head, field):
    learned = Avatar(id="0123456789abcdef", name="hull", reconstructor="portrait4d", tensors={})
    files = mesh_files(learned, head, "glb", "hull", source="volume", field=field)
    assert list(files) == ["hull.glb"] and files["hull.glb"][:4] == b"glTF"
    with pytest.raises(InvalidArgument, match="glb only"):
        mesh_files(learned, head, "obj", "hull", source="volume", field=field)
    with pytest.raises(InvalidArgument, match="unknown export source"):
        mesh_files(learned, head, "glb", "hull", source="points")
    fitted = Avatar(id="0123456789abcdef", name="fit", reconstructor="fit", tensors={})
    with pytest.raises(Unimplemented, match="portrait4d avatar or one created with refine"):
        mesh_files(fitted, head, "glb", "hull", source="volume", field=None)
    # A fit avatar with a refined volume (create refine="volume") exports its field.
    assert mesh_files(fitted, head, "glb", "hull", source="volume", field=field)["hull.glb"][:4] == b"glTF"
