"""Drawing SynDFER faces: a clip's movement values in, RGB frames and motion masks out.

`data_prep.synthetic` decides *what* a clip does (class, trajectory, nuisance) and packs it into
a `ClipMotion`; this module only draws it. Every feature is a soft shape (a sigmoid of a signed
distance) evaluated on whole clips at once, shape `(T, H, W)`, so there is no per-pixel Python
loop. Each clip is drawn on its own arrays, which keeps the pixels independent of how clips are
grouped into worker tasks (and so byte-identical for a given seed).

Coordinates: the frame spans [-1, 1] on both axes, y pointing down; feature positions below are
in head coordinates (head centre at the origin, before the per-frame translation and scale).
Left/right features are drawn once on |x|.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The eight AU-like movement dimensions (FACS action units in brackets). Positive values move
# the face the way the name says; negative values the other way (brows down, lids tightened,
# lip corners down, lips pressed, ...).
DIMENSIONS: tuple[str, ...] = (
    "inner_brow_raise",  # AU1
    "brows_up_down",     # AU2 up / AU4 down and together
    "lid_opening",       # AU5 up / AU7 tightened
    "cheek_raise",       # AU6
    "lip_corners",       # AU12 up / AU15 down
    "nose_wrinkle",      # AU9
    "jaw_opening",       # AU26/27 open / AU24 pressed
    "lip_stretch",       # AU20
)
INNER_BROW, BROWS, LIDS, CHEEK, CORNERS, NOSE, JAW, STRETCH = range(8)

# Bits of a motion-mask pixel.
MASK_EXPRESSION = 1  # a muscle of the clip's expression is contracted here in this frame
MASK_TALKING = 2     # the mouth moves because the person is talking


@dataclass(frozen=True)
class ClipMotion:
    """Everything that happens in one clip, frame by frame (n = number of frames).

    `au` is what is drawn: rest + expression + drift + talking. `expression` is the part that
    carries the class; `active` says, per frame and dimension, where the expression's muscles
    are contracted (what the masks mark).
    """

    index: int                 # 0-based clip index; the clip id is index + 1
    label: int                 # canonical label 0..6
    num_frames: int
    identity_seed: int         # seeds the face's geometry and colours (`make_identity`)
    pattern: str               # "build-hold", "burst" or "none" (Neutral)
    amplitude: float           # apex amplitude (0 for Neutral)
    talking: bool
    rest: np.ndarray           # (8,) the identity's resting face
    au: np.ndarray             # (n, 8) movement values drawn
    expression: np.ndarray     # (n, 8) class-driven part of `au`
    envelope: np.ndarray       # (n,) expression intensity 0..1
    active: np.ndarray         # (n, 8) bool
    talk_on: np.ndarray        # (n,) bool, talking in this frame
    blink: np.ndarray          # (n,) lid closure 0..1
    head: np.ndarray           # (n, 3) translation x, y (frame units, frame = 2) and scale
    light: np.ndarray          # (3,) gradient cos, sin, strength
    flicker: np.ndarray        # (n,) brightness factor - 1
    noise: float               # pixel noise std (0..1 scale)
    noise_seed: int
    identity_var: float


def make_identity(identity_seed: int, variation: float = 1.0) -> dict[str, np.ndarray | float]:
    """Face geometry and colours of one identity; `variation` scales how much identities differ."""
    rng = np.random.default_rng(identity_seed)
    z = lambda scale: 1.0 + variation * scale * rng.uniform(-1.0, 1.0)  # noqa: E731
    tone = rng.uniform(0.0, 1.0)
    skin = (1 - tone) * np.array([0.38, 0.25, 0.18]) + tone * np.array([0.96, 0.80, 0.68])
    skin = np.clip(skin + variation * rng.uniform(-0.04, 0.04, 3), 0, 1)
    hair = rng.uniform(0.0, 1.0) * np.array([0.50, 0.38, 0.22]) + 0.05
    return {
        "skin": skin,
        "hair": hair,
        "brow_col": hair * 0.6,
        "lip_col": np.clip(skin * np.array([0.85, 0.50, 0.50]) + np.array([0.12, 0.0, 0.02]), 0, 1),
        "iris_col": rng.uniform(0.05, 0.45) * np.array([1.0, 0.8, 0.6]),
        "bg": rng.uniform(0.1, 0.9, 3),
        "face_w": 0.60 * z(0.08), "face_h": 0.80 * z(0.06), "hairline": -0.48 * z(0.12),
        "eye_x": 0.25 * z(0.08), "eye_y": -0.10 * z(0.25), "eye_w": 0.11 * z(0.10),
        "eye_h": 0.060 * z(0.12), "brow_y": -0.27 * z(0.10), "brow_t": 0.030 * z(0.20),
        "cheek_y": 0.17 * z(0.15), "nose_y": 0.18 * z(0.10),
        "mouth_y": 0.43 * z(0.06), "mouth_w": 0.19 * z(0.10), "lip_t": 0.024 * z(0.20),
    }


def _soft(d: np.ndarray, edge: float) -> np.ndarray:
    """Coverage of a shape from its signed distance `d` (negative inside): a sigmoid of width `edge`."""
    return 0.5 - 0.5 * np.tanh(d * (0.5 / edge))


def _ellipse_d(x, y, a, b):
    """Signed distance to an ellipse with half-axes a, b at the origin (first-order: exact at the rim)."""
    xa, yb = x / a, y / b
    return (xa * xa + yb * yb - 1.0) / (2.0 * np.sqrt((xa / a) ** 2 + (yb / b) ** 2) + 1e-6)


def _segment_d(x, y, x0, y0, x1, y1):
    """Distance to the segment (x0, y0)-(x1, y1); endpoints may be per-frame arrays."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.sqrt((x - x0 - t * dx) ** 2 + (y - y0 - t * dy) ** 2)


def _head_coords(motion: ClipMotion, size: int):
    """Frame grid g (W,), and the head coordinates of every pixel: x (T,1,W), y (T,H,1).

    Separable because the head only translates and scales (no rotation)."""
    g = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    h = motion.head.astype(np.float32)
    tx, ty, sc = h[:, 0, None, None], h[:, 1, None, None], h[:, 2, None, None]
    return g, (g[None, None, :] - tx) / sc, (g[None, :, None] - ty) / sc


class _Canvas:
    """A clip's image, channel-first (3, T, H, W) float32, and the head coordinates of its pixels.

    Features are drawn inside boxes (pixel rows and columns a head-coordinate rectangle covers in
    any frame), which keeps the cost proportional to the feature's area.
    """

    def __init__(self, motion: ClipMotion, size: int, background: np.ndarray):
        self.size = size
        self.g, self.x, self.y = _head_coords(motion, size)
        h = motion.head.astype(np.float32)
        self.tx, self.ty, self.sc = h[:, 0], h[:, 1], h[:, 2]
        self.img = np.empty((3, motion.num_frames, size, size), np.float32)
        self.img[:] = background.astype(np.float32)[:, None, None, None]

    def box(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        px = lambda v: (v + 1.0) * (self.size / 2.0)  # noqa: E731  frame coordinate -> pixels
        c0, c1 = px(np.min(x0 * self.sc + self.tx)), px(np.max(x1 * self.sc + self.tx))
        r0, r1 = px(np.min(y0 * self.sc + self.ty)), px(np.max(y1 * self.sc + self.ty))
        clamp = lambda v: int(min(max(v, 0), self.size))  # noqa: E731
        return slice(clamp(r0 - 1), clamp(r1 + 2)), slice(clamp(c0 - 1), clamp(c1 + 2))

    def coords(self, box: tuple[slice, slice]):
        return self.x[:, :, box[1]], self.y[:, box[0], :]

    def paint(self, box: tuple[slice, slice], alpha: np.ndarray, colour) -> None:
        for c in range(3):
            view = self.img[c, :, box[0], box[1]]
            view += alpha * (np.float32(colour[c]) - view)


def _geometry(motion: ClipMotion, idn: dict) -> dict[str, np.ndarray]:
    """Per-frame feature positions and sizes (each (T, 1, 1)), shared by drawing and masks."""
    v = (2.5 * np.tanh(motion.au / 2.5)).astype(np.float32)  # keep extreme faces plausible
    au = lambda k: v[:, k, None, None]  # noqa: E731
    up = 0.08 * au(BROWS)
    eh = idn["eye_h"] * (1.0 + 0.50 * au(LIDS)) * (1.0 - 0.12 * np.maximum(au(CHEEK), 0))
    return {
        "au": v[:, :, None, None],
        # brows: inner and outer ends move with AU1 and AU2/AU4; AU4 also draws them together
        "y_in": idn["brow_y"] - up - 0.07 * au(INNER_BROW),
        "y_out": idn["brow_y"] - up + 0.015 * au(INNER_BROW),
        "x_in": 0.10 + 0.025 * np.minimum(au(BROWS), 0),
        # eyes: lid opening, narrowed by the cheek raiser (AU6 also compresses the lids)
        "eh": eh,
        "cheek_y": idn["cheek_y"] - 0.08 * au(CHEEK),
        "nose_y": idn["nose_y"] - 0.045 * au(NOSE),
        # mouth: stretch (AU20) and, a little, the corners widen it; the jaw lowers it
        "mw": idn["mouth_w"] * (1.0 + 0.22 * au(STRETCH) + 0.10 * au(CORNERS)),
        "my": idn["mouth_y"] + 0.035 * au(JAW),
    }


def render_clip(motion: ClipMotion, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw a clip. Returns frames (T, size, size, 3) uint8 and masks (T, size, size) uint8 (bits)."""
    idn = make_identity(motion.identity_seed, motion.identity_var)
    geo = _geometry(motion, idn)
    au = lambda k: geo["au"][:, k]  # noqa: E731  per-frame value, broadcastable to (T,H,W)
    cv = _Canvas(motion, size, idn["bg"])
    e = 1.2 / size  # about 0.6 px: anti-aliased edges

    b = cv.box(-0.8, 0.8, -1.0, 1.0)
    x, y = cv.coords(b)
    face = _soft(_ellipse_d(x, y, idn["face_w"], idn["face_h"]), e)
    cv.paint(b, face, idn["skin"])
    cv.paint(b, face * _soft(y - idn["hairline"] - 0.25 * x * x, e), idn["hair"])
    # Cheeks: a blush that rises and deepens with the cheek raiser.
    b = cv.box(-0.6, 0.6, idn["cheek_y"] - 0.4, idn["cheek_y"] + 0.25)
    x, y = cv.coords(b)
    blob = _soft(_ellipse_d(np.abs(x) - 0.33, y - geo["cheek_y"], 0.11, 0.08), 0.03)
    cv.paint(b, blob * (0.05 + 0.5 / (1.0 + np.exp(-1.5 * au(CHEEK)))), (0.85, 0.30, 0.30))
    # Eyes, closed by blinks.
    eh = geo["eh"] * (1.0 - motion.blink.astype(np.float32)[:, None, None])
    shut = np.clip(eh / 0.012, 0.0, 1.0)  # a closed lid shows skin, not a sliver of eye
    reach = idn["eye_x"] + idn["eye_w"] + 0.02
    b = cv.box(-reach, reach, idn["eye_y"] - 0.17, idn["eye_y"] + 0.17)
    x, y = cv.coords(b)
    ex, ey = np.abs(x) - idn["eye_x"], y - idn["eye_y"]
    eye = shut * _soft(_ellipse_d(ex, ey, idn["eye_w"], np.maximum(eh, 0.006)), e)
    cv.paint(b, eye, (0.93, 0.92, 0.90))
    cv.paint(b, eye * _soft(np.sqrt(ex * ex + ey * ey) - 0.045, e), idn["iris_col"])
    # Brows.
    b = cv.box(-0.45, 0.45, idn["brow_y"] - 0.42, idn["brow_y"] + 0.32)
    x, y = cv.coords(b)
    dist = _segment_d(np.abs(x), y, geo["x_in"], geo["y_in"], 0.38, geo["y_out"])
    cv.paint(b, _soft(dist - idn["brow_t"], e), idn["brow_col"])
    # Nose: ridge, nostrils (pulled up by AU9) and wrinkle lines across the bridge.
    ny, shade = geo["nose_y"], idn["skin"] * 0.62
    b = cv.box(-0.15, 0.15, -0.1, idn["nose_y"] + 0.14)
    x, y = cv.coords(b)
    cv.paint(b, 0.45 * _soft(_segment_d(x, y, 0.0, -0.04, 0.0, ny - 0.03) - 0.018, 2 * e), shade)
    cv.paint(b, 0.8 * _soft(_ellipse_d(np.abs(x) - 0.055, y - ny, 0.03, 0.018), e), shade * 0.6)
    lines = 0.5 + 0.5 * np.cos(y * (2 * np.pi / 0.045))
    wrinkle = 0.7 / (1.0 + np.exp(-3.0 * (au(NOSE) - 0.3)))
    cv.paint(b, wrinkle * lines * _soft(_ellipse_d(x, y + 0.01, 0.11, 0.06), 2 * e), shade)
    # Mouth: corners lift (AU12) or drop (AU15); the jaw opens it (AU26) or presses the lips.
    mw, my = geo["mw"], geo["my"]
    reach = idn["mouth_w"] * 1.9 + 0.02
    b = cv.box(-reach, reach, idn["mouth_y"] - 0.32, idn["mouth_y"] + 0.25)
    x, y = cv.coords(b)
    r = np.clip((x / mw) ** 2, 0.0, 1.0)
    taper = np.sqrt(1.0 - r)
    opening = 0.065 / (1.0 + np.exp(-(2.2 * au(JAW) - 0.8))) * taper
    lip_t = idn["lip_t"] * (1.0 + 0.3 * np.tanh(au(JAW))) * (0.3 + 0.7 * taper)
    dy = np.abs(y - my + 0.13 * au(CORNERS) * r)
    inside = _soft(np.abs(x) - mw, e)
    cv.paint(b, inside * _soft(dy - opening - lip_t, e), idn["lip_col"])
    gap = np.clip((opening - 0.004) / 0.006, 0.0, 1.0)
    cv.paint(b, inside * gap * _soft(dy - opening, e), (0.12, 0.04, 0.05))

    # Lighting gradient (fixed to the frame), flicker, noise.
    lc, ls, lk = (np.float32(a) for a in motion.light)
    light = 1.0 + lk * (lc * cv.g[None, None, :] + ls * cv.g[None, :, None])  # (1, H, W)
    img = cv.img * (light * (1.0 + motion.flicker.astype(np.float32)[:, None, None]))
    if motion.noise > 0:
        # Triangular noise (sum of two uniform bytes): near-Gaussian at a sixth of the cost.
        raw = np.frombuffer(np.random.default_rng(motion.noise_seed).bytes(2 * img.size), np.uint8)
        raw = raw.reshape(2, *img.shape)
        img += (raw[0].astype(np.float32) + raw[1] - 255.0) * np.float32(motion.noise / 104.51)
    frames = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)
    return np.ascontiguousarray(frames), motion_mask(motion, size, idn, geo)


def _inside(x, y, a, b):
    return (x / a) ** 2 + (y / b) ** 2 < 1.0


def _regions(x, y, idn: dict, geo: dict) -> list:
    """Per dimension, a function giving the (T,H,W) bool region whose muscles that dimension moves.

    The regions follow the features' current positions, with a margin around them."""
    ax, mw, my = np.abs(x), geo["mw"], geo["my"]
    brow_cy = 0.5 * (geo["y_in"] + geo["y_out"])
    return [
        lambda: _inside(x, y - geo["y_in"], 0.22, 0.10),                            # inner brows
        lambda: _inside(ax - 0.24, y - brow_cy, 0.23, 0.11),                        # brows
        lambda: _inside(ax - idn["eye_x"], y - idn["eye_y"], idn["eye_w"] + 0.05,  # lids
                        geo["eh"] + 0.05),
        lambda: _inside(ax - 0.31, y - geo["cheek_y"] + 0.07, 0.17, 0.20),          # cheeks, lids
        lambda: _inside(x, y - my, mw + 0.07, 0.12),                                # lips
        lambda: _inside(x, y - 0.07, 0.14, 0.20),                                   # nose
        lambda: _inside(x, y - my - 0.03, mw + 0.07, 0.15),                         # mouth, chin
        lambda: _inside(ax - 0.8 * mw, y - my, 0.13, 0.09),                         # mouth sides
    ]


def motion_mask(motion: ClipMotion, size: int, idn: dict | None = None,
                geo: dict | None = None) -> np.ndarray:
    """Motion masks (T, size, size) uint8: MASK_EXPRESSION | MASK_TALKING bits per pixel."""
    idn = idn if idn is not None else make_identity(motion.identity_seed, motion.identity_var)
    geo = geo if geo is not None else _geometry(motion, idn)
    _, x, y = _head_coords(motion, size)
    regions = _regions(x, y, idn, geo)
    mask = np.zeros((motion.num_frames, size, size), np.uint8)
    for d in np.flatnonzero(motion.active.any(axis=0)):
        mask |= (regions[d]() & motion.active[:, d, None, None]).astype(np.uint8) * MASK_EXPRESSION
    if motion.talk_on.any():
        mouth = regions[JAW]() | regions[STRETCH]()
        mask |= (mouth & motion.talk_on[:, None, None]).astype(np.uint8) * MASK_TALKING
    return mask
