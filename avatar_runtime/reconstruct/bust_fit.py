"""Fit the hair's height and the shoulders' width to a photo, and bake the bust's texture.

Both fits match silhouettes through the photo's camera. Hair: around the head's projected
centre, per direction, how far the photo's head (hair + face) reaches beyond the bald
head's outline gives the hair's height there, in metres at the head's distance; every scalp
vertex takes the height of the direction it projects to (so the back of the head carries
the same volume as the outline beside it), where the photo shows hair or cannot see.
Shoulders: the ratio of the person matte's width to the bust's, row by row below the neck.
"""

from __future__ import annotations

import numpy as np

from ..faces.hair_matte import HairMatte
from ..head.bust import SHOULDER_KNOTS_M, BustModel
from ..head.model import SKIN, HeadModel
from ..render.camera import Camera
from ..render.mesh_renderer import MeshRenderer
from ..mesh.geometry import joined
from .texture import _membrane, _sample, _scalp, _vertex_normals, _dilate, hidden, uv_texels

ANGLE_BINS = 180
MAX_HAIR_M = 0.07     # a big afro is ~10 cm; more is a fit gone wrong
MIN_HAIR_M = 0.004    # hair lies on the scalp at least this thick
SHOULDER_RANGE = (0.7, 1.6)
BUST_TEXTURE_SIZE = 512


def _alpha(faces: np.ndarray, vertices: np.ndarray, camera: Camera) -> np.ndarray:
    """[H, W] bool coverage of a mesh through `camera` (world = the camera's frame here)."""
    renderer = MeshRenderer(faces, np.zeros((len(faces), 3, 2), np.float32),
                            np.zeros((2, 2, 3), np.uint8), aa_samples=0)
    return renderer.render(vertices, camera).rgba[..., 3] > 127


def _polar_reach(mask: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """[ANGLE_BINS] the farthest pixel of `mask` from `centre` per direction (0 if none);
    bin k spans angles 2 pi k / ANGLE_BINS from +x toward image-up."""
    ys, xs = np.nonzero(mask)
    dx, dy = xs + 0.5 - centre[0], centre[1] - (ys + 0.5)
    bins = ((np.arctan2(dy, dx) % (2 * np.pi)) / (2 * np.pi) * ANGLE_BINS).astype(int) % ANGLE_BINS
    reach = np.zeros(ANGLE_BINS)
    np.maximum.at(reach, bins, np.hypot(dx, dy))
    return reach


def fit_hair(head: HeadModel, rest: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
             camera: Camera, hair: HairMatte) -> np.ndarray:
    """[V] hair height per head vertex (metres, 0 off the hair) for the head at rest shape
    `rest` [V, 3] placed by rotation [3, 3] / translation [3] in `camera`'s frame."""
    offset = np.zeros(head.num_vertices, np.float32)
    if not hair.present:
        return offset
    placed = rest @ rotation.T + translation
    centre3 = np.asarray(translation, np.float64)             # the head's origin in the photo
    centre2 = camera.project(centre3[None])[0][0]
    metres_per_px = float(-centre3[2]) / camera.focal_px
    bald = _alpha(head.faces, placed, camera)
    grow = np.clip((_polar_reach(hair.head | bald, centre2) - _polar_reach(bald, centre2))
                   * metres_per_px, 0.0, MAX_HAIR_M)
    grow = _circular_smooth(grow)

    pixels, _ = camera.project(placed)
    dx, dy = pixels[:, 0] - centre2[0], centre2[1] - pixels[:, 1]
    bins = ((np.arctan2(dy, dx) % (2 * np.pi)) / (2 * np.pi) * ANGLE_BINS).astype(int) % ANGLE_BINS
    normals = _vertex_normals(placed, head.faces)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    facing = (normals * -placed).sum(1) / np.linalg.norm(placed, axis=1) > 0.25
    seen_hair = _sample(hair.mask.astype(np.float32)[..., None], pixels)[:, 0]
    skin = head.part_labels == SKIN
    carries = _scalp(head.template) * skin * np.where(facing, np.clip(seen_hair * 2 - 0.4, 0, 1), 1.0)
    offset = carries * np.maximum(grow[bins], MIN_HAIR_M)
    return _smooth_on_mesh(head, offset.astype(np.float32), skin)


def _circular_smooth(values: np.ndarray, width: int = 7) -> np.ndarray:
    """Median then mean over `width` neighbouring directions (wrapping around)."""
    pad = np.concatenate([values[-width:], values, values[:width]])
    windows = np.lib.stride_tricks.sliding_window_view(pad, 2 * (width // 2) + 1)
    med = np.median(windows, 1)[width - width // 2: width - width // 2 + len(values)]
    pad = np.concatenate([med[-width:], med, med[:width]])
    return np.convolve(pad, np.ones(width) / width, "same")[width:-width]


def _smooth_on_mesh(head: HeadModel, values: np.ndarray, where: np.ndarray, rounds: int = 3) -> np.ndarray:
    """A few rounds of neighbour averaging over the skin (the hair ends softly)."""
    from .texture import _neighbour_mean

    smooth = _neighbour_mean(head)
    out = values.astype(np.float64)
    for _ in range(rounds):
        out = np.where(where, smooth @ out, 0.0)
    return out.astype(np.float32)


def fit_shoulders(bust: BustModel, bust_placed: np.ndarray, camera: Camera, person: np.ndarray) -> np.ndarray:
    """[len(SHOULDER_KNOTS_M)] width scales at depths below the neck cut making the bust's
    outline match the person matte [H, W], row by row (the median ratio of widths over the
    rows at each depth; where the photo shows no rows, the nearest depth that it does;
    all 1.0 when too little of the bust is in the photo)."""
    mask = _alpha(bust.faces, bust_placed, camera)
    pixels, _ = camera.project(bust_placed)
    order = np.argsort(pixels[:, 1])
    person = person > 0.5
    depths, ratios = [], []
    for r in np.flatnonzero(mask.any(1)):
        cols = np.flatnonzero(mask[r])
        inside = np.flatnonzero(person[r])
        if len(cols) < 4 or len(inside) < 4 or cols[0] == 0 or cols[-1] == mask.shape[1] - 1:
            continue  # the bust leaves the image here: its width is not seen
        lo, hi = np.searchsorted(pixels[order, 1], [r - 2, r + 3])
        if hi - lo < 3:
            continue
        depths.append(np.median(bust.depth_below_seam[order[lo:hi]]))
        ratios.append((inside[-1] - inside[0]) / (cols[-1] - cols[0]))
    knots = np.asarray(SHOULDER_KNOTS_M)
    scales = np.full(len(knots), np.nan)
    depths, ratios = np.asarray(depths), np.asarray(ratios)
    edges = np.concatenate([[-1.0], (knots[1:] + knots[:-1]) / 2, [np.inf]])
    for k in range(len(knots)):
        sel = (depths > edges[k]) & (depths <= edges[k + 1])
        if sel.sum() >= 3:
            scales[k] = np.median(ratios[sel])
    if np.isnan(scales).all():
        return np.ones(len(knots), np.float32)
    known = np.flatnonzero(~np.isnan(scales))
    scales = scales[known[np.abs(np.arange(len(knots))[:, None] - known[None]).argmin(1)]]
    return np.clip(scales, *SHOULDER_RANGE).astype(np.float32)


def bake_bust(bust: BustModel, bust_placed: np.ndarray, occluders: tuple[np.ndarray, np.ndarray],
              photo: np.ndarray, camera: Camera, matte: np.ndarray,
              size: int = BUST_TEXTURE_SIZE) -> np.ndarray:
    """The bust's texture [size, size, 3] uint8: the photo where the bust is seen (facing
    the camera, not hidden by itself or by `occluders` = (vertices, faces), inside the
    image and the matte), a smooth fill from what was seen elsewhere."""
    from scipy.sparse import csr_matrix

    texels, tri, bary = uv_texels(bust.face_uvs, size)
    corners = bust.faces[tri]
    surface = csr_matrix((bary.ravel(), corners.ravel(), np.arange(0, 3 * len(tri) + 1, 3)),
                         shape=(len(tri), bust.num_vertices))
    points = surface @ bust_placed.astype(np.float64)
    normals = surface @ _vertex_normals(bust_placed, bust.faces)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    pixels, _ = camera.project(points)
    to_camera = camera.position - points
    dist = np.linalg.norm(to_camera, axis=1)
    h, w = photo.shape[:2]
    # Steeper than the head's falloff: clothes seen edge-on smear the collar over the shoulders.
    weight = np.clip(((normals * to_camera).sum(1) / dist - 0.3) / 0.3, 0, 1)
    weight *= (pixels[:, 0] >= 0) & (pixels[:, 0] < w - 1) & (pixels[:, 1] >= 0) & (pixels[:, 1] < h - 1)
    candidates = np.flatnonzero(weight > 0)
    weight[candidates[hidden(camera, points[candidates], *joined([(bust_placed, bust.faces), occluders]),
                             3e-3)]] = 0.0
    seen = np.flatnonzero(weight > 0)
    weight[seen] *= np.clip(_sample(matte[..., None], pixels[seen])[:, 0] * 2 - 0.5, 0, 1)

    colours = np.zeros((len(points), 3), np.float32)
    seen = weight > 0
    colours[seen] = _sample(photo, pixels[seen])
    # Unseen (the back, below the photo): the seen colours spread over the surface,
    # relaxing to their median (clothes are mostly one colour).
    splat = surface.T
    known_w = splat @ weight
    known_c = (splat @ (colours * weight[:, None])) / np.maximum(known_w, 1e-6)[:, None]
    prior = np.median(colours[weight > 0.7], 0) if (weight > 0.7).sum() > 50 else np.array([90.0, 90, 95])
    vertex = prior + _membrane(bust.faces, known_c - prior, np.minimum(known_w / 4.0, 1.0), pull=0.002)
    fill = surface @ vertex
    atlas = np.zeros((size * size, 3), np.float32)
    atlas[texels] = colours * weight[:, None] + fill * (1 - weight[:, None])
    covered = np.zeros(size * size, np.uint8)
    covered[texels] = 1
    atlas, covered = atlas.reshape(size, size, 3), covered.reshape(size, size)
    out = np.where(covered[..., None] > 0, atlas, _dilate(atlas, covered, small=64))
    return np.clip(out, 0, 255).astype(np.uint8)
