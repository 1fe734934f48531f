"""`python -m avatar_runtime.train --out runs/tiny [--preset tiny] [--stage 1] [--steps 300]
[--videos PATH [PATH ...]]`

Trains the Portrait4D reconstructor on synthetic heads, and in stage 2 on pseudo
multi-view videos made from monocular real videos (--videos); re-running resumes.
See README.md.
"""

from __future__ import annotations

import argparse
import logging

from avatar_runtime.train.trainer import TrainConfig, Trainer


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m avatar_runtime.train", description=__doc__)
    p.add_argument("--out", required=True, help="run directory (log.jsonl, checkpoint/)")
    p.add_argument("--preset", default="tiny", choices=["tiny", "small", "paper"])
    p.add_argument("--stage", type=int, default=1, choices=[1, 2])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--subjects", type=int, default=12)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--init-from", help="checkpoint directory to start from (stage 2)")
    p.add_argument("--perceptual-weights", help="TorchScript feature network (else skipped)")
    p.add_argument("--identity-weights", help="TorchScript face-ID network (else skipped)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    v = p.add_argument_group("stage 2 on real videos")
    v.add_argument("--videos", nargs="+", default=[], metavar="PATH",
                   help="video files or image folders (or folders of those), made into "
                        "pseudo multi-view videos")
    v.add_argument("--video-cache", help="preparation cache (default: OUT/video_cache)")
    v.add_argument("--video-views", type=int, default=4, help="synthesised cameras per video")
    v.add_argument("--frame-step", type=int, default=1, help="use every n-th frame")
    v.add_argument("--max-frames", type=int, help="frames per video at most")
    v.add_argument("--no-calibrate", action="store_true",
                   help="skip measuring each video avatar's expression response (~5 s/video)")
    v.add_argument("--video-reading", choices=("features", "fit"), default="features",
                   help="how expressions are read: 'fit' for clips rendered from our own avatars")
    v.add_argument("--real-source-prob", type=float, default=0.1,
                   help="probability that the real frame replaces the source view")
    v.add_argument("--real-target-prob", type=float, default=0.8,
                   help="probability that the real frame replaces the target view")
    v.add_argument("--video-prob", type=float, default=1.0,
                   help="fraction of stage-2 examples from the videos (else synthetic)")
    a = p.parse_args(argv)
    if a.videos and a.stage != 2:
        p.error("--videos needs --stage 2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = TrainConfig(preset=a.preset, stage=a.stage, steps=a.steps, batch=a.batch, lr=a.lr,
                         subjects=a.subjects, eval_every=a.eval_every, init_from=a.init_from,
                         perceptual_weights=a.perceptual_weights, identity_weights=a.identity_weights,
                         seed=a.seed, device=a.device, videos=tuple(a.videos),
                         video_cache=a.video_cache, video_views=a.video_views,
                         video_frame_step=a.frame_step, video_max_frames=a.max_frames,
                         video_calibrate=not a.no_calibrate, video_reading=a.video_reading,
                         real_source_prob=a.real_source_prob,
                         real_target_prob=a.real_target_prob, video_prob=a.video_prob)
    records = Trainer(config, a.out).run()
    evals = [(r["step"], r["heldout_psnr"]) for r in records if "heldout_psnr" in r]
    print("held-out PSNR by step:", ", ".join(f"{s}: {v:.2f} dB" for s, v in evals))


if __name__ == "__main__":
    main()
