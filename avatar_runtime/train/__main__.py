"""`python -m avatar_runtime.train --out runs/tiny [--preset tiny] [--stage 1] [--steps 300]`

Trains the Portrait4D reconstructor on synthetic heads; re-running resumes. See README.md.
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
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = TrainConfig(preset=a.preset, stage=a.stage, steps=a.steps, batch=a.batch, lr=a.lr,
                         subjects=a.subjects, eval_every=a.eval_every, init_from=a.init_from,
                         perceptual_weights=a.perceptual_weights, identity_weights=a.identity_weights,
                         seed=a.seed, device=a.device)
    records = Trainer(config, a.out).run()
    evals = [(r["step"], r["heldout_psnr"]) for r in records if "heldout_psnr" in r]
    print("held-out PSNR by step:", ", ".join(f"{s}: {v:.2f} dB" for s, v in evals))


if __name__ == "__main__":
    main()
