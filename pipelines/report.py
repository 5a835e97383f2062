"""The audit's outputs: stats/audit.json, a self-contained stats/report.html, and a page
per video (stats/videos/VIDEO_ID.html, linked from the report's table).

The HTML needs nothing but the files: plots and pictures are embedded as data URIs, the
style is inline, there is no script.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from contract.atomic import atomic_json, atomic_text
from contract.config import FrameConfig
from contract.layout import CacheLayout, CorpusLayout
from contract.piano import key_layout
from contract.records import AV_FLAGS
from contract.store import pull
from contract.vocab import DROP_REASONS
from pipelines.pictures import DROP_COLOURS, figure_tag, video_pictures

AV_SHOWN = ("av_offset_s", "av_confidence", "av_applied_s", "av_precision", "av_recall", "av_score", "av_n_onsets",
            "av_hands_near")

STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.flag{color:#b00;font-weight:600}.ok{color:#070}
img{max-width:100%;border:1px solid #eee;margin:6px 0}"""


def _png(fig) -> str:
    return figure_tag(fig, "plot")


def note(midi: int) -> str:
    """A0, C#4...: how musicians name the keys."""
    from pretty_midi import note_number_to_name

    return note_number_to_name(int(midi))


def _table(header: list[str], rows: list[list], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _frames_plot(splits: dict) -> str:
    import matplotlib.pyplot as plt

    names = [s for s in splits if s != "overall"]
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * len(names)))
    left = np.zeros(len(names))
    for label, values, colour in [("kept", [splits[s]["kept"] for s in names], "#4c9a2a")] + [
            (r, [splits[s]["dropped"][r] for s in names], c)
            for r, c in DROP_COLOURS.items()]:
        ax.barh(names, values, left=left, label=label, color=colour)
        left += values
    ax.set_xlabel("frames")
    ax.set_title("Frames kept and dropped, by reason")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return _png(fig)


def _keys_plot(values: list, title: str, ylabel: str) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 2.6))
    black = key_layout().black
    ax.bar(np.arange(21, 109), values, color=np.where(black, "#333", "#9bb7d4"), width=0.9)
    ax.set_xlim(20, 109)
    ticks = [21, *range(24, 109, 12)]
    ax.set_xticks(ticks, [note(m) for m in ticks])
    ax.set_xlabel("key (dark bars are black keys)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _png(fig)


def _histograms_plot(labels: dict) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 2.8))
    poly = labels["polyphony"]
    axes[0].bar(range(len(poly)), poly, color="#6a8caf")
    axes[0].set_xticks(range(len(poly)), [str(i) for i in range(len(poly) - 1)] + [f"{len(poly) - 1}+"])
    axes[0].set_title("Keys down per kept frame")
    durations = labels["duration_histogram"]
    edges = durations["edges_s"]
    names = [f"<{edges[i + 1]:g}" if edges[i + 1] != float("inf") else f">{edges[i]:g}" for i in range(len(edges) - 1)]
    axes[1].bar(range(len(names)), durations["counts"], color="#8a6aaf")
    axes[1].set_xticks(range(len(names)), names, rotation=45, fontsize=8)
    axes[1].set_title("Note durations (s)")
    axes[2].bar(range(128), labels["velocity_histogram"], color="#af8a6a", width=1.0)
    axes[2].set_title("Note velocities")
    fig.tight_layout()
    return _png(fig)


def _splits_section(result: dict) -> str:
    rows = []
    for split, s in result["splits"].items():
        failed = ", ".join(f"{n} {c}" for c, n in sorted(s["failed"].items())) or "none"
        rows.append([split, s["videos"], s["ok"], html.escape(failed), f"{s['hours']:.3f}", s["frames"], s["kept"],
                     *[s["dropped"][r] for r in DROP_REASONS], _fmt(s["kept_ratio"])])
    return _table(["split", "videos", "ok", "failed by class", "hours", "frames", "kept", *DROP_REASONS,
                   "kept ratio"], rows) + _frames_plot(result["splits"])


def _published_section(published: dict) -> str:
    if not published:
        return "<p>No published figures apply to this corpus's datasets.</p>"
    parts = []
    for dataset, splits in published.items():
        if dataset == "midi_durations":
            continue
        rows = [[split, f["ours"]["videos"], f["published"]["videos"], f["ours"]["minutes"], f["published"]["minutes"],
                 f["ours"]["frames"], f["published"]["frames"]] for split, f in splits.items()]
        parts.append(f"<h3>{html.escape(dataset)}</h3>" + _table(
            ["split", "videos", "published", "minutes", "published", "frames", "published"], rows))
    if "midi_durations" in published:
        d = published["midi_durations"]
        parts.append(f"<h3>Video vs published MIDI durations ({d['videos']} videos; median |difference| "
                     f"{d['median_abs_difference_s']:.2f} s)</h3>" + _table(
            ["video", "ours (s)", "MIDI (s)", "difference (s)"],
            [[html.escape(r["video_id"]), _fmt(r["duration_s"], 2), _fmt(r["midi_duration_s"], 2),
              _fmt(r["difference_s"], 2)] for r in d["rows"]]))
    return "".join(parts)


def _labels_section(labels: dict) -> str:
    rows = [[split, s["notes"], _fmt(s["notes_per_s"], 2), s["kept_frames"], _fmt(s["no_key_share"]),
             len(s["keys_never_down"])] for split, s in labels.items()]
    overall = labels["overall"]
    return (_table(["split", "notes", "notes/s", "kept frames", "share with no key down", "keys never down"], rows)
            + _keys_plot(overall["pitch_histogram"], "Notes per key (all splits)", "notes")
            + _histograms_plot(overall)
            + "".join(f"<p>Keys never down in a kept frame of <b>{html.escape(split)}</b>: "
                      f"{html.escape(', '.join(note(m) for m in s['keys_never_down']) or 'none')}</p>"
                      for split, s in labels.items() if split != "overall"))


def _av_section(av: dict, videos: list[dict]) -> str:
    """The labels' agreement with the pictures per split, and for each flagged video its
    score over the offsets searched (a matched video shows one sharp peak)."""
    rows = [[split, a["videos"], a["measured"], a["aligned"], _fmt(a["median_abs_offset_s"]), _fmt(a["mean_score"]),
             *[len(a[flag]) for flag in AV_FLAGS]] for split, a in av.items()]
    flagged = [v for v in videos if v.get("av_curve") and set(v["flags"]) & set(AV_FLAGS)]
    return (_table(["split", "videos", "measured", "aligned", "median |offset| s", "mean agreement", *AV_FLAGS], rows)
            + (_curves_plot(flagged) if flagged else '<p class="ok">No video flagged.</p>'))


def _curves_plot(videos: list[dict]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    for v in videos[:12]:
        curve = np.asarray(v["av_curve"], float)
        offsets = np.linspace(-1, 1, len(curve))
        ax.plot(offsets, curve, lw=1, label=f"{v['video_id']} ({', '.join(f for f in v['flags'] if f in AV_FLAGS)})")
    ax.set_xlabel("audio offset (s, + = audio late)")
    ax.set_ylabel("agreement (peak = 1)")
    ax.set_title("Flagged videos: the labels' agreement with the pictures over the offsets searched")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return figure_tag(fig, "agreement over the offsets: " + ", ".join(v["video_id"] for v in videos[:12]))


def _videos_section(videos: list[dict]) -> str:
    rows = []
    for v in videos:
        flags = ", ".join(v["flags"])
        status = v["status"] if v["status"] == "ok" else f"{v['status']} ({v['error_class']})"
        name = html.escape(v["video_id"])
        link = f'<a href="videos/{html.escape(v["video_id"], quote=True)}.html">{name}</a>' if v["status"] == "ok" else name
        rows.append([link, html.escape(v["split"]), html.escape(status), _fmt(v["duration_s"], 1),
                     _fmt(v.get("audio_s"), 1), v["n_frames"], v["n_kept"], _fmt(v.get("drop_ratio"), 2),
                     _fmt(v["kb_score"], 2), _fmt(v["kb_source"]), _fmt(v["kb_located_iou"], 2), _fmt(v["n_notes"]),
                     _fmt(v.get("av_offset_s"), 3), _fmt(v.get("av_score"), 2),
                     f'<span class="flag">{html.escape(flags)}</span>' if flags else '<span class="ok">-</span>'])
    return _table(["video", "split", "status", "video s", "audio s", "frames", "kept", "drop ratio", "kb score",
                   "kb source", "crop IoU", "notes", "av offset s", "av agreement", "flags"], rows, left=3)


def _checks_section(checks: list[dict]) -> str:
    if not checks:
        return '<p class="ok">No duplicate ids or sources, no source in two splits, every frame has its labels and every label its frame.</p>'
    return _table(["check", "where", "count", "detail"],
                  [[f'<span class="flag">{html.escape(c["check"])}</span>', html.escape(c["where"]), c["count"],
                    html.escape(c["detail"])] for c in checks], left=2)


def _compare_section(compare: dict) -> str:
    rows = [[split, s["frames"], _fmt(s["frame_f1"]), _fmt(s["onset_f1_mean"])]
            for split, s in [*compare["splits"].items(), ("overall", compare["overall"])]]
    worst = np.argsort(compare["overall"]["key_disagreement"])[::-1][:5]
    return (f"<p>Reference <b>{html.escape(compare['reference'])}</b>, compared <b>{html.escape(compare['other'])}</b>.</p>"
            + _table(["split", "kept frames", "frame F1", "mean onset F1 (per video)"], rows)
            + _keys_plot(compare["overall"]["key_disagreement"], "Share of kept frames where the versions disagree",
                         "share")
            + "<p>Most disagreement: " + ", ".join(f"{note(21 + k)} ({compare['overall']['key_disagreement'][k]:.3f})"
                                                   for k in worst) + "</p>")


def _provenance(result: dict) -> str:
    """When and with what the corpus was built and audited: versions, labeler, config."""
    p = result.get("provenance", {})
    label = p.get("label_spec", {})
    rows = [["audited", _fmt(p.get("audited"))], ["built", _fmt(p.get("created"))],
            ["pianocorpus", _fmt(p.get("tool"))], ["python", _fmt(p.get("python"))],
            ["labels", f"{_fmt(result['label_version'])}: {_fmt(label.get('backend'))} "
                       f"{_fmt(label.get('backend_version'))}, params {_fmt(json.dumps(label.get('params', {})))}"],
            ["manifest", _fmt(result.get("manifest"))]]
    packages = ", ".join(f"{k} {v}" for k, v in sorted((p.get("packages") or {}).items()))
    config = html.escape(json.dumps(p.get("config", {}), indent=1))
    return (_table(["", ""], rows) + f"<p>Packages: {html.escape(packages) or '-'}</p>"
            f"<details><summary>Build configuration</summary><pre>{config}</pre></details>")


def render_html(result: dict) -> str:
    sections = [("Provenance", _provenance(result)), ("Splits", _splits_section(result)), ("Published figures", _published_section(result["published"])),
                ("Labels (" + html.escape(result["label_version"]) + ")", _labels_section(result["labels"])),
                ("Audio and pictures", _av_section(result["av"], result["videos"])),
                ("Videos", _videos_section(result["videos"])), ("Checks", _checks_section(result["checks"]))]
    if "compare" in result:
        sections.append(("Label versions compared", _compare_section(result["compare"])))
    body = "".join(f"<h2>{title}</h2>{content}" for title, content in sections)
    return _page(f"Audit of {result['corpus']}", body)


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>')


def render_video_page(entry: dict, pictures: dict[str, str], version: str) -> str:
    """One video's page: its figures, the source frame with the keys, kept crops, a frame
    per drop reason, the labels over the timeline."""
    figures = _table(["", ""], [[k, _fmt(entry.get(k), 2)] for k in
                                ("split", "dataset", "duration_s", "n_frames", "n_kept", "drop_ratio", "kb_score",
                                 "kb_source", "n_notes", *AV_SHOWN)]
                     + [["flags", html.escape(", ".join(entry["flags"]) or "-")]])
    body = ('<p><a href="../report.html">back to the audit</a></p>' + figures
            + f"<h2>Source frame, keyboard quad and the 88 keys</h2>{pictures['source']}"
            + f"<h2>Kept crops</h2><figure>{pictures['kept']}</figure>"
            + f"<h2>A dropped frame per reason</h2><figure>{pictures['drops']}</figure>"
            + f"<h2>Labels ({html.escape(version)}) over the video</h2>{pictures['timeline']}")
    return _page(f"Video {entry['video_id']}", body)


def write_report(result: dict, corpus: "Path | CorpusLayout", cache: Path | str | None = None) -> tuple[Path, Path]:
    """stats/audit.json, stats/report.html and a page per ok video (stats/videos/ID.html),
    each written whole then renamed; `cache`: the download cache, a folder or URI (default
    CORPUS/.cache), that the source frames come from."""
    import matplotlib

    matplotlib.use("Agg")
    layout = CorpusLayout.published(corpus)
    cache_layout = CacheLayout(cache or layout.default_cache)
    json_path, html_path = layout.audit_json, layout.report_html
    recorded = result.get("provenance", {}).get("config", {}).get("frames")
    frames = FrameConfig(**recorded) if recorded else FrameConfig()
    crop = (frames.crop_width, frames.crop_height)
    rows = {r["video_id"]: r for r in pq.read_table(pull(layout.videos)).to_pylist()}
    for entry in result["videos"]:
        if entry["status"] == "ok":
            pictures = video_pictures(layout, rows[entry["video_id"]], result["label_version"], cache_layout, crop)
            atomic_text(render_video_page(entry, pictures, result["label_version"]), layout.video_page(entry["video_id"]))
    atomic_json(result, json_path)
    atomic_text(render_html(result), html_path)
    return json_path, html_path
