"""Behaviour of the mesh renderer on scenes with known answers, and its scan-converted
visibility against one ray per pixel centre."""

from __future__ import annotations

import math

import numpy as np
import open3d as o3d
import pytest

from avatar_runtime.render.camera import Camera
from avatar_runtime.render.mesh_renderer import (
    AA_PATTERNS,
    MeshRenderer,
    RenderOutput,
    render_mesh,
)

DIST = 1.0   # camera distance to the quad / sphere centre (m)
SIZE = 128   # image side (px)
RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def front_camera(size: int = SIZE, dist: float = DIST, target=(0.0, 0.0, 0.0)) -> Camera:
    """Camera on +Z looking at the origin, like the default frontal portrait camera."""
    return Camera.look_at((target[0], target[1], target[2] + dist), target,
                          fov_y_deg=12.0, width=size, height=size)


def quad(half: float = 0.08, centre=(0.0, 0.0, 0.0), angle_deg: float = 0.0):
    """Square in a z = const plane facing +Z, optionally rotated about its centre's Z axis.

    Returns vertices [4, 3], faces [2, 3] (counter-clockwise seen from +Z), face_uvs
    [2, 3, 2] with (0, 0) at the bottom-left corner and (1, 1) at the top-right.
    """
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * half
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    xy = corners @ rot.T
    vertices = np.column_stack([xy, np.zeros(4)]) + np.asarray(centre)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
    return vertices, faces, uv[faces]


def checker_texture(size: int = 64) -> np.ndarray:
    """2x2 colours, row 0 = top: red | green over blue | yellow."""
    tex = np.zeros((size, size, 3), np.uint8)
    h = size // 2
    tex[:h, :h], tex[:h, h:], tex[h:, :h], tex[h:, h:] = RED, GREEN, BLUE, YELLOW
    return tex


def flat_texture(colour, size: int = 8) -> np.ndarray:
    return np.full((size, size, len(colour)), colour, np.uint8)


def uv_sphere(radius: float = 0.1, resolution: int = 48):
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=radius, resolution=resolution,
                                                   create_uv_map=True)
    faces = np.asarray(mesh.triangles)
    return np.asarray(mesh.vertices), faces, np.asarray(mesh.triangle_uvs).reshape(-1, 3, 2)


def quad_area_px(half: float, camera: Camera, dist: float = DIST) -> float:
    """Pixel area of a fronto-parallel square at depth `dist` (scale f / depth)."""
    return (2 * half * camera.focal_px / dist) ** 2


# ----------------------------------------------------------------- colour & layout


def test_checker_quadrants_follow_uv_with_v_up():
    verts, faces, uvs = quad()
    cam = front_camera()
    out = MeshRenderer(faces, uvs, checker_texture()).render(verts, cam)
    c, q = SIZE // 2, 12  # quad spans ~ +-62 px around the centre; sample 12 px inside
    assert tuple(out.rgba[c - q, c - q]) == (*RED, 255)      # top-left of screen
    assert tuple(out.rgba[c - q, c + q]) == (*GREEN, 255)    # top-right
    assert tuple(out.rgba[c + q, c - q]) == (*BLUE, 255)     # bottom-left
    assert tuple(out.rgba[c + q, c + q]) == (*YELLOW, 255)   # bottom-right


def test_texture_is_sampled_bilinearly_at_interpolated_uv():
    # A horizontal ramp texture: colour must grow linearly with screen x across the quad.
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 4, axis=0).repeat(3, axis=2)
    verts, faces, uvs = quad()
    cam = front_camera()
    out = MeshRenderer(faces, uvs, ramp).render(verts, cam)
    xy, _ = cam.project(verts[:1])  # bottom-left corner, u = 0
    x_left = xy[0, 0]
    width_px = 2 * 0.08 * cam.focal_px / DIST
    cols = np.arange(20, SIZE - 20)
    u = (cols + 0.5 - x_left) / width_px
    expected = u * 256 - 0.5  # texel centres at (i + 0.5) / 256
    got = out.rgba[SIZE // 2, cols, 0].astype(float)
    np.testing.assert_allclose(got, expected, atol=1.0)


def test_row_zero_is_top_and_x_is_right():
    cam = front_camera()
    tex = flat_texture(RED)
    for centre, rows_top, cols_right in [((0, 0.05, 0), True, None), ((0, -0.05, 0), False, None),
                                          ((0.05, 0, 0), None, True), ((-0.05, 0, 0), None, False)]:
        verts, faces, uvs = quad(half=0.01, centre=centre)
        alpha = MeshRenderer(faces, uvs, tex).render(verts, cam).rgba[..., 3]
        rows, cols = np.nonzero(alpha)
        if rows_top is not None:
            assert (rows.mean() < SIZE / 2) == rows_top, centre
        if cols_right is not None:
            assert (cols.mean() > SIZE / 2) == cols_right, centre


def test_rendered_positions_match_camera_projection():
    verts, faces, uvs = uv_sphere()
    cam = front_camera(size=256, dist=0.8)
    out = MeshRenderer(faces, uvs, flat_texture(RED)).render(verts, cam)
    # Vertices on the visible cap, away from the silhouette, are surface points.
    front = verts[verts[:, 2] > 0.07]
    xy, depth = cam.project(front)
    rows, cols = np.floor(xy[:, 1]).astype(int), np.floor(xy[:, 0]).astype(int)
    # A pixel centre is within ~0.7 px of the vertex; the cap slopes at most ~45 deg.
    slack = 0.7 * 0.8 / cam.focal_px * 1.5
    np.testing.assert_allclose(out.depth[rows, cols], depth, atol=slack + 1e-4)


# ------------------------------------------------------------------ depth & normals


def test_depth_is_view_axis_distance_not_ray_length():
    verts, faces, uvs = quad(half=0.09)
    cam = front_camera()
    out = MeshRenderer(faces, uvs, flat_texture(RED)).render(verts, cam)
    inside = out.rgba[..., 3] == 255
    assert inside.sum() > 0.7 * SIZE * SIZE
    # Corner rays are ~7 deg off-axis: their length exceeds DIST by ~7e-3.
    np.testing.assert_allclose(out.depth[inside], DIST, atol=1e-3)
    assert out.depth.dtype == np.float32


def test_sphere_depth_and_normals():
    verts, faces, uvs = uv_sphere(radius=0.1)
    cam = front_camera(size=256)
    out = MeshRenderer(faces, uvs, flat_texture(RED)).render(verts, cam)
    c = 128
    # The pixel centres nearest the axis are 0.5 px off it: sphere depth changes ~1e-7 there;
    # the tessellation's flat facets sit inside the sphere by < r (1 - cos(pi / 48)) ~ 2e-4.
    assert out.depth[c, c] == pytest.approx(DIST - 0.1, abs=1e-3)
    np.testing.assert_allclose(out.normals[c, c], [0, 0, 1], atol=0.05)
    hit = np.isfinite(out.depth)
    np.testing.assert_allclose(np.linalg.norm(out.normals[hit], axis=-1), 1.0, atol=1e-5)
    # Toward the camera: normals face against the viewing rays (camera sits on +Z).
    _, dirs = cam.rays()
    assert (np.einsum("hwk,hwk->hw", out.normals, dirs)[hit] < 0).all()


@pytest.mark.parametrize("flip_winding", [False, True])
def test_normals_face_camera_whatever_the_winding(flip_winding):
    verts, faces, uvs = quad()
    if flip_winding:
        faces, uvs = faces[:, ::-1].copy(), uvs[:, ::-1].copy()
    out = MeshRenderer(faces, uvs, checker_texture()).render(verts, front_camera())
    hit = out.rgba[..., 3] > 0
    np.testing.assert_allclose(out.normals[hit], np.broadcast_to([0, 0, 1], (hit.sum(), 3)),
                               atol=1e-6)
    # Winding must not change what is seen.
    assert tuple(out.rgba[SIZE // 2 - 12, SIZE // 2 - 12]) == (*RED, 255)


def test_background_is_empty():
    verts, faces, uvs = quad(half=0.03)
    out = MeshRenderer(faces, uvs, flat_texture(RED)).render(verts, front_camera())
    empty = out.rgba[..., 3] == 0
    assert empty[0, 0] and empty.sum() > SIZE * SIZE / 2
    assert (out.rgba[empty] == 0).all()
    assert np.isposinf(out.depth[empty]).all()
    assert (out.normals[empty] == 0).all()
    # ... and empty is exactly where depth is infinite, silhouette pixels included.
    np.testing.assert_array_equal(empty, ~np.isfinite(out.depth))


def test_output_types_and_shapes():
    verts, faces, uvs = quad()
    cam = front_camera().with_size(96, 64)
    out = render_mesh(verts, faces, uvs, checker_texture(), cam)
    assert isinstance(out, RenderOutput)
    assert out.rgba.shape == (64, 96, 4) and out.rgba.dtype == np.uint8
    assert out.depth.shape == (64, 96) and out.depth.dtype == np.float32
    assert out.normals.shape == (64, 96, 3) and out.normals.dtype == np.float32


# ------------------------------------------------------------------- anti-aliasing


def test_silhouette_alpha_is_fractional_and_straight():
    colour = (200, 120, 40)
    verts, faces, uvs = quad(half=0.05, angle_deg=20)  # slanted edges cross pixels anywhere
    cam = front_camera()
    out = MeshRenderer(faces, uvs, flat_texture(colour)).render(verts, cam)
    alpha = out.rgba[..., 3]
    partial = (alpha > 0) & (alpha < 255)
    perimeter_px = 4 * 2 * 0.05 * cam.focal_px / DIST
    assert partial.sum() > 0.5 * perimeter_px
    # Straight alpha: edge pixels keep the surface colour instead of being darkened.
    edge_rgb = out.rgba[partial][:, :3]
    np.testing.assert_allclose(edge_rgb, np.broadcast_to(colour, edge_rgb.shape), atol=1)
    # Partial pixels only hug the silhouette: the interior stays opaque.
    verts_in, _, _ = quad(half=0.045, angle_deg=20)
    inner = MeshRenderer(faces, uvs, flat_texture(colour)).render(verts_in, cam).rgba[..., 3] > 0
    assert (alpha[inner] == 255).all()


@pytest.mark.parametrize("aa_samples, tolerance", [(0, 0.02), (4, 0.006), (8, 0.004), (16, 0.003)])
def test_coverage_sums_to_projected_area(aa_samples, tolerance):
    verts, faces, uvs = quad(half=0.05, angle_deg=20)
    cam = front_camera()
    out = MeshRenderer(faces, uvs, flat_texture(RED), aa_samples=aa_samples).render(verts, cam)
    area = out.rgba[..., 3].astype(float).sum() / 255
    assert area == pytest.approx(quad_area_px(0.05, cam), rel=tolerance)
    if aa_samples == 0:
        assert set(np.unique(out.rgba[..., 3])) == {0, 255}


@pytest.mark.parametrize("aa_samples", [4, 8, 16])
def test_edge_pixel_alpha_is_sample_coverage(aa_samples):
    # Vertical quad edges 0.2 px from pixel centres: left edge at col 40 + 0.3 (pixel 70%
    # covered), right edge at col 87 + 0.7 (70% covered). Alpha must be the fraction of the
    # pattern's samples (plus the centre) inside, and close to the true 70%.
    cam = front_camera()
    to_world = DIST / cam.focal_px
    x_left, x_right = (40.3 - SIZE / 2) * to_world, (87.7 - SIZE / 2) * to_world
    verts = np.array([[x_left, -0.05, 0], [x_right, -0.05, 0], [x_right, 0.05, 0],
                      [x_left, 0.05, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    out = MeshRenderer(faces, np.zeros((2, 3, 2)), flat_texture(RED),
                       aa_samples=aa_samples).render(verts, cam)
    offsets_x = np.concatenate([[0.0], AA_PATTERNS[aa_samples][:, 0]])
    n = len(offsets_x)
    rows = slice(SIZE // 2 - 20, SIZE // 2 + 20)
    for col, covered in [(40, offsets_x > -0.2), (87, offsets_x < 0.2)]:
        alpha = out.rgba[rows, col, 3].astype(int)
        np.testing.assert_array_equal(alpha, round(covered.sum() / n * 255))
        assert abs(alpha[0] / 255 - 0.7) <= 1.5 / n
        assert (out.rgba[rows, col, :3] == RED).all()


def test_occlusion_edges_are_antialiased_but_opaque():
    # A red quad in front of a larger blue quad: the red/blue boundary gets blended colours
    # while alpha stays 255 because every sample hits something.
    front, faces, uvs = quad(half=0.03, centre=(0, 0, 0.2), angle_deg=20)
    back, _, _ = quad(half=0.09)
    verts = np.concatenate([front, back])
    faces2 = np.concatenate([faces, faces + 4])
    uv_red, uv_blue = np.full_like(uvs, 0.25), np.full_like(uvs, 0.75)
    tex = np.zeros((2, 2, 3), np.uint8)
    tex[1, 0], tex[0, 1] = RED, BLUE   # (u, v) = (0.25, 0.25) -> row 1, col 0
    out = MeshRenderer(faces2, np.concatenate([uv_red, uv_blue]), tex).render(verts, front_camera())
    rgb, alpha = out.rgba[..., :3].astype(int), out.rgba[..., 3]
    assert (alpha[32:96, 32:96] == 255).all()
    mixed = (rgb[..., 0] > 10) & (rgb[..., 2] > 10) & (alpha == 255)
    assert mixed.sum() > 50
    # Blends of pure red and pure blue: no green, red + blue = 255 up to rounding.
    assert (rgb[mixed][:, 1] == 0).all()
    np.testing.assert_allclose(rgb[mixed][:, 0] + rgb[mixed][:, 2], 255, atol=1)


# ---------------------------------------------------------------- other behaviour


def test_render_batch_equals_individual_renders():
    verts, faces, uvs = uv_sphere()
    renderer = MeshRenderer(faces, uvs, checker_texture())
    squashed = verts * [1.0, 0.8, 1.0]
    vert_list = [verts, verts, squashed]   # a repeat exercises the shared scene
    cams = [front_camera(), Camera.orbit(30, 10, radius=1.2, width=SIZE, height=SIZE),
            Camera.orbit(-20, 0, radius=1.2, width=SIZE, height=SIZE)]
    batch = renderer.render_batch(vert_list, cams)
    assert len(batch) == 3
    for got, v, cam in zip(batch, vert_list, cams):
        single = renderer.render(v, cam)
        np.testing.assert_array_equal(got.rgba, single.rgba)
        np.testing.assert_array_equal(got.depth, single.depth)
        np.testing.assert_array_equal(got.normals, single.normals)
    assert not np.array_equal(batch[0].rgba, batch[1].rgba)


def test_concurrent_renders_match_sequential_ones():
    # The service shares one renderer (and the module's ray cache) across request threads.
    from concurrent.futures import ThreadPoolExecutor

    verts, faces, uvs = uv_sphere()
    renderer = MeshRenderer(faces, uvs, checker_texture())
    cams = [Camera.orbit(yaw, 0, radius=1.1, width=96 + 8 * i, height=96)
            for i, yaw in enumerate(range(-60, 61, 20))]
    expected = [renderer.render(verts, cam).rgba for cam in cams]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda cam: renderer.render(verts, cam).rgba, cams * 3))
    for i, rgba in enumerate(got):
        np.testing.assert_array_equal(rgba, expected[i % len(cams)])


def test_set_texture_and_rgba_texture_alpha():
    verts, faces, uvs = quad()
    renderer = MeshRenderer(faces, uvs, flat_texture(RED))
    renderer.set_texture(flat_texture((0, 0, 255, 128), size=16))
    out = renderer.render(verts, front_camera())
    assert tuple(out.rgba[SIZE // 2, SIZE // 2]) == (0, 0, 255, 128)


def test_background_composite():
    verts, faces, uvs = quad(half=0.05, angle_deg=20)
    renderer = MeshRenderer(faces, uvs, flat_texture((255, 255, 255)))
    cam = front_camera()
    plain = renderer.render(verts, cam)
    out = renderer.render(verts, cam, background=np.array([0, 0, 0], np.uint8))
    assert (out.rgba[..., 3] == 255).all()
    # White over black: the grey level equals the coverage.
    np.testing.assert_allclose(out.rgba[..., 0].astype(int), plain.rgba[..., 3].astype(int), atol=1)
    np.testing.assert_array_equal(out.depth, plain.depth)


def test_shading_darkens_grazing_surfaces_only_when_enabled():
    verts, faces, uvs = uv_sphere()
    cam = front_camera(size=128)
    tex = flat_texture((200, 200, 200))
    unlit = MeshRenderer(faces, uvs, tex).render(verts, cam).rgba
    lit = MeshRenderer(faces, uvs, tex, shading=1.0).render(verts, cam).rgba
    opaque = unlit[..., 3] == 255
    assert (unlit[opaque][:, :3] == 200).all()
    assert lit[64, 64, 0] >= 198
    assert lit[64, 64 + 50, 0] < 150   # near the rim the surface turns away from the light


def test_vertices_behind_the_camera():
    # A floor reaching behind the camera: the screen box is meaningless, the whole frame
    # is cast. The bottom-centre pixel sees the floor at depth 0.1 * f / (row offset).
    floor_y = -0.1
    verts = np.array([[-5, floor_y, 5], [5, floor_y, 5], [5, floor_y, -5], [-5, floor_y, -5]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uvs = np.zeros((2, 3, 2))
    cam = front_camera()
    out = MeshRenderer(faces, uvs, flat_texture(RED)).render(verts, cam)
    row = SIZE - 1
    expected = -floor_y * cam.focal_px / (row + 0.5 - SIZE / 2)
    assert out.depth[row, SIZE // 2] == pytest.approx(expected, rel=1e-4)
    assert out.rgba[0, SIZE // 2, 3] == 0   # the top row sees the sky
    # Entirely behind: nothing.
    behind = MeshRenderer(faces, uvs, flat_texture(RED)).render(verts + [0, 0, 10], cam)
    assert (behind.rgba == 0).all()


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize("kwargs, message", [
    ({"faces": np.zeros((2, 4), int)}, "faces must have shape"),
    ({"faces": np.zeros((2, 3), float)}, "faces must be integers"),
    ({"face_uvs": np.zeros((2, 3, 3))}, "face_uvs must have shape"),
    ({"face_uvs": np.zeros((3, 3, 2))}, "face_uvs must have shape"),
    ({"texture": np.zeros((8, 8), np.uint8)}, "texture must have shape"),
    ({"texture": np.zeros((8, 8, 5), np.uint8)}, "texture must have shape"),
    ({"texture": np.zeros((8, 8, 3), np.float32)}, "texture must be uint8"),
    ({"aa_samples": 3}, "aa_samples must be one of"),
    ({"shading": 2.0}, "shading must be in"),
])
def test_bad_constructor_arguments(kwargs, message):
    _verts, faces, uvs = quad()
    args = {"faces": faces, "face_uvs": uvs, "texture": checker_texture()}
    extra = {k: kwargs.pop(k) for k in ("aa_samples", "shading") if k in kwargs}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        MeshRenderer(args["faces"], args["face_uvs"], args["texture"], **extra)


def test_bad_render_arguments():
    verts, faces, uvs = quad()
    renderer = MeshRenderer(faces, uvs, checker_texture())
    cam = front_camera()
    with pytest.raises(ValueError, match=r"vertices must have shape \[V, 3\]"):
        renderer.render(verts[:, :2], cam)
    with pytest.raises(ValueError, match="only 3 vertices"):
        renderer.render(verts[:3], cam)
    with pytest.raises(ValueError, match="finite"):
        renderer.render(verts * np.nan, cam)
    with pytest.raises(ValueError, match="background must be"):
        renderer.render(verts, cam, background=np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="one camera per vertex array"):
        renderer.render_batch([verts, verts], [cam])
    with pytest.raises(ValueError, match="texture must have shape"):
        renderer.set_texture(np.zeros((4, 4), np.uint8))


# ------------------------------------------------- scan conversion vs one ray per pixel


def _compare(new: RenderOutput, ref: RenderOutput) -> dict[str, float]:
    """Differences of a render against the reference (one ray per pixel centre)."""
    d = np.abs(new.rgba.astype(int) - ref.rgba.astype(int))
    hit_new, hit_ref = np.isfinite(new.depth), np.isfinite(ref.depth)
    both = hit_new & hit_ref
    normal_off = np.abs(new.normals - ref.normals).max(axis=-1)[both]
    return {
        "rgba_max": int(d.max()), "rgba_mean": float(d.mean()),
        "px_off": float((d.max(axis=-1) > 2).mean()),   # pixels differing by more than rounding
        "coverage_off": int((hit_new != hit_ref).sum()),
        "depth_median": float(np.median(np.abs(new.depth[both] - ref.depth[both]))),
        "depth_big": float((np.abs(new.depth[both] - ref.depth[both]) > 1e-4).mean()),
        "normals_off": float((normal_off > 1e-3).mean()),
    }


def _head_scene():
    from avatar_runtime.head.model import load_head_model

    head = load_head_model()
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    expression = np.zeros(52, np.float32)
    expression[[17, 23, 24]] = 0.6   # jawOpen, smiles: lips apart, mouth interior visible
    return head.shape(None, expression), head.faces, head.face_uvs, texture


@pytest.mark.parametrize("yaw, pitch, size", [(0, 0, 256), (35, 10, 200), (-80, -20, 256),
                                              (180, 30, 160), (10, -50, 256)])
def test_raster_matches_one_ray_per_pixel_on_the_head(yaw, pitch, size):
    verts, faces, uvs, texture = _head_scene()
    cam = Camera.orbit(yaw, pitch, width=size, height=size)
    ref = MeshRenderer(faces, uvs, texture, aa_samples=4, visibility="raycast").render(verts, cam)
    new = MeshRenderer(faces, uvs, texture, aa_samples=4).render(verts, cam)
    diff = _compare(new, ref)
    assert diff["coverage_off"] <= 2, diff
    assert diff["rgba_mean"] < 0.02, diff
    # cv2.remap snaps texel coordinates to 1/32 texel: where the two modes' coordinates
    # (equal to ~1e-5 texel) straddle a step, this noise texture (up to 255 levels per
    # texel) moves by up to ~8 levels. Such pixels are rare.
    assert diff["px_off"] < 2e-3, diff
    assert diff["depth_median"] < 1e-6 and diff["depth_big"] < 2e-4, diff
    assert diff["normals_off"] < 5e-4, diff
    # Silhouettes stay anti-aliased.
    alpha = new.rgba[..., 3]
    assert ((alpha > 0) & (alpha < 255)).sum() > 100


@pytest.mark.parametrize("scene", ["checker", "slanted", "occlusion", "sphere", "flipped",
                                   "degenerate"])
def test_raster_matches_one_ray_per_pixel_on_simple_scenes(scene):
    cam = front_camera()
    tex = checker_texture()
    if scene == "checker":
        verts, faces, uvs = quad()
    elif scene == "slanted":
        verts, faces, uvs = quad(half=0.05, angle_deg=20)
    elif scene == "occlusion":
        front, faces, uvs = quad(half=0.03, centre=(0, 0, 0.2), angle_deg=20)
        back, _, _ = quad(half=0.09)
        verts, faces, uvs = np.concatenate([front, back]), np.concatenate([faces, faces + 4]), \
            np.concatenate([uvs, uvs])
    elif scene == "sphere":
        verts, faces, uvs = uv_sphere()
        cam = Camera.orbit(30, 20, radius=1.0, width=SIZE, height=SIZE, target=(0, 0, 0))
    elif scene == "flipped":
        verts, faces, uvs = quad()
        faces, uvs = faces[:, ::-1].copy(), uvs[:, ::-1].copy()
    else:
        # A quad plus triangles of zero area (a repeated corner, three points on a line)
        # and a sliver seen edge-on in front of it.
        verts, faces, uvs = quad()
        extra = np.array([[0.0, 0.0, 0.1], [0.05, 0.0, 0.1], [0.02, 0.0, 0.1],
                          [-0.05, 0.03, 0.2], [0.05, 0.03, 0.2], [0.0, 0.0300001, 0.3]])
        verts = np.concatenate([verts, extra])
        faces = np.concatenate([faces, [[4, 4, 5], [4, 5, 6], [7, 8, 9]]])
        uvs = np.concatenate([uvs, np.full((3, 3, 2), 0.3)])
    ref = MeshRenderer(faces, uvs, tex, visibility="raycast").render(verts, cam)
    new = MeshRenderer(faces, uvs, tex).render(verts, cam)
    diff = _compare(new, ref)
    assert diff["coverage_off"] == 0 and diff["px_off"] == 0, diff
    assert diff["rgba_max"] <= 1 and diff["depth_median"] < 1e-6, diff


def test_raster_sees_the_inside_of_an_open_mesh():
    # A hemisphere cup opening toward the camera: the inner (back-facing) side is what
    # shows, and its depth is the far wall's.
    verts, faces, uvs = uv_sphere(resolution=40)
    keep = (verts[faces][:, :, 2] < 1e-9).all(axis=1)      # the half away from the camera
    faces, uvs = faces[keep], uvs[keep]
    cam = front_camera(size=96)
    ref = MeshRenderer(faces, uvs, flat_texture(RED), visibility="raycast").render(verts, cam)
    new = MeshRenderer(faces, uvs, flat_texture(RED)).render(verts, cam)
    assert new.depth[48, 48] == pytest.approx(DIST + 0.1, abs=1e-3)
    diff = _compare(new, ref)
    assert diff["coverage_off"] == 0 and diff["rgba_max"] <= 1, diff


def test_raster_result_does_not_depend_on_the_previous_frame():
    # The faces seen last frame are scanned first (a speed hint): any hint, stale or
    # wrong, gives the same image.
    verts, faces, uvs, texture = _head_scene()
    cam = Camera.orbit(20, 5, width=128, height=128)
    renderer = MeshRenderer(faces, uvs, texture, aa_samples=4)
    fresh = renderer.render(verts, cam)
    for hint in (np.zeros(len(faces), bool), np.ones(len(faces), bool),
                 np.random.default_rng(0).random(len(faces)) < 0.5, ~renderer._seen):
        renderer._seen = hint
        again = renderer.render(verts, cam)
        np.testing.assert_array_equal(again.rgba, fresh.rgba)
        np.testing.assert_array_equal(again.depth, fresh.depth)
        np.testing.assert_array_equal(again.normals, fresh.normals)


def test_spans_behind_the_z_buffer_are_skipped_only_where_they_lose():
    # A coarse cap of large triangles 3 mm over the top of a sphere (hair over a scalp).
    # Faces not in the hint are scanned second, and their spans that lie behind the
    # z-buffer at every pixel are skipped: with half the faces hinted at random, visible
    # faces come second too, and the image still equals one ray per pixel.
    inner, inner_faces, inner_uvs = uv_sphere()
    outer, outer_faces, outer_uvs = uv_sphere(radius=0.103, resolution=8)
    cap = (outer[outer_faces][:, :, 1] > 0.02).all(axis=1)
    verts = np.concatenate([inner, outer])
    faces = np.concatenate([inner_faces, outer_faces[cap] + len(inner)])
    uvs = np.concatenate([inner_uvs, outer_uvs[cap]])
    cam = Camera.orbit(20, 25, radius=1.0, width=SIZE, height=SIZE, target=(0, 0, 0))
    ref = MeshRenderer(faces, uvs, checker_texture(), visibility="raycast").render(verts, cam)
    renderer = MeshRenderer(faces, uvs, checker_texture())
    rng = np.random.default_rng(0)
    for _ in range(3):
        renderer._seen = rng.random(len(faces)) < 0.5
        diff = _compare(renderer.render(verts, cam), ref)
        assert diff["coverage_off"] == 0 and diff["px_off"] == 0, diff
        assert diff["rgba_max"] <= 1 and diff["depth_median"] < 1e-6, diff


def test_scan_conversion_covers_each_centre_once_along_shared_edges():
    # Two triangles sharing a diagonal that passes exactly through pixel centres, and a
    # vertical edge exactly on a column of centres: every centre of the square belongs to
    # exactly one triangle (no cracks, no double hits), whichever order they come in.
    from avatar_runtime.render.raster import rasterize

    x = np.array([[2.5, 2.5], [10.5, 10.5], [10.5, 2.5]])   # corners [3, F]
    y = np.array([[2.5, 2.5], [2.5, 10.5], [10.5, 10.5]])
    q = np.ones((3, 2))
    for first in (None, np.array([True, False]), np.array([False, True])):
        vis = rasterize(x, y, q, 16, 16, first=first)
        covered = vis.face < 2
        rows, cols = np.nonzero(covered)
        # Half-open: centres (c + 0.5, r + 0.5) with 2.5 <= x < 10.5 and 2.5 <= y < 10.5.
        assert covered.sum() == 8 * 8
        assert rows.min() == 2 and rows.max() == 9 and cols.min() == 2 and cols.max() == 9
        # The diagonal x == y goes to exactly one side.
        diagonal = vis.face[np.arange(2, 10), np.arange(2, 10)]
        assert len(set(diagonal.tolist())) == 1
        np.testing.assert_allclose(vis.inv_depth[covered], 1.0)


def test_visibility_modes_are_checked():
    _verts, faces, uvs = quad()
    with pytest.raises(ValueError, match="visibility must be one of"):
        MeshRenderer(faces, uvs, checker_texture(), visibility="zbuffer")


def test_edge_rays_against_nearby_triangles_match_the_whole_mesh(monkeypatch):
    # Sub-pixel rays are cast against only the triangles whose screen boxes reach an edge
    # pixel; casting them against every triangle must give the very same image.
    verts, faces, uvs, texture = _head_scene()
    cam = Camera.orbit(-30, 15, width=160, height=160)
    renderer = MeshRenderer(faces, uvs, texture, aa_samples=8)
    subset = renderer.render(verts, cam)
    monkeypatch.setattr(MeshRenderer, "_edge_scene", lambda self, full, edges, bounds: full)
    whole = renderer.render(verts, cam)
    np.testing.assert_array_equal(subset.rgba, whole.rgba)
    np.testing.assert_array_equal(subset.depth, whole.depth)
    np.testing.assert_array_equal(subset.normals, whole.normals)


def test_texel_lookups_far_outside_the_texture_take_the_edge_and_do_not_crash():
    """A sliver triangle's plane can put texel coordinates anywhere (1e30, nan): remap's
    fixed-point maths must never see them; clamp-to-edge gives the border texel."""
    from avatar_runtime.render.mesh_renderer import _remap_flat

    texture = np.zeros((4, 4, 4), np.uint8)
    texture[:, 0] = (10, 20, 30, 255)     # left column
    texture[:, -1] = (200, 100, 50, 255)  # right column
    texel = np.array([[-1e30 + 1.5j, 1e30 + 1.5j, complex(np.nan, 1.5), 3.0 + 1e38j]], np.complex64)
    out = _remap_flat(texture, texel)
    assert out[0, 0].tolist() == [10, 20, 30, 255] and out[0, 1].tolist() == [200, 100, 50, 255]
    assert out[0, 2].tolist() == [10, 20, 30, 255] and out[0, 3].tolist() == [200, 100, 50, 255]
