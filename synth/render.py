"""Drawing for the synthetic top-view piano videos.

The scene is drawn in a "world" canvas whose axes follow the keyboard (keys vertical,
black keys at the top, the player's hands coming from below, as in PianoYT/Audeo), then
warped into the frame by one homography. The keyboard's corners in the frame (the truth
quad) are therefore exact by construction. Static layers (background, lighting, body,
unpressed keys) are drawn once; each frame redraws only pressed keys and hands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from contract.piano import BLACK_LENGTH, N_WHITE, key_layout

PX_PER_WHITE = 24  # world pixels per white-key width: about the size in a 720p frame

WHITE_KEY = (236, 238, 240)
WHITE_PRESSED = (178, 182, 188)
BLACK_KEY = (22, 22, 24)
BLACK_PRESSED = (78, 78, 84)
KEY_GAP = (70, 72, 76)


@dataclass(frozen=True)
class Style:
    """Everything about a video's look that the seed decides (stored in the truth file)."""

    width_fraction: float  # keyboard width / frame width
    centre_x: float  # keyboard centre, fraction of frame width
    centre_y: float  # fraction of frame height
    rotation_deg: float
    keystone: float  # relative width change of the top edge (perspective)
    key_length: float  # white-key length in white-key widths
    fallboard: float  # fallboard depth in key lengths
    body_bgr: tuple[int, int, int]
    background_bgr: tuple[int, int, int]
    skin_bgr: tuple[int, int, int]
    light_x: float  # lighting gain slope across the frame
    light_y: float
    noise_sigma: float
    hands: bool = True
    hand_scale: float = 1.0  # > 1: bigger hands whose backs cover the keys' fronts (close cameras)
    extra_hands: bool = False  # a second pair of hands (four hands), resting mirrored about the middle

    @staticmethod
    def draw(rng: np.random.Generator, hands: bool = True) -> "Style":
        bodies = [(18, 18, 20), (25, 32, 52), (20, 28, 40), (40, 40, 44)]
        backgrounds = [(60, 70, 90), (95, 90, 80), (50, 50, 55), (110, 120, 130), (70, 95, 120)]
        skins = [(150, 175, 225), (120, 150, 200), (80, 110, 160), (60, 80, 120)]
        return Style(
            width_fraction=float(rng.uniform(0.70, 0.97)),
            centre_x=float(rng.uniform(0.44, 0.56)),
            centre_y=float(rng.uniform(0.50, 0.72)),
            rotation_deg=float(rng.uniform(-3.0, 3.0)),
            keystone=float(rng.uniform(-0.04, 0.04)),
            key_length=float(rng.uniform(5.6, 6.6)),
            fallboard=float(rng.uniform(0.4, 1.1)),
            body_bgr=bodies[rng.integers(len(bodies))],
            background_bgr=backgrounds[rng.integers(len(backgrounds))],
            skin_bgr=skins[rng.integers(len(skins))],
            light_x=float(rng.uniform(-0.25, 0.25)),
            light_y=float(rng.uniform(-0.2, 0.2)),
            noise_sigma=float(rng.uniform(1.0, 4.0)),
            hands=hands,
        )


@dataclass(frozen=True)
class HandPose:
    """One hand: its centre in white-key units and the keys its fingers press."""

    centre: float
    pressed: tuple[int, ...] = field(default_factory=tuple)  # roll indices 0..87


def keyboard_quad(style: Style, width: int, height: int) -> np.ndarray:
    """Corners TL, TR, BR, BL of the keyboard in frame pixels, kept inside the frame."""
    fraction = style.width_fraction
    for _ in range(50):
        w = fraction * width
        h = w * style.key_length / N_WHITE
        top_half = w / 2 * (1 + style.keystone)
        corners = np.array([[-top_half, -h / 2], [top_half, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
        a = np.deg2rad(style.rotation_deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        quad = corners @ rot.T + [style.centre_x * width, style.centre_y * height]
        margin = 4
        if quad[:, 0].min() >= margin and quad[:, 0].max() <= width - 1 - margin and \
                quad[:, 1].min() >= margin and quad[:, 1].max() <= height - 1 - margin:
            return quad
        fraction *= 0.98
    raise ValueError(f"cannot fit the keyboard in a {width}x{height} frame with {style}")


class SceneRenderer:
    """Renders keyboard frames (with pressed keys and hands) and the non-playing scenes."""

    def __init__(self, style: Style, width: int, height: int, rng: np.random.Generator):
        self.style, self.width, self.height = style, width, height
        self.quad = keyboard_quad(style, width, height)
        u = PX_PER_WHITE
        self.key_len = style.key_length * u
        self.kb_w = N_WHITE * u
        # World canvas: keyboard at (mx, my); margins hold the body, background and arms.
        kb_rect = np.array([[0, 0], [self.kb_w, 0], [self.kb_w, self.key_len], [0, self.key_len]], float)
        h0 = cv2.getPerspectiveTransform(kb_rect.astype(np.float32), self.quad.astype(np.float32))
        frame_corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
        world_corners = cv2.perspectiveTransform(frame_corners[None], np.linalg.inv(h0))[0]
        self.origin = np.floor(world_corners.min(axis=0)) - 2  # world coords of canvas (0, 0)
        size = np.ceil(world_corners.max(axis=0) - self.origin) + 2
        self.canvas_w, self.canvas_h = int(size[0]), int(size[1])
        shift = np.array([[1, 0, self.origin[0]], [0, 1, self.origin[1]], [0, 0, 1]], float)
        self.world_to_frame = h0 @ shift
        self.static_world = self._draw_static_world()
        self.noise = self._noise_bank(rng)
        self._noise_i = 0

    # --- coordinates -------------------------------------------------------------------
    def _xy(self, x_world: float, y_world: float) -> tuple[int, int]:
        """Keyboard-relative world coordinates (pixels) -> canvas pixel."""
        return int(round(x_world - self.origin[0])), int(round(y_world - self.origin[1]))

    def _key_rect(self, index: int, pressed: bool) -> tuple[tuple[int, int], tuple[int, int]]:
        layout = key_layout()
        u = PX_PER_WHITE
        x0, x1 = layout.left[index] * u, layout.right[index] * u
        if layout.black[index]:
            y0 = 0.06 * self.key_len if pressed else 0.0
            return self._xy(x0, y0), self._xy(x1, y0 + BLACK_LENGTH * self.key_len)
        return self._xy(x0 + 1, 0), self._xy(x1 - 1, self.key_len)

    # --- static layers -----------------------------------------------------------------
    def _draw_static_world(self) -> np.ndarray:
        s = self.style
        world = np.empty((self.canvas_h, self.canvas_w, 3), np.uint8)
        world[:] = s.background_bgr
        # A floor/room texture so the background is not flat.
        yy, xx = np.mgrid[0:self.canvas_h, 0:self.canvas_w]
        texture = (8 * np.sin(xx / 37.0) * np.cos(yy / 23.0)).astype(np.int16)
        world = np.clip(world.astype(np.int16) + texture[..., None], 0, 255).astype(np.uint8)
        u = PX_PER_WHITE
        body_top = -s.fallboard * self.key_len
        cv2.rectangle(world, self._xy(-1.6 * u, body_top - 0.6 * self.key_len),
                      self._xy(self.kb_w + 1.6 * u, self.key_len + 0.14 * self.key_len), s.body_bgr, -1)
        # Fallboard edge: a slightly lighter strip just above the keys.
        edge = tuple(min(255, c + 25) for c in s.body_bgr)
        cv2.rectangle(world, self._xy(0, -0.08 * self.key_len), self._xy(self.kb_w, -1), edge, -1)
        self._draw_keys(world, pressed=np.zeros(88, bool))
        # Lighting: a smooth gain over the world (the frame warp keeps it smooth).
        gx = np.linspace(-0.5, 0.5, self.canvas_w)[None, :] * s.light_x
        gy = np.linspace(-0.5, 0.5, self.canvas_h)[:, None] * s.light_y
        gain = (1.0 + gx + gy).astype(np.float32)[..., None]
        return np.clip(world * gain, 0, 255).astype(np.uint8)

    def _draw_keys(self, world: np.ndarray, pressed: np.ndarray) -> None:
        layout = key_layout()
        kb0, kb1 = self._xy(0, 0), self._xy(self.kb_w, self.key_len)
        cv2.rectangle(world, kb0, kb1, KEY_GAP, -1)
        for i in np.flatnonzero(~layout.black):
            p0, p1 = self._key_rect(i, False)
            cv2.rectangle(world, p0, p1, WHITE_PRESSED if pressed[i] else WHITE_KEY, -1)
        # Key fronts: a thin shadow line at the player's edge.
        cv2.line(world, self._xy(0, self.key_len - 1), self._xy(self.kb_w, self.key_len - 1), KEY_GAP, 2)
        for i in np.flatnonzero(layout.black):
            p0, p1 = self._key_rect(i, bool(pressed[i]))
            cv2.rectangle(world, p0, p1, BLACK_PRESSED if pressed[i] else BLACK_KEY, -1)

    def _noise_bank(self, rng: np.random.Generator, n: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
        bank = []
        for _ in range(n):
            noise = rng.normal(0, self.style.noise_sigma, (self.height, self.width, 3))
            bank.append((np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8)))
        return bank

    # --- per frame ---------------------------------------------------------------------
    def keyboard_frame(self, pressed: np.ndarray, hands: list[HandPose]) -> np.ndarray:
        """One frame of the performance: `pressed` is the (88,) bool key state."""
        return self.keyboard_frame_and_hands(pressed, hands)[0]

    def keyboard_frame_and_hands(self, pressed: np.ndarray, hands: list[HandPose],
                                 want_mask: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The frame and, when asked, where the hands are in it (looks paint under the
        hands and cast their shadows from this mask)."""
        world = self.static_world.copy()
        mask = np.zeros(world.shape[:2], np.uint8) if want_mask else None
        if pressed.any():
            self._redraw_pressed(world, pressed)
        if self.style.hands:
            if self.style.extra_hands:
                hands = list(hands) + [HandPose(centre=N_WHITE - h.centre) for h in hands]
            for hand in hands:
                self._draw_hand(world, hand, mask)
        frame = cv2.warpPerspective(world, self.world_to_frame, (self.width, self.height),
                                    flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if mask is not None:
            mask = cv2.warpPerspective(mask, self.world_to_frame, (self.width, self.height),
                                       flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE) > 0
        return self._add_noise(frame), mask

    def _redraw_pressed(self, world: np.ndarray, pressed: np.ndarray) -> None:
        """Redraw pressed keys (a white key's neighbouring black keys go back on top)."""
        layout = key_layout()
        for i in np.flatnonzero(pressed & ~layout.black):
            p0, p1 = self._key_rect(i, True)
            cv2.rectangle(world, p0, p1, WHITE_PRESSED, -1)
            for j in (i - 1, i + 1):
                if 0 <= j < 88 and layout.black[j]:
                    q0, q1 = self._key_rect(j, bool(pressed[j]))
                    cv2.rectangle(world, q0, q1, BLACK_PRESSED if pressed[j] else BLACK_KEY, -1)
        for i in np.flatnonzero(pressed & layout.black):
            p0, p1 = self._key_rect(i, False)
            cv2.rectangle(world, p0, p1, KEY_GAP, -1)  # the gap the pressed key uncovers
            p0, p1 = self._key_rect(i, True)
            cv2.rectangle(world, p0, p1, BLACK_PRESSED, -1)

    def _draw_hand(self, world: np.ndarray, hand: HandPose, mask: np.ndarray | None = None) -> None:
        """Palm below the key fronts, an arm to the bottom, a thin finger onto each key
        (a bigger hand's palm moves up over the keys' fronts). `mask` gets the same shapes."""
        u, length = PX_PER_WHITE, self.key_len
        skin, scale = self.style.skin_bgr, self.style.hand_scale
        palm_c = (hand.centre * u, length * 1.22) if scale == 1.0 else (hand.centre * u, length * (1.22 - 0.35 * (scale - 1)))
        for canvas, colour in ((world, skin), (mask, 255)):
            if canvas is None:
                continue
            cv2.line(canvas, self._xy(*palm_c), self._xy(palm_c[0] + 0.5 * u, length * 4.0), colour, int(2.4 * u * scale))
            cv2.ellipse(canvas, self._xy(*palm_c), (int(2.5 * u * scale), int(0.3 * length * scale)), 0, 0, 360, colour, -1)
        layout = key_layout()
        if hand.pressed:
            tips = [(layout.centre[i] * u, (0.45 if layout.black[i] else 0.72) * length) for i in hand.pressed[:5]]
        else:  # resting: fingers just over the key fronts
            tips = [((hand.centre + dx) * u, 0.8 * length) for dx in (-1.8, -0.9, 0.0, 0.9, 1.8)]
        for x, y in tips:
            base = (palm_c[0] + 0.5 * (x - palm_c[0]), length * 0.95)
            cv2.line(world, self._xy(*base), self._xy(x, y), skin, max(3, int(0.38 * u * scale)), cv2.LINE_AA)
            if mask is not None:
                cv2.line(mask, self._xy(*base), self._xy(x, y), 255, max(3, int(0.38 * u * scale)), cv2.LINE_AA)

    def _add_noise(self, frame: np.ndarray) -> np.ndarray:
        up, down = self.noise[self._noise_i % len(self.noise)]
        self._noise_i += 1
        return cv2.subtract(cv2.add(frame, up), down)

    # --- non-playing scenes ------------------------------------------------------------
    def text_card(self, lines: list[str], bgr: tuple[int, int, int]) -> np.ndarray:
        frame = np.empty((self.height, self.width, 3), np.uint8)
        frame[:] = bgr
        scale = self.height / 360
        for k, text in enumerate(lines):
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
            y = int(self.height * 0.42 + k * 1.8 * th)
            cv2.putText(frame, text, ((self.width - tw) // 2, y), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        (235, 235, 235), max(1, int(2 * scale)), cv2.LINE_AA)
        return self._add_noise(frame)

    def talking_scene(self, k: int) -> np.ndarray:
        """A cut to a person talking: no keyboard in view, mouth moving."""
        frame = np.empty((self.height, self.width, 3), np.uint8)
        frame[:] = (90, 110, 130)
        w, h = self.width, self.height
        cv2.rectangle(frame, (int(0.35 * w), int(0.62 * h)), (int(0.65 * w), h), (80, 50, 40), -1)
        cv2.ellipse(frame, (w // 2, int(0.42 * h)), (int(0.09 * w), int(0.2 * h)), 0, 0, 360,
                    self.style.skin_bgr, -1)
        mouth = int(0.01 * h + 0.015 * h * abs(np.sin(k * 0.9)))
        cv2.ellipse(frame, (w // 2, int(0.52 * h)), (int(0.025 * w), mouth), 0, 0, 360, (40, 40, 90), -1)
        return self._add_noise(frame)
