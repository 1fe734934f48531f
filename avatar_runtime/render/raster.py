"""Scanline visibility for the mesh renderer: which triangle each pixel centre sees.

The answer is the one a ray through the pixel centre gets (nearest hit), computed by
scan-converting the triangles into a z-buffer of inverse view depth. For a pinhole camera
1/depth is affine in screen coordinates over a planar triangle: each triangle's plane
gives it at a span's ends (kept within the corners' range), and it steps linearly along
the span.

Coverage follows a half-open rule on pixel centres: a centre (x, y) belongs to a triangle
when y is in [y_top, y_bottom) and x in [x_left, x_right) of its span. Every edge's
crossing x is computed from the edge's upper endpoint with the same float operations in
both triangles that share it, so a closed surface has neither cracks nor double hits
along shared edges.

Everything is vectorised: per triangle half (the parts above and below its middle
corner), per (half, row) span, then per covered pixel ("fragment"). A fragment's 64-bit
key is its inverse depth as a float64 whose lowest mantissa bits hold the triangle
index, so one `np.maximum.at` keeps the nearest triangle per pixel (positive floats
order like their bit patterns).

No triangle is culled by winding (open meshes show their insides), but most hidden
triangles never need scanning: a first set goes first (the caller's hint, typically the
triangles seen in the previous frame, or else the nearer of the two windings), and any
other triangle is skipped when the z-buffer already holds something nearer than its
nearest corner over a square covering its pixels (a min filter), and of the others each
span that is nearer nowhere than the z-buffer's farthest over its pixels (row minima):
large hidden triangles, such as the far side of a hair shell and the scalp under it,
cost spans instead of fragments. Skipping only what provably loses the depth test keeps
the result exact whatever the hint or the mesh's orientation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# A fragment key is its 1 / depth as float64 whose low 29 mantissa bits are replaced by
# the triangle index: positive floats order like their bit patterns, and 23 mantissa
# bits of depth still separate surfaces ~1e-7 of the depth apart.
FACE_BITS = 29
MAX_FACES = 1 << FACE_BITS
_FACE_MASK = np.uint64(MAX_FACES - 1)
_DEPTH_MASK = ~_FACE_MASK
# A triangle is skipped only if the z-buffer is nearer by more than this factor over
# its square: far above the rounding of keys (2^-23) and of the float32 min filter
# (2^-24), so a skipped triangle could never have won a pixel.
_CULL_MARGIN = 1e-6
# Twice the screen area (pixels^2) below which a triangle's depth plane is not solved.
_MIN_DET_PX2 = 1e-9
# Square sizes (pixels) of the quick per-triangle occlusion test.
_SQUARES = (4, 8, 16, 32)


@dataclass
class Visibility:
    """What each pixel centre of a window sees.

    face:      [h, w] intp triangle index; `n_faces` (a sentinel row) where nothing is hit.
    inv_depth: [h, w] float32 1 / view depth of the hit; 0 where nothing is hit.
    bounds:    [4, F] float64 per-triangle screen box (x_min, x_max, y_min, y_max) in
               window pixel coordinates (pixel (r, c) covers [c, c + 1] x [r, r + 1]).
    """

    face: np.ndarray
    inv_depth: np.ndarray
    bounds: np.ndarray


def rasterize(x: np.ndarray, y: np.ndarray, q: np.ndarray, height: int, width: int,
              first: np.ndarray | None = None) -> Visibility:
    """Nearest triangle per pixel centre of a height x width window.

    x, y [3, F] float64: triangle corners in window pixel coordinates (x right, y down;
    pixel (r, c) has its centre at (c + 0.5, r + 0.5)); q [3, F] float64: 1 / view depth
    at the corners, all > 0 (every corner in front of the camera); F < MAX_FACES.
    first: optional bool [F], the triangles to scan before the others (say, those seen
    in the previous frame); only speed depends on it, never the result.
    """
    n_faces = x.shape[1]
    bounds = corner_bounds(x, y)
    if first is None:
        # Without a hint, the nearer (on average) of the two windings: on a closed,
        # consistently wound surface that is the side facing the camera.
        winding = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0]) > 0
        q_sum = q[0] + q[1] + q[2]
        n_pos = np.count_nonzero(winding)
        nearer_pos = q_sum[winding].sum() * (n_faces - n_pos) >= q_sum[~winding].sum() * n_pos
        first = winding if nearer_pos else ~winding
    halves = _Halves(x, y, q, height, width)
    zbuf = np.zeros(height * width, np.uint64)
    halves.scan(np.flatnonzero(first), zbuf)
    rest = np.flatnonzero(~first)
    inv = _inverse_depths(zbuf).reshape(height, width)
    rest = rest[~_hidden_faces(inv, bounds[:, rest], corner_max(q[:, rest]))]
    halves.scan(rest, zbuf, inv)

    face = (zbuf & _FACE_MASK).astype(np.intp)
    hit = zbuf != 0
    face[~hit] = n_faces
    zbuf &= _DEPTH_MASK
    inv = zbuf.view(np.float64).astype(np.float32)
    return Visibility(face.reshape(height, width), inv.reshape(height, width), bounds)


def corner_min(a: np.ndarray) -> np.ndarray:
    """[3, F] -> [F] the smallest corner value; elementwise, as numpy's reductions over
    the 3-long axis are ~20x slower."""
    return np.minimum(np.minimum(a[0], a[1]), a[2])


def corner_max(a: np.ndarray) -> np.ndarray:
    """[3, F] -> [F] the largest corner value (see corner_min)."""
    return np.maximum(np.maximum(a[0], a[1]), a[2])


def corner_bounds(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Corners x, y [3, F] -> [4, F] screen boxes (x_min, x_max, y_min, y_max)."""
    return np.stack([corner_min(x), corner_max(x), corner_min(y), corner_max(y)])


class _Halves:
    """Per-half edge and depth parameters of every triangle, scanned into a z-buffer."""

    def __init__(self, x: np.ndarray, y: np.ndarray, q: np.ndarray, height: int, width: int):
        self.n_faces = n = x.shape[1]
        self.height, self.width = height, width
        # 1 / depth is affine in screen space over a triangle: q = a x + b y + c.
        e1x, e1y, e2x, e2y = x[1] - x[0], y[1] - y[0], x[2] - x[0], y[2] - y[0]
        det = e1x * e2y - e2x * e1y
        # A triangle of (near) zero screen area gets a flat plane at its first corner.
        inv_det = np.divide(1.0, det, out=np.zeros_like(det), where=np.abs(det) > _MIN_DET_PX2)
        d1, d2 = q[1] - q[0], q[2] - q[0]
        qa = (d1 * e2y - d2 * e1y) * inv_det
        qb = (d2 * e1x - d1 * e2x) * inv_det
        qc = q[0] - qa * x[0] - qb * y[0]
        q_lo, q_hi = corner_min(q), corner_max(q)

        x, y = x.copy(), y.copy()
        for i, j in ((0, 1), (1, 2), (0, 1)):  # sort each triangle's corners top to bottom
            swap = y[j] < y[i]
            for a in (x, y):
                lo = np.where(swap, a[j], a[i])
                a[j] = np.where(swap, a[i], a[j])
                a[i] = lo
        # Rows whose centre r + 0.5 lies in [y_a, y_b): r in [ceil(y_a - 0.5), ceil(y_b - 0.5)).
        r_top, r_mid, r_bot = np.clip(np.ceil(y - 0.5), 0, height).astype(np.intp)
        self.r0 = np.concatenate([r_top, r_mid])  # [2F]: upper halves, then lower halves
        self.n_rows = np.maximum(np.concatenate([r_mid, r_bot]) - self.r0, 0)
        # Each edge as x = x_up + (yc - y_up) * dx/dy from its upper corner: the same
        # numbers in both triangles that share it. Per half: the long edge (corner 0 to
        # 2), then the short one (0 to 1 above the middle corner, 1 to 2 below it). Per
        # face: the depth plane and the range of its corner depths.
        with np.errstate(divide="ignore", invalid="ignore"):
            def edge(i: int, j: int) -> np.ndarray:
                return np.stack([x[i], y[i], (x[j] - x[i]) / (y[j] - y[i])])
            self.edges = np.empty((6, 2 * n))
            long_edge = edge(0, 2)
            self.edges[0:3] = np.concatenate([long_edge, long_edge], axis=1)
            self.edges[3:6, :n] = edge(0, 1)
            self.edges[3:6, n:] = edge(1, 2)
        self.depth = np.stack([qa, qb, qc, q_lo, q_hi]).astype(np.float32)

    def scan(self, faces: np.ndarray, zbuf: np.ndarray, behind: np.ndarray | None = None
             ) -> None:
        """Scan-convert faces [K] (indices) into zbuf [h * w] uint64 (max of keys).

        behind [h, w]: 1 / depth of an earlier state of zbuf (see _inverse_depths); spans
        nearer nowhere than it are skipped (they would lose every depth test).
        """
        n, width = self.n_faces, self.width
        halves = np.concatenate([faces, faces + n])
        halves = halves[self.n_rows[halves] > 0]
        if len(halves) == 0:
            return
        n_rows = self.n_rows[halves]
        # Spans: one per (half, row).
        span_half = _expand(n_rows)                                   # [S] into halves
        row = _arange(len(span_half)) + np.take(self.r0[halves] - _starts(n_rows), span_half)
        span_half = np.take(halves, span_half)
        span_face = span_half % n
        e = np.take(self.edges, span_half, axis=1)                   # [6, S]
        yc = row + 0.5
        x_l = e[0] + (yc - e[1]) * e[2]
        x_s = e[3] + (yc - e[4]) * e[5]
        c0 = np.ceil(np.minimum(x_l, x_s) - 0.5)
        c1 = np.ceil(np.maximum(x_l, x_s) - 0.5)
        np.clip(c0, 0, width, out=c0)
        np.clip(c1, 0, width, out=c1)
        n_cols = np.fmax(c1 - c0, 0).astype(np.intp)           # fmax: nan -> 0
        if behind is not None:  # empty spans go too
            keep = np.flatnonzero(n_cols > 0)
            row, yc, c0, n_cols, span_face = (a[keep] for a in (row, yc, c0, n_cols, span_face))
        # 1 / depth at the first and last centres, kept within the corners' range (the
        # plane of a near-degenerate triangle is ill-conditioned), and its step.
        p = np.take(self.depth, span_face, axis=1)                   # [5, S] float32
        q_first = p[0] * (c0 + 0.5) + p[1] * yc + p[2]
        q_last = q_first + p[0] * np.maximum(n_cols - 1, 0)
        np.clip(q_first, p[3], p[4], out=q_first)
        np.clip(q_last, p[3], p[4], out=q_last)
        if behind is not None and len(n_cols):
            row_minima = _row_minima(behind, int(n_cols.max()))
            # The span's nearest point against the z-buffer's farthest over its pixels:
            # the minimum of [c0, c0 + n) is that of two overlapping runs of 2^level.
            level = np.frexp(n_cols)[1] - 1
            head_run = (level * (self.height * width) + row * width) + c0.astype(np.intp)
            tail_run = head_run + (n_cols - np.left_shift(1, level))
            farthest = np.minimum(row_minima[head_run], row_minima[tail_run])
            keep = np.flatnonzero(
                farthest <= np.maximum(q_first, q_last) * (1 + _CULL_MARGIN))
            row, c0, n_cols, span_face, q_first, q_last = (
                a[keep] for a in (row, c0, n_cols, span_face, q_first, q_last))
        dq = np.divide(q_last - q_first, n_cols - 1, out=np.zeros_like(q_first),
                       where=n_cols > 1)
        span_pixel = row * width + c0.astype(np.intp)
        # Fragments: one per covered pixel centre; fragment k of span s is pixel
        # span_pixel[s] + k - start[s] with 1 / depth q_first[s] + (k - start[s]) dq[s].
        frag_span = _expand(n_cols)
        if len(frag_span) == 0:
            return
        start = _starts(n_cols)
        k = _arange(len(frag_span))
        key = np.take(q_first - start * dq, frag_span)
        key += k * np.take(dq, frag_span)
        key = key.view(np.uint64)
        key &= _DEPTH_MASK
        key |= np.take(span_face.astype(np.uint64), frag_span)
        pixel = np.take(span_pixel - start, frag_span)
        pixel += k
        np.maximum.at(zbuf, pixel, key)


def _inverse_depths(zbuf: np.ndarray) -> np.ndarray:
    """The z-buffer's 1 / depth as float32 (0 where empty), without the face bits."""
    return (zbuf & _DEPTH_MASK).view(np.float64).astype(np.float32)


def _row_minima(inv: np.ndarray, longest: int) -> np.ndarray:
    """Flat [L * h * w] float32: level k holds the minimum of inv [h, w] over the
    pixels [c, c + 2^k) of the row (cut at its end), for 2^k up to `longest`."""
    n_levels = max(longest, 1).bit_length()
    levels = np.empty((n_levels,) + inv.shape, np.float32)
    levels[0] = inv
    for k in range(1, n_levels):
        half = 1 << (k - 1)
        levels[k] = levels[k - 1]
        np.minimum(levels[k - 1, :, :-half], levels[k - 1, :, half:], out=levels[k, :, :-half])
    return levels.ravel()


def _hidden_faces(inv: np.ndarray, bounds: np.ndarray, q_max: np.ndarray) -> np.ndarray:
    """Which triangles the z-buffer hides entirely -> bool [K], a quick partial answer.

    inv [h, w] the z-buffer's 1 / depth (see _inverse_depths), bounds [4, K] screen
    boxes, q_max [K] the largest corner 1 / depth (the nearest a
    triangle gets). A triangle whose covered pixel centres fit in an s x s square, s in
    _SQUARES, is hidden when the minimum 1 / depth over that square (a min filter) is
    larger; larger triangles are never skipped.
    """
    height, width = inv.shape
    c0 = np.clip(np.ceil(bounds[0] - 0.5), 0, width).astype(np.intp)   # centres covered:
    c1 = np.clip(np.ceil(bounds[1] - 0.5), 0, width).astype(np.intp)   # [c0, c1) x [r0, r1)
    r0 = np.clip(np.ceil(bounds[2] - 0.5), 0, height).astype(np.intp)
    r1 = np.clip(np.ceil(bounds[3] - 0.5), 0, height).astype(np.intp)
    hidden = (c1 <= c0) | (r1 <= r0)                                    # covers no centre
    side = np.where(hidden, 0, np.maximum(c1 - c0, r1 - r0))
    threshold = (q_max * (1 + _CULL_MARGIN)).astype(np.float32)
    lower = 0
    for s in _SQUARES:
        i = np.flatnonzero((side > lower) & (side <= s))
        lower = s
        if len(i) == 0:
            continue
        # Minimum over [r, r + s) x [c, c + s); outside the window counts as empty (0).
        square_min = cv2.erode(inv, np.ones((s, s), np.uint8), anchor=(0, 0),
                               borderType=cv2.BORDER_CONSTANT, borderValue=0)
        hidden[i] = square_min[r0[i], c0[i]] > threshold[i]
    return hidden


def _starts(counts: np.ndarray) -> np.ndarray:
    """Exclusive prefix sums of counts [N]."""
    return np.cumsum(counts) - counts


_ARANGE = np.arange(0)


def _arange(n: int) -> np.ndarray:
    """np.arange(n) (intp), a read-only view of a cached array that grows as needed."""
    global _ARANGE
    values = _ARANGE
    if len(values) < n:
        values = np.arange(max(n, 2 * len(values)), dtype=np.intp)
        values.flags.writeable = False
        _ARANGE = values  # one reference swap: other threads keep their own view
    return values[:n]


def _expand(counts: np.ndarray) -> np.ndarray:
    """[N] non-negative counts -> [sum] index i repeated counts[i] times (intp)."""
    return np.repeat(_arange(len(counts)), counts)
