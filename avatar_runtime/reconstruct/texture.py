"""Bake a photo into the head's UV texture.

Visible texels take the photo's colour by projection, with a ray-cast depth test and a
grazing-angle falloff on smooth (vertex) normals; hidden skin texels blend in their
left/right mirror twin; what is still empty is filled from the seen border by inpainting
at low resolution, fading with distance into a tone prior: the hair colour on the scalp
and the skin colour elsewhere, both read from what the photo shows of them (a bald head
gets skin on the scalp). Eyeballs, teeth and tongue are painted (`face_parts`), not baked.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import open3d as o3d
from scipy.sparse import csr_matrix

from ..head.model import HeadModel
from ..render.camera import Camera
from .face_parts import DEFAULT_IRIS, mouth_cavity, part_colours


@dataclass(frozen=True)
class TexelMap:
    """Which surface point each texel of a T x T atlas shows."""

    size: int
    texels: np.ndarray       # [N] flat indices of covered texels
    triangles: np.ndarray    # [N] triangle under each covered texel
    barycentric: np.ndarray  # [N, 3]
    twin: np.ndarray         # [N] index (into texels) of the mirror-image texel, -1 if none
    scalp: np.ndarray        # [N] in [0, 1]: how surely the texel lies where hair usually grows
    surface: object          # sparse [N, V]: texel value = surface @ per-vertex values


@lru_cache(maxsize=2)
def texel_map(head: HeadModel, size: int) -> TexelMap:
    """Rasterise the UV layout by casting one orthographic ray per texel (open3d)."""
    texels, tri, bary = uv_texels(head.face_uvs, size)
    points = (head.template[head.faces[tri]] * bary[..., None]).sum(1)
    surface = csr_matrix((bary.ravel(), head.faces[tri].ravel(), np.arange(0, 3 * len(tri) + 1, 3)),
                         shape=(len(tri), head.num_vertices))
    return TexelMap(size, texels, tri, bary, _mirror_texels(head, size, texels, tri, bary),
                    _scalp(points) * (head.part_labels[head.faces[tri, 0]] == 0), surface)


def uv_texels(face_uvs: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The texels of a size x size atlas that the UV layout face_uvs [F, 3, 2] covers: flat
    indices [N] (row 0 = top = v 1), the triangle under each [N], its barycentrics [N, 3]."""
    uvs = face_uvs.reshape(-1, 2)
    flat = np.concatenate([uvs, np.zeros((len(uvs), 1))], 1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(flat),
                        o3d.core.Tensor(np.arange(len(uvs), dtype=np.uint32).reshape(-1, 3)))
    u = (np.arange(size) + 0.5) / size
    gu, gv = np.meshgrid(u, 1.0 - u)  # row 0 = top = v 1
    rays = np.zeros((size, size, 6), np.float32)
    rays[..., 0], rays[..., 1], rays[..., 2], rays[..., 5] = gu, gv, 1.0, -1.0
    hit = {k: v.numpy() for k, v in scene.cast_rays(o3d.core.Tensor(rays)).items()}
    covered = np.isfinite(hit["t_hit"]).ravel()
    texels = np.flatnonzero(covered)
    tri = hit["primitive_ids"].ravel()[texels].astype(np.int64)
    a, b = hit["primitive_uvs"].reshape(-1, 2)[texels].T
    bary = np.stack([1 - a - b, a, b], 1).astype(np.float32)
    return texels, tri, bary


# A typical hairline on the neutral template (metres; +Y up, the face toward +Z): height
# of the hair's lower edge by depth, from the nape up over the ears to the forehead.
HAIRLINE_Z = (-0.10, -0.04, 0.03, 0.08)
HAIRLINE_Y = (-0.07, -0.03, 0.02, 0.05)


def _scalp(points: np.ndarray) -> np.ndarray:
    """[N] 1 above the hairline, 0 below, with a 1.5 cm soft edge."""
    line = np.interp(points[:, 2], HAIRLINE_Z, HAIRLINE_Y)
    return np.clip((points[:, 1] - line) / 0.015 + 0.5, 0.0, 1.0).astype(np.float32)


def _mirror_texels(head, size, texels, tri, bary) -> np.ndarray:
    """For each covered texel, the covered texel at the mirror-image surface point."""
    lookup = {tuple(sorted(f)): i for i, f in enumerate(head.faces.tolist())}
    twin_face = np.full(len(head.faces), -1)
    order = np.zeros((len(head.faces), 3), np.int64)
    for i, f in enumerate(head.faces):
        m = head.mirror[f]
        j = lookup.get(tuple(sorted(m.tolist()))) if (m >= 0).all() else None
        if j is not None:
            twin_face[i] = j
            order[i] = [list(head.faces[j]).index(v) for v in m]
    ok = twin_face[tri] >= 0
    out = np.full(len(texels), -1)
    j = twin_face[tri[ok]]
    uv = np.zeros((ok.sum(), 2))
    for corner in range(3):  # corner k of tri maps to corner order[k] of its twin
        uv += bary[ok, corner, None] * head.face_uvs[j, order[tri[ok], corner]]
    col = np.clip((uv[:, 0] * size).astype(int), 0, size - 1)
    row = np.clip(((1 - uv[:, 1]) * size).astype(int), 0, size - 1)
    position = np.full(size * size, -1)
    position[texels] = np.arange(len(texels))
    out[ok] = position[row * size + col]
    return out


def bake_texture(head: HeadModel, vertices: np.ndarray, photo: np.ndarray, camera: Camera,
                 matte: np.ndarray | None = None, size: int = 1024,
                 iris: np.ndarray | None = None) -> np.ndarray:
    """Project `photo` [H, W, 3] onto the head placed at `vertices` [V, 3] -> [size, size, 3] uint8.

    iris [3]: the RGB the painted irises take (see `face_parts.iris_colour`).
    """
    colours, weight = view_colours(head, vertices, photo, camera, matte, size)
    return finish_texture(head, size, colours, weight, iris)


def bake_views(head: HeadModel, views: list[tuple[np.ndarray, np.ndarray, Camera, np.ndarray | None]],
               size: int = 1024, iris: np.ndarray | None = None) -> np.ndarray:
    """One texture from several views [(vertices, photo, camera, matte)], the first the
    main one: each texel takes the views that see it, weighted by visibility to the fourth
    power (the most head-on view dominates, so misaligned views do not ghost), after each
    view's colours are matched to the main view's on the texels both see well (per-channel
    gain: shots differ in exposure and white balance). Weighting views by how neutral they
    look was tried and measured worse on held-out frames (bench_fewshot)."""
    seen = [view_colours(head, v, photo, camera, matte, size) for v, photo, camera, matte in views]
    main_colours, main_weight = seen[0]
    total_w = np.zeros(len(main_weight), np.float64)
    total_c = np.zeros((len(main_weight), 3), np.float64)
    for colours, weight in seen:
        both = (weight > 0.6) & (main_weight > 0.6)
        if both.sum() > 200:
            gain = np.median(main_colours[both], 0) / np.maximum(np.median(colours[both], 0), 1.0)
            colours = colours * np.clip(gain, 0.7, 1.4)
        w = weight.astype(np.float64) ** 4
        total_w += w
        total_c += colours * w[:, None]
    colours = (total_c / np.maximum(total_w, 1e-12)[:, None]).astype(np.float32)
    weight = np.max([w for _, w in seen], axis=0)
    return finish_texture(head, size, colours, weight, iris)


def view_colours(head: HeadModel, vertices: np.ndarray, photo: np.ndarray, camera: Camera,
                 matte: np.ndarray | None, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(colours [N, 3], weight [N] in [0, 1]) per covered texel: what `photo` shows of the
    head placed at `vertices`, and how well it sees each texel."""
    tm = texel_map(head, size)
    points = tm.surface @ vertices.astype(np.float64)
    # Smooth normals: flat ones make the grazing falloff step from triangle to triangle.
    normals = tm.surface @ _vertex_normals(vertices, head.faces)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    pixels, _ = camera.project(points)
    weight = _feather(tm, head, _visibility(head, vertices, points, normals, camera, pixels, matte))
    colours = np.zeros((len(points), 3), np.float32)
    seen = weight > 0
    colours[seen] = _sample(photo, pixels[seen])
    return colours, weight


def finish_texture(head: HeadModel, size: int, colours: np.ndarray, weight: np.ndarray,
                   iris: np.ndarray | None = None) -> np.ndarray:
    """The atlas from seen texel colours [N, 3] and weights [N]: eyes, teeth and tongue
    painted, the mirror twin where a texel was seen poorly, the fill where not at all."""
    tm = texel_map(head, size)
    colours, weight = colours.copy(), weight.copy()
    # Eyeballs, teeth and tongue: painted whatever the photo shows there (a photo's iris
    # baked onto a turning eyeball would stare one way; its teeth are often hidden).
    parts, painted = _painted_parts(head, tm, DEFAULT_IRIS if iris is None else iris)
    weight[parts], colours[parts] = 1.0, painted

    # A texel seen poorly (weight under 0.5) takes in its mirror twin as far as the twin
    # was seen: a soft hand-over, no edge where one side takes over, and a well-seen texel
    # keeps its own shading (faces are lit asymmetrically).
    has_twin = tm.twin >= 0
    own, twin = weight[has_twin], weight[tm.twin[has_twin]]
    share = np.clip(1 - own / 0.5, 0, 1) * twin
    total = own + share
    blended = (colours[has_twin] * own[:, None] + colours[tm.twin[has_twin]] * share[:, None])
    colours[has_twin] = blended / np.maximum(total, 1e-6)[:, None]
    weight[has_twin] = total
    return _fill(head, tm, colours, weight, _tone_prior(tm, colours, weight))


def current_texture(head: HeadModel, texture: np.ndarray, meta: dict) -> np.ndarray:
    """An avatar's texture [T, T, 3] for this head model: one baked for an older head
    (fewer vertices in meta["head_vertices"]: before eyes, teeth and mouth were painted)
    gets them painted in, with the default iris colour."""
    if meta.get("head_vertices", head.num_vertices) >= head.num_vertices:
        return texture
    tm = texel_map(head, texture.shape[0])
    rows, colours = _painted_parts(head, tm, DEFAULT_IRIS)
    out = texture.reshape(-1, 3).copy()
    out[tm.texels[rows]] = np.clip(colours, 0, 255).astype(np.uint8)
    return out.reshape(texture.shape)


def _painted_parts(head: HeadModel, tm: TexelMap, iris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(texel indices [M] on eyes/teeth/tongue/mouth cavity, their colours [M, 3])."""
    corners = head.faces[tm.triangles]
    rows = np.flatnonzero((head.part_labels[corners[:, 0]] != 0) | mouth_cavity(head)[corners].all(1))
    points = tm.surface[rows] @ head.template.astype(np.float64)
    painted, colours = part_colours(head, points, tm.triangles[rows], iris)
    return rows[painted], colours[painted]


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[V, 3] area-weighted vertex normals (not normalised)."""
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    n = len(vertices)
    return np.stack([np.bincount(faces.ravel(), np.repeat(face_normals[:, c], 3), n)
                     for c in range(3)], 1)


def _visibility(head, vertices, points, normals, camera, pixels, matte) -> np.ndarray:
    """[N] blend weight in [0, 1]: facing the camera, unoccluded, inside the image and matte."""
    to_camera = camera.position - points
    dist = np.linalg.norm(to_camera, axis=1)
    facing = (normals * to_camera).sum(1) / dist
    h, w = camera.height, camera.width
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < w - 1) & (pixels[:, 1] >= 0) & (pixels[:, 1] < h - 1)
    # Grazing texels stretch a few pixels over much surface: they fade out from 72 deg on.
    weight = np.clip((facing - 0.05) / 0.25, 0.0, 1.0) * inside
    candidates = np.flatnonzero(weight > 0)  # only these need the occlusion test
    weight[candidates[hidden(camera, points[candidates], vertices, head.faces, 2e-3)]] = 0.0
    if matte is not None:
        seen = np.flatnonzero(weight > 0)
        weight[seen] *= np.clip(_sample(matte[..., None], pixels[seen])[:, 0] * 2 - 0.5, 0, 1)
    return weight.astype(np.float32)


def hidden(camera: Camera, points: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
           margin: float) -> np.ndarray:
    """[N] bool: the mesh (vertices, faces) meets the ray from the camera to each of
    `points` [N, 3] more than `margin` metres before the point (something is in front)."""
    to_point = points - camera.position
    dist = np.linalg.norm(to_point, axis=1)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(faces).astype(np.uint32)))
    dirs = to_point / dist[:, None]
    rays = np.concatenate([np.broadcast_to(camera.position, dirs.shape), dirs], 1).astype(np.float32)
    return scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy() <= dist - margin


def _feather(tm: TexelMap, head: HeadModel, weight: np.ndarray, rings: int = 2) -> np.ndarray:
    """[N] `weight` ramped down toward its hard edges (occlusion by the nose, the matte's and
    a hand's outline) over `rings` mesh edges: the photo hands over to the fill softly
    instead of in a seam down the cheek."""
    counts = np.asarray(tm.surface.sum(0)).ravel()
    vertex = (tm.surface.T @ weight.astype(np.float64)) / np.maximum(counts, 1e-9)
    smooth = _neighbour_mean(head)
    for _ in range(rings):
        vertex = smooth @ vertex
    return np.minimum(weight, tm.surface @ vertex).astype(np.float32)


@lru_cache(maxsize=2)
def _neighbour_mean(head: HeadModel):
    """Sparse [V, V]: each vertex's value <- the mean over itself and its mesh neighbours."""
    from scipy.sparse import coo_matrix, diags, identity

    faces, n = head.faces, head.num_vertices
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    adjacency = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64) + identity(n)
    return (diags(1.0 / np.asarray(adjacency.sum(1)).ravel()) @ adjacency).tocsr()


def _sample(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Bilinear lookup of `image` [H, W, C] at pixel coords [N, 2] -> [N, C] float32."""
    n, width = len(pixels), 1024  # cv2.remap maps must stay under 32k rows
    if n == 0:  # cv2.remap refuses empty maps
        return np.zeros((0, image.shape[2] if image.ndim == 3 else 1), np.float32)
    xy = np.zeros((-(-n // width) * width, 2), np.float32)
    xy[:n] = pixels - 0.5  # pixel centres sit at +0.5
    grid = xy.reshape(-1, width, 2)
    out = cv2.remap(image.astype(np.float32), grid[..., 0], grid[..., 1], cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, image.shape[2] if image.ndim == 3 else 1)[:n]


def _tone_prior(tm: TexelMap, colours: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hair, skin) colours [3]: the medians of the well-seen texels of each kind; skin
    for both when too little scalp was seen (a bald head gets skin on the scalp)."""
    seen = weight > 0.7
    skin_seen = seen & (tm.scalp < 0.1)
    skin = np.median(colours[skin_seen], 0) if skin_seen.sum() > 100 else np.array([180.0, 140, 120])
    hair_seen = seen & (tm.scalp > 0.9)
    hair = np.median(colours[hair_seen], 0) if hair_seen.sum() > 100 else skin
    return hair, skin


def _fill(head: HeadModel, tm: TexelMap, colours: np.ndarray, weight: np.ndarray,
          tones: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Blend seen colours over a fill made on the mesh, so it is continuous across UV
    seams: seen colour is splatted to the vertices, spread by a harmonic (membrane) fill
    that relaxes into the hair/skin tone prior away from what was seen, and interpolated
    back to the texels. Texels between UV islands get the nearest colour (no black bleeds
    in when the texture is filtered)."""
    splat = tm.surface.T                                               # [V, N]
    known_w = splat @ weight.astype(np.float64)
    known_c = (splat @ (colours * weight[:, None])) / np.maximum(known_w, 1e-6)[:, None]
    hair, skin = tones
    scalp = _scalp(head.template)[:, None] * (head.part_labels == 0)[:, None]
    prior = scalp * hair + (1 - scalp) * skin
    # The membrane spreads the seen colours' difference from the prior, so far from the
    # seen region the prior comes back with its own sharp hairline.
    vertex = prior + _membrane(head.faces, known_c - prior, np.minimum(known_w / 4.0, 1.0))
    fill = tm.surface @ vertex

    size = tm.size
    seen = weight[:, None]
    atlas = np.zeros((size * size, 3), np.float32)
    atlas[tm.texels] = colours * seen + fill * (1 - seen)
    atlas = atlas.reshape(size, size, 3)
    covered = np.zeros(size * size, np.uint8)
    covered[tm.texels] = 1
    gutters = _dilate(atlas, covered.reshape(size, size))
    return np.clip(np.where(covered.reshape(size, size, 1) > 0, atlas, gutters), 0, 255).astype(np.uint8)


def _membrane(faces: np.ndarray, known: np.ndarray, confidence: np.ndarray,
              stiffness: float = 50.0, pull: float = 0.05) -> np.ndarray:
    """[V, C] values minimising sum over edges |c_i - c_j|^2 + stiffness * confidence_i
    |c_i - known_i|^2 + pull |c_i|^2: seen values held, spread smoothly, and fading to
    zero some five edges (~5 cm) away."""
    from scipy.sparse import coo_matrix, diags
    from scipy.sparse.linalg import splu

    n = len(known)
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    adjacency = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    laplacian = diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency
    data_w = stiffness * confidence + pull
    system = (laplacian + diags(data_w)).tocsc()
    rhs = (stiffness * confidence)[:, None] * known
    return splu(system).solve(rhs).astype(np.float32)


def _dilate(atlas: np.ndarray, covered: np.ndarray, small: int = 128) -> np.ndarray:
    """The atlas with its uncovered texels given the nearest covered colour (low-res)."""
    size = atlas.shape[0]
    cover = cv2.resize(covered.astype(np.float32), (small, small), interpolation=cv2.INTER_AREA)
    tint = cv2.resize(atlas * covered[..., None], (small, small), interpolation=cv2.INTER_AREA)
    tint = np.clip(tint / np.maximum(cover[..., None], 1e-6), 0, 255).astype(np.uint8)
    filled = cv2.inpaint(tint, (cover < 0.25).astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return cv2.resize(filled, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
