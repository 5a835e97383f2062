"""Style families for the synthetic videos: the hard conditions of real footage, with exact truth.

The renderer (`synth_render.py`) draws one clean keyboard; a family first changes the
renderer's parameters (`restyle`: key length, body colour, lighting, hand size), then
changes what the camera sees, in layers applied to every frame:
- static paint and light, drawn once in keyboard coordinates (m: white keys from A0's
  left edge, v: key lengths from the back edge) through the truth homography. Physical
  things (a wooden body, a felt strip, a desk, a digital panel, highlights on the black
  keys) are painted under the hands; post-production (watermarks, a sheet-music banner,
  letterbox bars) over them;
- per-frame layers: a glossy fallboard mirroring the keys and hands, hand shadows,
  Synthesia-style falling-note bars and lit (coloured) pressed keys;
- a camera: one homography on the finished frame (flush or clipped framing, rotation,
  keystone, a camera on the far side, a mirrored or flipped video), then blur and JPEG
  loss. The truth quad is moved with it and keeps KEYBOARD order: 0 = A0 end back (the
  black keys' side), 1 = C8 end back, 2 = C8 end front, 3 = A0 end front.

Families (`STYLE_FAMILIES`), each randomised by the seed. Tuning uses `TUNING` with seeds
100+; the benchmark measures every family with seeds 7000+; the `HELD_OUT` families
(upright_wood, overlay) must never be run while tuning the locator, so they say how it
does on looks it was not fitted to.
- studio: the renderer's own look, unchanged (the same seed gives the same frames);
- concert_grand: Paul Barton framing (the keyboard spans the frame, flush or clipped by
  up to one white key at an end), glossy black fallboard mirroring the keys (a dimmed,
  flipped, blurred copy), black body, warm dim stage light, a lid shadow, hand shadows;
- digital: a plastic body (grey, black or white), a panel with LEDs and a logo, a music
  rest, flat light, short keys;
- oblique: keystone up to 0.25, rotation up to 12 degrees, a camera looking along the
  keyboard, sometimes the far side (`rotated`), a mirrored or a flipped video;
- upright_wood (held out): wooden body and cheek blocks, red felt along the back, a light
  desk at the key fronts, strong gradient light and a spotlight on part of the keys;
- overlay (held out): falling-note bars, coloured lit keys, a glow line, a watermark or a
  sheet-music banner, sometimes letterbox bars and a picture-in-picture inset.
All but studio: per-key tint, highlights on the black keys, often bigger hands (up to
half the keyboard covered, sometimes four hands), blur and JPEG loss.
Negatives (`NEGATIVES`, truth `full_keyboard: false`): keys61 (C2..C7), keys76 (E1..G7)
(the outer keys are body), cropped (an 88 cut by 2.5-6 white keys at an end):
`partial_keyboard`; empty (no keyboard ever in view): `no_keyboard`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from contract.piano import N_WHITE, key_layout, white_index
from synth.render import Style

TUNING = ("studio", "concert_grand", "digital", "oblique")
HELD_OUT = ("upright_wood", "overlay")
FAMILIES = TUNING + HELD_OUT
NEGATIVES = ("keys61", "keys76", "cropped", "empty")
LOOKS = FAMILIES + NEGATIVES
KEY_RANGES = {"keys61": (36, 96), "keys76": (28, 103)}  # C2..C7, E1..G7
UNIT = np.float32([[0, 0], [N_WHITE, 0], [N_WHITE, 1], [0, 1]])  # keyboard coordinates of the 88's corners


@dataclass
class Look:
    """A family drawn for one video: static layers, per-frame layers and the camera."""

    name: str
    gain: np.ndarray | None = None  # (h, w, 3) float32 multiplier
    paint: np.ndarray | None = None  # (h, w, 3) uint8, under the hands where `under`
    under: np.ndarray | None = None
    over: np.ndarray | None = None  # painted over everything (post-production)
    camera: np.ndarray = field(default_factory=lambda: np.eye(3))
    bars: list[tuple[float, float, float, tuple[int, int, int]]] = field(default_factory=list)  # m, v0, speed, colour
    lit: tuple[int, int, int] | None = None  # colour of pressed keys
    pip: bool = False
    reflect: tuple[float, float, float] | None = None  # strength, depth (key lengths), blur sigma (white keys)
    hand_shadow: tuple[float, float, float] | None = None  # strength, dx, dy (white keys)
    blur_sigma: float = 0.0
    jpeg_quality: int | None = None
    key_span: tuple[float, float] = (0.0, float(N_WHITE))  # white keys that exist (m0, m1)
    orientation: str = "normal"
    full_keyboard: bool = True
    n_keys: int = 88
    lowest_midi: int = 21
    reason: str | None = None  # partial_keyboard | no_keyboard for negatives

    @property
    def needs_hands(self) -> bool:
        return self.under is not None or self.hand_shadow is not None


class LookRenderer:
    """Applies a Look to the renderer's frames; knows where the keyboard is (`to_frame`:
    keyboard coordinates to frame pixels, before the camera)."""

    def __init__(self, look: Look, quad: np.ndarray, size: tuple[int, int]):
        self.look, self.size = look, size
        self.to_frame = cv2.getPerspectiveTransform(UNIT, np.asarray(quad, np.float32))
        self.white_px = float(np.linalg.norm(np.subtract(*_points(self.to_frame, [(1, 0.5), (0, 0.5)]))))
        self.k = 0
        if look.reflect is not None:
            self.mirror = self.to_frame @ np.diag([1.0, -1.0, 1.0]) @ np.linalg.inv(self.to_frame)
            fallboard = _polygon_mask(self.to_frame, size, 0, N_WHITE, -look.reflect[1], -0.004)
            rows = np.flatnonzero(fallboard.any(axis=1))
            self.rows = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else None
            self.fallboard = fallboard[self.rows[0]:self.rows[1]] if len(rows) else None

    def truth_quad(self, quad: np.ndarray) -> np.ndarray:
        """The existing keys' corners in the final frame, in keyboard order."""
        m0, m1 = self.look.key_span
        corners = _points(self.to_frame, [(m0, 0), (m1, 0), (m1, 1), (m0, 1)])
        return cv2.perspectiveTransform(corners.reshape(1, 4, 2).astype(np.float64), self.look.camera)[0]

    def playing(self, frame: np.ndarray, pressed: np.ndarray, hands: np.ndarray | None = None) -> np.ndarray:
        """One performance frame; `hands` is the renderer's hand mask (looks that paint
        under the hands or cast their shadows need it)."""
        look = self.look
        out = frame
        if look.under is not None:
            under = look.under & ~hands if hands is not None else look.under
            out = out.copy()
            out[under] = look.paint[under]
        if look.reflect is not None:
            out = self._reflect(out)
        if look.hand_shadow is not None and hands is not None:
            out = self._shadow(out, hands)
        if look.gain is not None:  # the light falls on the paint too
            out = cv2.multiply(out, look.gain, dtype=cv2.CV_8U)
        if look.lit is not None and pressed.any():
            self._light_keys(out, pressed)
        if look.bars:
            self._draw_bars(out)
        self.k += 1
        return self._camera(self._over(out))

    def other(self, frame: np.ndarray) -> np.ndarray:
        """Title cards and cuts: post-production and the camera only (no keyboard to paint)."""
        return self._camera(self._over(frame))

    # --- layers ------------------------------------------------------------------------
    def _over(self, frame: np.ndarray) -> np.ndarray:
        if self.look.over is None:
            return frame
        frame = frame.copy()
        frame[self.look.over] = self.look.paint[self.look.over]
        return frame

    def _reflect(self, frame: np.ndarray) -> np.ndarray:
        """The glossy fallboard: the key band (and the fingers on it) mirrored about the
        back edge, dimmed and blurred, over the fallboard's black."""
        strength, _, sigma = self.look.reflect
        if self.rows is None:
            return frame
        y0, y1 = self.rows
        band_only = np.array([[1, 0, 0], [0, 1, -y0], [0, 0, 1]], float) @ self.mirror  # only the fallboard's rows
        mirrored = cv2.warpPerspective(frame, band_only, (self.size[0], y1 - y0), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
        mirrored = cv2.GaussianBlur(mirrored, (0, 0), max(0.5, sigma * self.white_px))
        out = frame.copy()
        band = out[y0:y1]
        mask = self.fallboard
        band[mask] = np.clip(12 + strength * mirrored[mask].astype(np.float32), 0, 255).astype(np.uint8)
        return out

    def _shadow(self, frame: np.ndarray, hands: np.ndarray) -> np.ndarray:
        """Hands darken the keys beside them, offset away from the light."""
        strength, dx, dy = self.look.hand_shadow
        ys = np.flatnonzero(hands.any(axis=1))
        if not len(ys):
            return frame
        pad = int(3 * self.white_px)
        y0, y1 = max(0, int(ys[0]) - pad), min(hands.shape[0], int(ys[-1]) + pad)  # only the hands' rows
        shift = np.float32([[1, 0, dx * self.white_px], [0, 1, dy * self.white_px]])
        shadow = cv2.warpAffine(hands.astype(np.float32), shift, self.size)[y0:y1]
        shadow = cv2.GaussianBlur(shadow, (0, 0), 0.6 * self.white_px)
        shadow[hands[y0:y1]] = 0.0
        out = frame.copy()
        out[y0:y1] = np.clip(frame[y0:y1] * (1.0 - strength * shadow)[..., None], 0, 255).astype(np.uint8)
        return out

    def _polygon(self, m0: float, m1: float, v0: float, v1: float) -> np.ndarray:
        return np.round(_points(self.to_frame, [(m0, v0), (m1, v0), (m1, v1), (m0, v1)])).astype(np.int32)

    def _light_keys(self, frame: np.ndarray, pressed: np.ndarray) -> None:
        layout = key_layout()
        for i in np.flatnonzero(pressed):
            v1 = 0.63 if layout.black[i] else 1.0
            cv2.fillConvexPoly(frame, self._polygon(layout.left[i] + 0.05, layout.right[i] - 0.05, 0.02, v1), self.look.lit)

    def _draw_bars(self, frame: np.ndarray) -> None:
        for m, v0, speed, colour in self.look.bars:
            top = (v0 + speed * self.k) % 4.0 - 4.2  # falls towards the keys, then starts again
            bottom = min(top + 0.8, -0.02)
            if bottom > top:
                cv2.fillConvexPoly(frame, self._polygon(m, m + 0.8, top, bottom), colour)

    def _camera(self, frame: np.ndarray) -> np.ndarray:
        look = self.look
        if look.pip:
            h, w = frame.shape[:2]
            inset = cv2.resize(frame, (w // 5, h // 5), interpolation=cv2.INTER_AREA)
            frame = frame.copy()
            frame[8:8 + inset.shape[0], w - 8 - inset.shape[1]:w - 8] = inset
        if not np.allclose(look.camera, np.eye(3)):
            frame = cv2.warpPerspective(frame, look.camera, self.size, flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REPLICATE)
        if look.blur_sigma > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), look.blur_sigma)
        if look.jpeg_quality is not None:
            ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, look.jpeg_quality])
            frame = cv2.imdecode(data, cv2.IMREAD_COLOR)
        return frame


# --- the families ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """`restyle`: the renderer's parameters for this family (before the keyboard is
    placed); `draw`: the layers and camera, given where the keyboard is."""

    restyle: Callable[[Style, np.random.Generator], Style]
    draw: Callable[[Look, "_Canvas", np.random.Generator, Style], None]


def _same(style: Style, rng: np.random.Generator) -> Style:
    return style


def _pick(rng: np.random.Generator, options) -> tuple[int, int, int]:
    return tuple(int(c) for c in options[int(rng.integers(len(options)))])


def _hands(style: Style, rng: np.random.Generator) -> Style:
    """Real hands often cover much of the keyboard: bigger hands, sometimes four."""
    scale = float(rng.uniform(1.2, 1.9)) if rng.random() < 0.6 else 1.0
    return replace(style, hand_scale=round(scale, 3), extra_hands=bool(rng.random() < 0.25))


def _restyle_concert_grand(style: Style, rng: np.random.Generator) -> Style:
    return replace(_hands(style, rng), body_bgr=_pick(rng, [(10, 10, 12), (16, 15, 16), (22, 20, 20)]),
                   key_length=float(rng.uniform(6.0, 6.6)), fallboard=float(rng.uniform(0.9, 1.3)),
                   light_x=float(rng.uniform(-0.1, 0.1)), light_y=float(rng.uniform(-0.1, 0.1)))


def _draw_concert_grand(look: Look, canvas: "_Canvas", rng: np.random.Generator, style: Style) -> None:
    level = float(rng.uniform(0.42, 0.58))  # white keys at V about 100-140
    canvas.gain_all(level * np.array([rng.uniform(0.7, 0.82), rng.uniform(0.86, 0.93), 1.0]))
    canvas.region(style.body_bgr, -1.0, -0.004)  # the fallboard, black and glossy
    look.reflect = (float(rng.uniform(0.25, 0.5)), float(rng.uniform(0.55, 0.8)), float(rng.uniform(0.05, 0.2)))
    canvas.shadow(rng, float(rng.uniform(0.45, 0.7)))
    look.hand_shadow = (float(rng.uniform(0.3, 0.55)), float(rng.uniform(-1.5, 1.5)), float(rng.uniform(-1.2, -0.4)))
    look.camera = _fill_width(canvas, rng.uniform(-0.6, 1.0), rng.uniform(-0.6, 1.0))


def _restyle_digital(style: Style, rng: np.random.Generator) -> Style:
    body = _pick(rng, [(28, 28, 30), (58, 58, 62), (120, 120, 124), (205, 205, 208), (228, 228, 230)])
    return replace(_hands(style, rng), body_bgr=body, key_length=float(rng.uniform(4.6, 5.4)),
                   fallboard=float(rng.uniform(1.0, 1.6)), light_x=float(rng.uniform(-0.04, 0.04)),
                   light_y=float(rng.uniform(-0.04, 0.04)))


def _draw_digital(look: Look, canvas: "_Canvas", rng: np.random.Generator, style: Style) -> None:
    canvas.digital_panel(rng, style.body_bgr)


def _draw_oblique(look: Look, canvas: "_Canvas", rng: np.random.Generator, style: Style) -> None:
    look.camera, look.orientation = _oblique(rng, canvas)


def _restyle_wood(style: Style, rng: np.random.Generator) -> Style:
    return replace(_hands(style, rng), body_bgr=_pick(rng, [(40, 70, 120), (30, 50, 95), (55, 90, 140), (35, 45, 110)]),
                   light_x=float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.6)), light_y=float(rng.uniform(-0.4, 0.4)))


def _draw_wood(look: Look, canvas: "_Canvas", rng: np.random.Generator, style: Style) -> None:
    canvas.wood(rng, style.body_bgr)
    canvas.spotlight(rng)


def _draw_overlay(look: Look, canvas: "_Canvas", rng: np.random.Generator, style: Style) -> None:
    canvas.region((0, 0, 0), -6.0, 0.0, -3, N_WHITE + 3)  # the app's dark background above the keys
    canvas.region((255, 255, 255), -0.04, -0.005)  # the glow line
    look.bars = [(float(rng.uniform(0, N_WHITE - 1)), float(rng.uniform(0, 4)), float(rng.uniform(0.05, 0.15)),
                  tuple(int(c) for c in rng.integers(60, 255, 3))) for _ in range(int(rng.integers(6, 14)))]
    look.lit = _pick(rng, [(80, 220, 90), (230, 150, 60), (60, 160, 250)])
    if rng.random() < 0.5:
        canvas.letterbox(float(rng.uniform(0.06, 0.12)))
    if rng.random() < 0.5:
        canvas.banner(rng)
    else:
        canvas.watermark(rng)
    look.pip = bool(rng.random() < 0.4)


STYLE_FAMILIES: dict[str, Family] = {
    "studio": Family(_same, lambda look, canvas, rng, style: None),
    "concert_grand": Family(_restyle_concert_grand, _draw_concert_grand),
    "digital": Family(_restyle_digital, _draw_digital),
    "oblique": Family(_hands, _draw_oblique),
    "upright_wood": Family(_restyle_wood, _draw_wood),
    "overlay": Family(_hands, _draw_overlay),
}


def restyle(name: str, style: Style, rng: np.random.Generator) -> Style:
    """The renderer's parameters for look `name` (studio: `style` itself, no draws)."""
    if name not in LOOKS:
        raise ValueError(f"unknown look {name!r}; known: {', '.join(LOOKS)}")
    if name in STYLE_FAMILIES:
        return STYLE_FAMILIES[name].restyle(style, rng)
    return _hands(style, rng)


def draw_look(name: str, rng: np.random.Generator, quad: np.ndarray, size: tuple[int, int], style: Style) -> Look:
    """The look `name` for a keyboard at `quad` (renderer truth) in a frame of `size`."""
    if name not in LOOKS:
        raise ValueError(f"unknown look {name!r}; known: {', '.join(LOOKS)}")
    look = Look(name=name)
    if name == "studio":
        return look
    canvas = _Canvas(quad, size)
    canvas.key_tints(rng)
    canvas.black_highlights(rng)
    look.blur_sigma = float(rng.uniform(0.3, 1.0))
    look.jpeg_quality = int(rng.integers(35, 80))
    if name in STYLE_FAMILIES:
        STYLE_FAMILIES[name].draw(look, canvas, rng, style)
    else:
        _draw_negative(look, canvas, rng, style)
    look.gain, look.paint, look.under, look.over = canvas.layers()
    return look


def _draw_negative(look: Look, canvas: "_Canvas", rng: np.random.Generator, style: Style) -> None:
    look.full_keyboard, look.reason = False, "partial_keyboard"
    if look.name in KEY_RANGES:
        low, high = KEY_RANGES[look.name]
        look.n_keys, look.lowest_midi = high - low + 1, low
        look.key_span = (float(white_index(low)), float(white_index(high) + 1))
        for m0, m1 in ((-0.6, look.key_span[0]), (look.key_span[1], N_WHITE + 0.6)):
            canvas.region(style.body_bgr, -0.06, 1.06, m0, m1)
    elif look.name == "cropped":
        cut, low_end = float(rng.uniform(2.5, 6.0)), bool(rng.random() < 0.5)
        look.camera = _fill_width(canvas, cut if low_end else -0.5, -0.5 if low_end else cut)
    elif look.name == "empty":
        look.n_keys, look.reason = 0, "no_keyboard"


# --- drawing helpers ------------------------------------------------------------------------
def _points(to_frame: np.ndarray, mv) -> np.ndarray:
    return cv2.perspectiveTransform(np.float32(mv).reshape(1, -1, 2), to_frame)[0]


def _polygon_mask(to_frame: np.ndarray, size: tuple[int, int], m0, m1, v0, v1) -> np.ndarray:
    points = np.round(_points(to_frame, [(m0, v0), (m1, v0), (m1, v1), (m0, v1)])).astype(np.int32)
    mask = np.zeros((size[1], size[0]), np.uint8)
    cv2.fillConvexPoly(mask, points, 1)
    return mask.astype(bool)


class _Canvas:
    """Static layers in frame pixels, drawn through keyboard coordinates."""

    def __init__(self, quad: np.ndarray, size: tuple[int, int]):
        self.size = size
        self.to_frame = cv2.getPerspectiveTransform(UNIT, np.asarray(quad, np.float32))
        w, h = size
        self.gain = np.ones((h, w, 3), np.float32)
        self.paint = np.zeros((h, w, 3), np.uint8)
        self.under = np.zeros((h, w), bool)
        self.over = np.zeros((h, w), bool)

    def layers(self):
        has = lambda mask: mask if mask.any() else None  # noqa: E731
        return self.gain, self.paint, has(self.under), has(self.over)

    def polygon_mask(self, m0, m1, v0, v1) -> np.ndarray:
        return _polygon_mask(self.to_frame, self.size, m0, m1, v0, v1)

    def region(self, bgr, v0, v1, m0=0.0, m1=float(N_WHITE), over: bool = False) -> None:
        mask = self.polygon_mask(m0, m1, v0, v1)
        self.paint[mask] = bgr
        (self.over if over else self.under)[mask] = True

    def gain_all(self, bgr_gain: np.ndarray) -> None:
        self.gain *= bgr_gain.astype(np.float32)

    def key_tints(self, rng: np.random.Generator) -> None:
        """Real white keys are not one white: a slight tint per key (ivory, wear)."""
        layout = key_layout()
        for i in np.flatnonzero(~layout.black):
            tint = (rng.uniform(0.88, 1.0) * rng.uniform(0.97, 1.0, 3)).astype(np.float32)
            self.gain[self.polygon_mask(layout.left[i], layout.right[i], 0.0, 1.0)] *= tint

    def black_highlights(self, rng: np.random.Generator) -> None:
        """Glossy black keys: a lit stripe along one side and a shine at the front."""
        layout = key_layout()
        level, side = int(rng.integers(60, 120)), float(rng.uniform(0.1, 0.6))
        for i in np.flatnonzero(layout.black):
            w = layout.right[i] - layout.left[i]
            m0 = layout.left[i] + side * w
            self.region((level, level, level + 6), 0.05, 0.5, m0, m0 + 0.14 * w)
            self.region((level + 15, level + 15, level + 20), 0.56, 0.6, layout.left[i] + 0.2 * w, layout.right[i] - 0.2 * w)

    def shadow(self, rng: np.random.Generator, strength: float) -> None:
        """A lid's shadow across part of the keys' length and width."""
        m0 = float(rng.uniform(0, 30))
        self.gain[self.polygon_mask(m0, m0 + float(rng.uniform(8, 22)), -1.0, float(rng.uniform(0.25, 0.6)))] *= strength

    def spotlight(self, rng: np.random.Generator) -> None:
        w, h = self.size
        centre = _points(self.to_frame, [(rng.uniform(8, 44), 0.5)])[0]
        yy, xx = np.mgrid[0:h, 0:w]
        radius = float(rng.uniform(0.2, 0.35)) * w
        light = 0.55 + 0.6 * np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * radius ** 2))
        self.gain *= light.astype(np.float32)[..., None]

    def digital_panel(self, rng: np.random.Generator, body) -> None:
        panel = tuple(int(np.clip(c + rng.integers(-8, 9), 0, 255)) for c in body)
        self.region(panel, -1.1, -0.02, -2.5, N_WHITE + 2.5)
        self.region(_pick(rng, [(150, 150, 155), (40, 40, 44), (90, 90, 96)]), -2.3, -1.4, 8, 44)  # the music rest
        for _ in range(int(rng.integers(4, 12))):
            m = float(rng.uniform(2, N_WHITE - 2))
            self.region(_pick(rng, [(40, 40, 230), (40, 220, 40), (230, 120, 30)]), -0.6, -0.5, m, m + 0.35)
        ink = (235, 235, 235) if panel[0] < 100 else (30, 30, 30)
        self._text(str(rng.choice(["DIGITAL 88", "STAGE PIANO", "P-125", "FP-30X"])), (float(rng.uniform(2, 30)), -0.3), ink)

    def wood(self, rng: np.random.Generator, wood) -> None:
        self.region(wood, -1.2, -0.05, -2.0, N_WHITE + 2.0)  # fallboard
        self.region((40, 40, int(rng.integers(130, 170))), -0.05, -0.004)  # red felt
        self.region(wood, -1.2, 1.08, -2.0, -0.02)  # cheek blocks
        self.region(wood, -1.2, 1.08, N_WHITE + 0.02, N_WHITE + 2.0)
        desk = int(rng.integers(170, 215))
        self.region((desk, desk, desk + 5), 1.02, 3.5, -3.0, N_WHITE + 3.0)  # a light desk at the key fronts

    def watermark(self, rng: np.random.Generator) -> None:
        self._text("PIANO COVERS", (float(rng.uniform(5, 30)), 1.7), (90, 90, 90), over=True)

    def banner(self, rng: np.random.Generator) -> None:
        """A sheet-music banner across the top of the frame: staff lines and notes."""
        w, h = self.size
        top, height = int(h * rng.uniform(0.0, 0.05)), int(h * rng.uniform(0.14, 0.2))
        layer = np.full((height, w, 3), 245, np.uint8)
        gap = max(3, height // 14)
        for staff in (0.25, 0.62):
            y0 = int(staff * height)
            for line in range(5):
                cv2.line(layer, (10, y0 + line * gap), (w - 10, y0 + line * gap), (30, 30, 30), 1)
            for x in range(40, w - 20, int(rng.integers(18, 40))):
                cv2.ellipse(layer, (x, y0 + int(rng.integers(-1, 9)) * gap // 2), (gap * 2 // 3, gap // 2), -20, 0, 360,
                            (20, 20, 20), -1)
        self.paint[top:top + height] = layer
        self.over[top:top + height] = True

    def letterbox(self, share: float) -> None:
        h = self.over.shape[0]
        band = int(share * h)
        for rows in (slice(0, band), slice(h - band, h)):
            self.paint[rows] = 0
            self.over[rows] = True

    def _text(self, text: str, at: tuple[float, float], bgr, over: bool = False) -> None:
        x, y = _points(self.to_frame, [at])[0]
        a, b = _points(self.to_frame, [(1, 0), (2, 0)])
        unit = float(np.linalg.norm(b - a))
        layer = np.zeros_like(self.paint)
        cv2.putText(layer, text, (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, unit / 22, bgr, max(1, int(unit / 12)))
        drawn = layer.any(axis=2)
        self.paint[drawn] = layer[drawn]
        (self.over if over else self.under)[drawn] = True


# --- cameras --------------------------------------------------------------------------------
def _fill_width(canvas: _Canvas, left_out: float, right_out: float) -> np.ndarray:
    """Scale and shift the frame so the A0 end lies `left_out` white keys outside the left
    edge and the C8 end `right_out` outside the right edge (negative: inside)."""
    w, h = canvas.size
    left, right = _points(canvas.to_frame, [(0, 0.5), (N_WHITE, 0.5)])
    white = w / (N_WHITE - left_out - right_out)  # a white key's width in the new frame
    target_left = -left_out * white
    scale = N_WHITE * white / (right[0] - left[0])
    dx = target_left - scale * left[0]
    cy = (left[1] + right[1]) / 2
    dy = h * 0.55 - scale * cy
    return np.array([[scale, 0, dx], [0, scale, dy], [0, 0, 1]], float)


FLIPS = {"normal": np.diag([1.0, 1.0, 1.0]), "rotated": np.diag([-1.0, -1.0, 1.0]),
         "mirrored": np.diag([-1.0, 1.0, 1.0]), "flipped": np.diag([1.0, -1.0, 1.0])}


def _oblique(rng: np.random.Generator, canvas: _Canvas) -> tuple[np.ndarray, str]:
    """Keystone (the back edge narrower), a camera looking along the keyboard (one end
    shorter), a rotation, and a camera on the far side or a mirrored/flipped video; the
    picture shrinks until the keyboard fits the frame."""
    w, h = canvas.size
    k, far = float(rng.uniform(0.08, 0.25)), float(rng.uniform(0.85, 1.0))
    frame_rect = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    keystone = cv2.getPerspectiveTransform(frame_rect, np.float32([[k * w / 2, 0], [w - k * w / 2, 0], [w, h], [0, h]]))
    squeeze = cv2.getPerspectiveTransform(frame_rect, np.float32([[0, 0], [w, h * (1 - far) / 2], [w, h * (1 + far) / 2], [0, h]]))
    if rng.random() < 0.5:
        squeeze = np.diag([-1.0, 1.0, 1.0]) @ squeeze @ np.diag([-1.0, 1.0, 1.0])  # the near end on the left
        squeeze = np.array([[1, 0, w], [0, 1, 0], [0, 0, 1]]) @ squeeze @ np.array([[1, 0, -w], [0, 1, 0], [0, 0, 1]])
    angle = float(rng.uniform(-12, 12))
    orientation = str(rng.choice(["normal", "normal", "rotated", "mirrored", "flipped"]))
    centre = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]])
    flip = centre @ FLIPS[orientation] @ np.linalg.inv(centre)
    quad = _points(canvas.to_frame, UNIT)
    for scale in np.linspace(1.0, 0.5, 26):
        turn = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale), [0, 0, 1]])
        camera = flip @ turn @ squeeze @ keystone
        corners = cv2.perspectiveTransform(quad.reshape(1, 4, 2).astype(np.float64), camera)[0]
        # Recentre the keyboard: the original framing need not suit the new camera.
        shift = np.array([w / 2, h / 2]) - corners.mean(axis=0)
        camera = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]]) @ camera
        corners = corners + shift
        if corners[:, 0].min() >= 6 and corners[:, 0].max() <= w - 7 and corners[:, 1].min() >= 6 and corners[:, 1].max() <= h - 7:
            break
    return camera, orientation


def clipped_ends(quad: np.ndarray, size: tuple[int, int]) -> tuple[float, float]:
    """White keys of the A0 and C8 ends outside the frame, half way down the keys."""
    to = cv2.getPerspectiveTransform(UNIT, np.asarray(quad, np.float32))
    m = np.arange(0, N_WHITE + 1e-9, 0.05)
    xy = _points(to, np.column_stack([m, np.full(len(m), 0.5)]))
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= size[0]) & (xy[:, 1] >= 0) & (xy[:, 1] <= size[1])
    if not inside.any():
        return float(N_WHITE), float(N_WHITE)
    first, last = np.flatnonzero(inside)[[0, -1]]
    return round(float(m[first]), 2), round(float(N_WHITE - m[last]), 2)
