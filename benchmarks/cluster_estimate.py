"""On paper: the time to build PianoYT (17.8 h, 228 videos) and a 1,000-hour corpus on 1, 4
and 16 nodes of 8 GPUs, from per-stage costs measured on this project's 2-core machine,
and the serial part that no number of nodes shortens.

The measured costs are the defaults (each flag says where it comes from); transkun's
real-time factor on one GPU has not been measured here (no GPU was lent) and is an
assumption: pass what `benchmarks/label_speed.py` prints on a GPU. Downloading is left
out: YouTube's rate limit per address, not the cluster, bounds it (`--requests-per-s`).

    PYTHONPATH=. .venv/bin/python benchmarks/cluster_estimate.py [--gpu-rtf 50]
"""

from __future__ import annotations

import argparse

CORPORA = {"PianoYT (17.8 h, 228 videos)": (17.8 * 3600, 228, 40 * 60),
           "1,000 h (12,800 videos of 4.7 min)": (1000 * 3600, 12_800, 40 * 60)}  # (video s, videos, longest s)


def estimate(video_s: float, videos: int, longest_s: float, nodes: int, args) -> dict:
    """Seconds of each stage on `nodes` nodes: the CPU stage and the GPU labels overlap (a
    streaming graph), assembly follows them, the serial part is the driver's."""
    cpus, gpus = nodes * args.cpus_per_node, nodes * args.gpus_per_node
    cpu_stage = video_s * args.cpu_s_per_video_s / cpus
    labels = video_s / (args.gpu_rtf * gpus * args.actors_per_gpu * args.actor_share)
    straggler = max(args.segment_s * args.cpu_s_per_video_s, longest_s / (args.gpu_rtf * args.actor_share))
    assembly = video_s * args.fps * args.kept * args.assembly_cpu_ms / 1000 / cpus
    serial = args.ray_start_s + videos * args.driver_s_per_video + args.publish_s
    graph = max(cpu_stage, labels, straggler)
    return {"graph": graph, "assembly": assembly, "serial": serial, "total": graph + assembly + serial,
            "bound": "labels" if labels >= max(cpu_stage, straggler) else "CPU" if cpu_stage >= straggler else "longest video"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu-s-per-video-s", type=float, default=0.19,
                   help="CPU seconds per video second of fetch, locate, frame pass and audio (bench-build pinned to "
                        "1 core: 171.1 s for 840 s of 720p video, basic-pitch included, less 10 s of Ray start)")
    p.add_argument("--gpu-rtf", type=float, default=50.0,
                   help="transkun's real-time factor on one GPU: ASSUMED, not measured here (CPU: 0.6x on 2 cores)")
    p.add_argument("--actors-per-gpu", type=int, default=1, help="--gpus-per-actor 1/N")
    p.add_argument("--actor-share", type=float, default=1.0,
                   help="what one of several actors on a GPU gets of its speed (1: they do not share)")
    p.add_argument("--assembly-cpu-ms", type=float, default=0.41,
                   help="CPU ms per kept frame of the shards (bench-assembly: 160,000 frames in 32.9 s on 2 CPUs)")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--kept", type=float, default=0.8, help="share of frames kept")
    p.add_argument("--segment-s", type=float, default=120.0)
    p.add_argument("--cpus-per-node", type=int, default=96)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--ray-start-s", type=float, default=10.0, help="Ray and the graph starting (measured: 6-10 s)")
    p.add_argument("--driver-s-per-video", type=float, default=0.06,
                   help="the driver's requests per video at assembly (about 3 HEADs of 20 ms on a real S3)")
    p.add_argument("--publish-s", type=float, default=5.0)
    args = p.parse_args()
    print(f"assumed transkun real-time factor on one GPU: {args.gpu_rtf:g}x (not measured); "
          f"{args.cpus_per_node} CPUs and {args.gpus_per_node} GPUs a node; downloads left out")
    for name, (video_s, videos, longest) in CORPORA.items():
        print(f"\n{name}")
        print(f"  {'nodes':>5}  {'graph':>8}  {'assembly':>8}  {'serial':>7}  {'total':>8}  bound by")
        for nodes in (1, 4, 16):
            e = estimate(video_s, videos, longest, nodes, args)
            print(f"  {nodes:>5}  {e['graph'] / 60:7.1f}m  {e['assembly'] / 60:7.1f}m  {e['serial'] / 60:6.1f}m  "
                  f"{e['total'] / 60:7.1f}m  {e['bound']}")


if __name__ == "__main__":
    main()
