"""Train the `tiny` Portrait4D preset on CPU for a few minutes and print the curve.

    .venv/bin/python scripts/train_tiny.py --out runs/tiny [--steps 150]

Stage 1 (static, synthetic multi-view heads). The training loss (moving average over
10 steps) and the held-out-view PSNR are printed at every evaluation. Re-running with
the same --out resumes.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from avatar_runtime.train.trainer import TrainConfig, Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/tiny")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--eval-every", type=int, default=15)
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = TrainConfig(preset="tiny", stage=1, steps=a.steps, eval_every=a.eval_every,
                         checkpoint_every=a.eval_every, subjects=a.subjects, lr=a.lr)
    trainer = Trainer(config, a.out)
    start = time.process_time()
    initial = trainer.evaluate() if trainer.step == 0 else None
    records = trainer.run()
    cpu_hours = (time.process_time() - start) / 3600
    if initial is not None:
        print(f"step 0: held-out PSNR {initial:.2f} dB")
    losses = [r["total"] for r in records]
    for r in records:
        if "heldout_psnr" in r:
            i = records.index(r)
            avg = float(np.mean(losses[max(0, i - 9): i + 1]))
            print(f"step {r['step']}: loss(avg10) {avg:.4f}  held-out PSNR {r['heldout_psnr']:.2f} dB")
    print(f"CPU time: {cpu_hours:.3f} CPU-hours (process time, all threads)")


if __name__ == "__main__":
    main()
