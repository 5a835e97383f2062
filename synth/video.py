"""Synthetic top-view piano videos with known truth: the project's test bed and demo.

`make_video` writes NAME.mp4 (H.264 + AAC), NAME.mid (what is played, in video time)
and NAME.json (keyboard quad and box, per-frame playing flags, segments, style, audio
source). Everything is decided by the seed; the same seed gives the same bytes of
truth (MIDI and JSON) on a given machine.

A video is: a title card, the performance (keyboard in view, keys pressed as the MIDI
says, hands over the keys), optionally a cut to a person talking in the middle, and an
outro. Audio is silent outside the performance. For the audio-visual checks the audio
can be late or early (`av_offset_s`) or another performance's (`audio_seed`), and the
pictures mirrored (`mirror`); NAME.mid stays what the pictures show.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pretty_midi

from contract.atomic import atomic_path
from contract.piano import LOWEST_MIDI, key_layout
from labeling.rolls import frame_roll
from synth.audio import synthesize
from synth.looks import LOOKS, LookRenderer, clipped_ends, draw_look, restyle
from synth.render import HandPose, SceneRenderer, Style

TRUTH_FORMAT = "pianocorpus-synthetic/1"
FRAME_CONVENTION = ("frame k covers [k/fps, (k+1)/fps), t = (k+0.5)/fps; a key is drawn "
                    "pressed in every frame whose interval its note overlaps")
SPLIT_MIDI = 60  # notes below middle C are played by the left hand


@dataclass(frozen=True)
class SynthConfig:
    """What a user chooses; the seed decides the rest (see Style)."""

    seconds: float = 20.0
    width: int = 1280
    height: int = 720
    fps: int = 25
    sample_rate: int = 44100
    audio: str = "auto"  # auto | fluidsynth | pretty_midi
    cut: bool | None = None  # a talking cut mid-video; None: the seed decides
    hands: bool = True
    crf: int = 23
    look: str = "studio"  # a style family or negative of synth.looks (real footage's conditions)
    av_offset_s: float = 0.0  # the audio this much behind the pictures (negative: ahead), as uploads carry
    audio_seed: int | None = None  # the audio of another performance (drawn from this seed): a mismatched pair
    mirror: bool = False  # the finished pictures mirrored left-right, as an uploader's mirror

    def __post_init__(self):
        if self.seconds < 3:
            raise ValueError(f"seconds must be >= 3 (title, performance, outro), got {self.seconds}")
        if self.width < 160 or self.height < 90 or self.width % 2 or self.height % 2:
            raise ValueError(f"width x height must be even and at least 160x90, got {self.width}x{self.height}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps must be in 1..120, got {self.fps}")
        if self.look not in LOOKS:
            raise ValueError(f"unknown look {self.look!r}; known: {', '.join(LOOKS)}")
        if abs(self.av_offset_s) > 2:
            raise ValueError(f"av_offset_s must be within +-2 s, got {self.av_offset_s}")


@dataclass(frozen=True)
class Segment:
    kind: str  # title | play | cut | outro
    start_frame: int
    end_frame: int  # exclusive


def plan_segments(n_frames: int, fps: int, rng: np.random.Generator, cut: bool) -> list[Segment]:
    """Title card, performance (split by an optional cut), outro."""
    seconds = n_frames / fps
    title = max(1, int(round(min(3.0, max(0.6, 0.12 * seconds)) * fps * rng.uniform(0.8, 1.2))))
    outro = max(1, int(round(min(2.0, max(0.4, 0.08 * seconds)) * fps * rng.uniform(0.8, 1.2))))
    bounds = [Segment("title", 0, title)]
    play_end = n_frames - outro
    if cut:
        length = max(1, int(round(min(2.0, max(0.5, 0.1 * seconds)) * fps)))
        mid = int(rng.uniform(0.4, 0.6) * (title + play_end))
        bounds += [Segment("play", title, mid - length // 2), Segment("cut", mid - length // 2, mid - length // 2 + length),
                   Segment("play", mid - length // 2 + length, play_end)]
    else:
        bounds.append(Segment("play", title, play_end))
    bounds.append(Segment("outro", play_end, n_frames))
    if any(s.end_frame <= s.start_frame for s in bounds):
        raise ValueError(f"{seconds:.1f} s is too short for segments {bounds}")
    return bounds


# Where the hands play. Pitch in classical piano music is close to Gaussian around the
# middle of the keyboard (Keane 2004, "Statistical analysis of classical piano recordings
# in MIDI format"); Audeo models only MIDI 36..86. Each hand walks around its home and is
# pulled back to it: over seeds 1000-1039, mean MIDI 61.5, sd 15.6, 3.5 % of notes below
# C2 and 4.3 % above C6 (the 3 outermost keys at each end, 1.8 %, are struck on purpose).
# Before this, hands wandered freely over 24..105: sd 21, 8.7 % of notes at C7 and above.
MELODY_HOME, MELODY_RANGE = 74, (57, 96)
BASS_HOME, BASS_RANGE = 43, (28, 55)


def _step(rng: np.random.Generator, pitch: int, home: int, bounds: tuple[int, int]) -> int:
    """A random step of up to a fourth, pulled a tenth of the way back towards home."""
    pull = int(round(0.1 * (home - pitch)))
    return int(np.clip(pitch + rng.integers(-5, 6) + pull, *bounds))


def compose_performance(segments: list[Segment], fps: int, rng: np.random.Generator) -> pretty_midi.PrettyMIDI:
    """A two-hand performance inside the play segments: melody right, chords left.

    The same key is never re-struck within two frames of its release, so every press is
    visible as a separate press in the video.
    """
    # 500 ticks per beat at 120 bpm: one tick is exactly 1 ms, so the written file
    # reproduces the (ms-rounded) note times the frames were drawn from.
    midi = pretty_midi.PrettyMIDI(resolution=500, initial_tempo=120.0)
    right = pretty_midi.Instrument(program=0, name="right hand")
    left = pretty_midi.Instrument(program=0, name="left hand")
    released_at: dict[int, float] = {}
    gap = 2.0 / fps

    def add(hand: pretty_midi.Instrument, pitch: int, start: float, end: float, limit: float) -> None:
        end = min(end, limit)
        if end - start < 0.08 or start < released_at.get(pitch, -1.0) + gap:
            return
        velocity = int(rng.integers(45, 111))
        hand.notes.append(pretty_midi.Note(velocity, pitch, round(start, 3), round(end, 3)))
        released_at[pitch] = round(end, 3)

    for seg in (s for s in segments if s.kind == "play"):
        start, end = seg.start_frame / fps + 0.12, seg.end_frame / fps - 0.15
        beat = float(rng.uniform(0.22, 0.45))
        melody = int(rng.integers(MELODY_HOME - 8, MELODY_HOME + 9))
        bass = int(rng.integers(BASS_HOME - 6, BASS_HOME + 7))
        t = start
        while t < end:
            if rng.random() < 0.85:
                melody = _step(rng, melody, MELODY_HOME, MELODY_RANGE)
                add(right, melody, t, t + beat * rng.choice([0.5, 0.9, 1.4, 1.9]), end)
            if rng.random() < 0.03:  # the keyboard's ends get played too (rarely, as in real music)
                add(right if rng.random() < 0.5 else left, int(rng.choice([21, 22, 23, 106, 107, 108])), t, t + beat, end)
            if int(round((t - start) / beat)) % 2 == 0 and rng.random() < 0.8:
                bass = _step(rng, bass, BASS_HOME, BASS_RANGE)
                for interval in rng.choice([0, 4, 7, 12], size=int(rng.integers(1, 4)), replace=False):
                    add(left, int(bass + interval), t, t + beat * 1.8, end)
            t += beat
    right.notes.sort(key=lambda n: (n.start, n.pitch))
    left.notes.sort(key=lambda n: (n.start, n.pitch))
    midi.instruments = [right, left]
    return midi


def hand_poses(midi: pretty_midi.PrettyMIDI, n_frames: int, fps: int) -> list[list[HandPose]]:
    """Per frame, where each hand is and which keys it presses (it stays where it was)."""
    layout = key_layout()
    poses: list[list[HandPose]] = []
    centres = {"right hand": float(layout.centre[72 - LOWEST_MIDI]), "left hand": float(layout.centre[48 - LOWEST_MIDI])}
    rolls = {inst.name: frame_roll(inst.notes, n_frames, fps) for inst in midi.instruments}
    for k in range(n_frames):
        frame_poses = []
        for name, roll in rolls.items():
            keys = tuple(int(i) for i in np.flatnonzero(roll[k]))
            if keys:
                centres[name] = float(np.mean(layout.centre[list(keys)]))
            frame_poses.append(HandPose(centre=centres[name], pressed=keys))
        poses.append(frame_poses)
    return poses


def performance_audio(seed: int, seconds: float, sample_rate: int = 44100, fps: int = 25,
                      backend: str = "auto") -> tuple[np.ndarray, list[pretty_midi.Note], dict]:
    """Audio and notes of a synthetic performance without the video (for label benchmarks)."""
    rng = np.random.default_rng(seed)
    n_frames = int(round(seconds * fps))
    segments = [Segment("play", 0, n_frames)]
    midi = compose_performance(segments, fps, rng)
    audio, source = synthesize(midi, seconds, sample_rate, backend)
    notes = sorted((n for inst in midi.instruments for n in inst.notes), key=lambda n: (n.start, n.pitch))
    return audio, notes, source


def _write_mp4(path: Path, frames, config: SynthConfig, audio: np.ndarray) -> None:
    """H.264 + AAC mp4 via PyAV, audio interleaved with video; written to .part, then renamed."""
    fps, rate = config.fps, config.sample_rate
    with atomic_path(path) as part, av.open(str(part), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = config.width, config.height, "yuv420p"
        # A keyframe every 2 s, as YouTube's encodes have.
        video.options = {"crf": str(config.crf), "preset": "veryfast", "g": str(2 * fps)}
        sound = container.add_stream("aac", rate=rate, layout="mono")
        audio_pos = 0
        for k, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
            vf.pts = k
            container.mux(video.encode(vf))
            audio_end = min(len(audio), int(round((k + 1) * rate / fps)))
            if audio_end > audio_pos:
                af = av.AudioFrame.from_ndarray(audio[None, audio_pos:audio_end], format="fltp", layout="mono")
                af.sample_rate, af.pts = rate, audio_pos
                container.mux(sound.encode(af))
                audio_pos = audio_end
        container.mux(video.encode(None))
        container.mux(sound.encode(None))


MIRRORED = {"normal": "mirrored", "mirrored": "normal", "rotated": "flipped", "flipped": "rotated"}


def delayed_audio(audio: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    """The audio `seconds` later (silence before it) or, negative, earlier; same length."""
    shift = int(round(seconds * sample_rate))
    if shift == 0:
        return audio
    out = np.zeros_like(audio)
    if shift > 0:
        out[shift:] = audio[:len(audio) - shift]
    else:
        out[:shift] = audio[-shift:]
    return out


def _silence_outside(audio: np.ndarray, segments: list[Segment], fps: int, sample_rate: int) -> np.ndarray:
    """Zero the audio outside play segments (with 20 ms fades), so non-playing is silent."""
    gate = np.zeros(len(audio), np.float32)
    fade = int(0.02 * sample_rate)
    for seg in (s for s in segments if s.kind == "play"):
        a, b = int(seg.start_frame / fps * sample_rate), int(seg.end_frame / fps * sample_rate)
        gate[a:b] = 1.0
        gate[max(b - fade, a):b] = np.linspace(1, 0, b - max(b - fade, a), dtype=np.float32)
    return audio * gate


def make_video(out_dir: Path, name: str, seed: int, config: SynthConfig = SynthConfig()) -> Path:
    """Render one synthetic video with its truth; returns the truth JSON path."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    fps, n_frames = config.fps, int(round(config.seconds * config.fps))
    cut = bool(rng.random() < 0.5) if config.cut is None else config.cut
    style = Style.draw(rng, hands=config.hands)
    segments = plan_segments(n_frames, fps, rng, cut)
    midi = compose_performance(segments, fps, rng)
    # The look draws from its own stream, so the studio look is the renderer's frames exactly.
    look_rng = np.random.default_rng([seed, 7])
    style = restyle(config.look, style, look_rng)
    renderer = SceneRenderer(style, config.width, config.height, rng)
    size = (config.width, config.height)
    look = draw_look(config.look, look_rng, renderer.quad, size, style)
    camera = LookRenderer(look, renderer.quad, size)

    pressed = frame_roll([n for inst in midi.instruments for n in inst.notes], n_frames, fps)
    poses = hand_poses(midi, n_frames, fps)
    kind = np.empty(n_frames, object)
    for seg in segments:
        kind[seg.start_frame:seg.end_frame] = seg.kind
    title = [f"Piano performance {seed}", "synthetic"]

    def pictures():
        for k in range(n_frames):
            if kind[k] == "play" and look.reason != "no_keyboard":
                frame, hands = renderer.keyboard_frame_and_hands(pressed[k], poses[k], look.needs_hands)
                yield camera.playing(frame, pressed[k], hands)
            elif kind[k] in ("cut", "play"):
                yield camera.other(renderer.talking_scene(k))
            else:
                yield camera.other(renderer.text_card(title if kind[k] == "title" else ["Thanks for watching"],
                                                      (40, 30, 30)))

    frames = (cv2.flip(f, 1) for f in pictures()) if config.mirror else pictures()
    heard = midi if config.audio_seed is None else compose_performance(segments, fps,
                                                                       np.random.default_rng(config.audio_seed))
    audio, audio_source = synthesize(heard, n_frames / fps, config.sample_rate, config.audio)
    audio = delayed_audio(_silence_outside(audio, segments, fps, config.sample_rate), config.av_offset_s,
                          config.sample_rate)
    audio_source = {**audio_source, "av_offset_s": config.av_offset_s, "audio_seed": config.audio_seed}
    _write_mp4(out_dir / f"{name}.mp4", frames, config, audio)
    midi.write(str(out_dir / f"{name}.mid"))
    quad = camera.truth_quad(renderer.quad)
    orientation = look.orientation
    if config.mirror:  # the corners keep the keyboard's order; the picture's left and right swap
        quad = np.column_stack([config.width - quad[:, 0], quad[:, 1]])
        orientation = MIRRORED[orientation]
    truth = _truth(name, seed, config, style, quad, segments, kind, audio_source, midi)
    truth["keyboard"].update(look=look.name, style=look.name, orientation=orientation,
                             full_keyboard=look.full_keyboard, n_keys=look.n_keys, lowest_midi=look.lowest_midi,
                             reason=look.reason)
    truth["keyboard"]["clipped_left"], truth["keyboard"]["clipped_right"] = clipped_ends(
        np.array(truth["keyboard"]["quad"]), size)
    truth_path = out_dir / f"{name}.json"
    truth_path.write_text(json.dumps(truth, indent=1) + "\n")
    return truth_path


def _truth(name, seed, config, style, quad, segments, kind, audio_source, midi) -> dict:
    return {
        "format": TRUTH_FORMAT,
        "name": name,
        "seed": seed,
        "video": {"file": f"{name}.mp4", "width": config.width, "height": config.height, "fps": config.fps,
                  "n_frames": len(kind), "duration_s": round(len(kind) / config.fps, 6)},
        "audio": {**audio_source, "sample_rate": config.sample_rate, "channels": 1},
        "midi": {"file": f"{name}.mid", "n_notes": sum(len(i.notes) for i in midi.instruments),
                 "hands": [i.name for i in midi.instruments]},
        "keyboard": {
            "quad": [[round(float(x), 2), round(float(y), 2)] for x, y in quad],  # A0 back, C8 back, C8 front, A0 front
            "bbox": [int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
                     int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max()))],
            "n_keys": 88, "lowest_midi": LOWEST_MIDI,
        },
        "frame_convention": FRAME_CONVENTION,
        "segments": [asdict(s) for s in segments],
        "playing": [bool(k == "play") for k in kind],
        "style": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(style).items()},
    }


def indexed_video_name(seed: int, index: int) -> str:
    return f"synth-{seed}-{index:03d}"


def make_indexed_video(out_dir: Path, seed: int, index: int, config: SynthConfig = SynthConfig()) -> Path:
    """Video `index` of `seed`, named synth-SEED-III and drawn from the seed pair (seed, index)."""
    video_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
    return make_video(out_dir, indexed_video_name(seed, index), video_seed, config)


def make_videos(out_dir: Path, n: int, seed: int, config: SynthConfig = SynthConfig(),
                progress: Callable[[str], None] | None = None) -> list[Path]:
    """Videos 0..n-1 of `seed` (see make_indexed_video)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    paths = []
    for i in range(n):
        paths.append(make_indexed_video(out_dir, seed, i, config))
        if progress:
            progress(indexed_video_name(seed, i))
    return paths
