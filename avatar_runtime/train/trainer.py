"""Training loop for the Portrait4D reconstructor: resumable, logged (JSON lines), with a
progress bar and held-out-view PSNR."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avatar_runtime.reconstruct.portrait4d import (Portrait4D, Portrait4DConfig, load_checkpoint,
                                                   preset, save_checkpoint)
from avatar_runtime.train.data import Batch, RealFrames, StageSampler, SyntheticSet, collate, held_out
from avatar_runtime.train.losses import (LossWeights, PretrainedLoss, depth_l1, ssim,
                                         triplane_prior)
from avatar_runtime.train.synthetic import SyntheticConfig, SyntheticHeads

log = logging.getLogger(__name__)
STATE = "train_state.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Configuration of `Trainer`."""

    preset: str = "tiny"
    """Network preset (tiny / small / paper)."""
    model: Portrait4DConfig | None = None
    """Explicit network configuration (overrides `preset`)."""
    stage: int = 1
    """1: static multi-view; 2: cross-view self-reenactment."""
    steps: int = 300
    batch: int = 2
    lr: float = 5e-4
    subjects: int = 12
    """Synthetic subjects in the fixed training set."""
    expressions: int = 2
    """Expressions per subject."""
    views: int = 6
    """Training cameras per subject."""
    eval_examples: int = 6
    """Held-out-view examples for PSNR."""
    eval_every: int = 25
    checkpoint_every: int = 50
    seed: int = 0
    device: str = "cpu"
    """Torch device for the model and batches ("cuda" on GPUs)."""
    init_from: str | None = None
    """Checkpoint to start from (stage 2 starts from stage 1)."""
    perceptual_weights: str | None = None
    """TorchScript feature network for the perceptual loss (skipped when None)."""
    identity_weights: str | None = None
    """TorchScript face-recognition network for the identity loss (skipped when None)."""
    real_source_prob: float = 0.1
    """Stage 2 on videos: probability that the real frame replaces the source view p."""
    real_target_prob: float = 0.8
    """Stage 2 on videos: probability that the real frame replaces the target view q."""
    videos: tuple[str, ...] = ()
    """Stage 2: monocular videos (files, image folders, or folders of those) turned into
    pseudo multi-view videos (`pseudo_multiview.py`)."""
    video_cache: str | None = None
    """Where the videos' preparation is cached (default: <out_dir>/video_cache)."""
    video_prob: float = 1.0
    """Stage 2 on videos: fraction of examples drawn from the videos (else synthetic)."""
    video_views: int = 4
    """Synthesised cameras per video."""
    video_frame_step: int = 1
    video_max_frames: int | None = None
    video_calibrate: bool = True
    """Measure each video avatar's expression response before solving its frames."""
    video_reading: str = "features"
    """How the videos' expressions are read: "fit" for clips rendered from our avatars."""
    weights: LossWeights = field(default_factory=LossWeights)


class Trainer:
    """`Trainer(config, out_dir).run()`; re-running with the same out_dir resumes."""

    def __init__(self, config: TrainConfig, out_dir: Path | str, real: RealFrames | None = None):
        """real: a stage-2 real-frame provider; default: built from `config.videos`."""
        self.config, self.out = config, Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)
        self.model = load_checkpoint(config.init_from).train() if config.init_from else \
            Portrait4D(config.model or preset(config.preset))
        net = self.model.config
        gen = SyntheticHeads(SyntheticConfig(image_size=net.encoder.image_size))
        self.data = SyntheticSet(gen, config.subjects, config.expressions, config.views,
                                 net.planes.render_size, config.seed)
        if real is None and config.videos and config.stage == 2:
            real = self._videos(net.encoder.image_size, net.planes.render_size)
        elif config.videos and config.stage == 1:
            log.warning("videos are used in stage 2 only; stage 1 trains on synthetic heads")
        self.real = real
        self.sampler = StageSampler(self.data, config.stage, real, config.real_source_prob,
                                    config.real_target_prob, config.video_prob)
        self.model.to(config.device)
        self.eval_batch = collate(held_out(self.data, config.eval_examples)).to(config.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.perceptual = PretrainedLoss("perceptual", config.perceptual_weights)
        self.identity = PretrainedLoss("identity", config.identity_weights)
        self.step, self.rng = 0, np.random.default_rng(config.seed)
        self._resume()

    def _videos(self, image_size: int, low_size: int) -> RealFrames:
        from avatar_runtime.train.pseudo_multiview import PseudoMultiView, PseudoMultiViewConfig

        c = self.config
        pmv = PseudoMultiViewConfig(image_size=image_size, low_size=low_size, views=c.video_views,
                                    frame_step=c.video_frame_step, max_frames=c.video_max_frames,
                                    calibrate=c.video_calibrate, reading=c.video_reading, seed=c.seed)
        cache = Path(c.video_cache) if c.video_cache else self.out / "video_cache"
        return PseudoMultiView.from_videos(c.videos, cache, pmv, head=self.data.gen.head)

    def run(self) -> list[dict]:
        """Train to `config.steps`; returns the log records of this run."""
        records = []
        with tqdm(total=self.config.steps, initial=self.step, desc=f"stage {self.config.stage}") as bar:
            while self.step < self.config.steps:
                batch = self.sampler.batch(self.rng, self.config.batch).to(self.config.device)
                losses = self.train_step(batch)
                self.step += 1
                record = {"step": self.step, **losses}
                if self.step % self.config.eval_every == 0 or self.step == self.config.steps:
                    record["heldout_psnr"] = self.evaluate()
                if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                    self.save()
                records.append(record)
                self._log(record)
                bar.set_postfix(loss=f"{losses['total']:.4f}")
                bar.update()
        return records

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimiser step; returns each loss term as a float."""
        self.model.train()
        cache = self.model.encode_source(batch.source, batch.source_motion)
        planes = self.model.animate(cache, batch.driving_motion)
        out = self.model.render(planes, batch.cameras, cache)
        terms = self.losses(out, planes, batch)
        total = sum(getattr(self.config.weights, k) * v for k, v in terms.items())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return {"total": float(total.detach()), **{k: float(v.detach()) for k, v in terms.items()}}

    def losses(self, out, planes: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        terms = {
            "l1": (out.rgb - batch.rgb).abs().mean(),
            "l1_low": (out.rgb_low - batch.rgb_low).abs().mean(),
            "ssim": 1 - ssim(out.rgb.clamp(0, 1), batch.rgb),
            "depth": depth_l1(out.depth, batch.depth_low, batch.alpha_low),
            "opacity": (out.opacity - batch.alpha_low).abs().mean(),
            "triplane": triplane_prior(planes),
        }
        if self.perceptual.enabled:
            terms["perceptual"] = self.perceptual(out.rgb, batch.rgb)
        if self.identity.enabled:
            terms["identity"] = self.identity(out.rgb, batch.rgb)
        return terms

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean PSNR (dB) of the super-resolved image at held-out views."""
        self.model.eval()
        b = self.eval_batch
        cache = self.model.encode_source(b.source, b.source_motion)
        out = self.model.render(self.model.animate(cache, b.driving_motion), b.cameras, cache)
        mse = ((out.rgb.clamp(0, 1) - b.rgb) ** 2).flatten(1).mean(1)
        return float((-10 * torch.log10(mse)).mean())

    def save(self) -> None:
        """Weights + config (safetensors/JSON) and the optimiser / RNG state for resuming."""
        trained_on = "synthetic parametric heads (avatar_runtime.train.synthetic)"
        if self.real is not None and self.config.stage == 2:
            trained_on += " + pseudo multi-view real videos (avatar_runtime.train.pseudo_multiview)"
        meta = {"trained_on": trained_on,
                "stage": self.config.stage, "step": self.step, "train_config": asdict(self.config)}
        save_checkpoint(self.model, self.out / "checkpoint", meta)
        torch.save({"optimizer": self.optimizer.state_dict(), "step": self.step,
                    "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state()},
                   self.out / "checkpoint" / STATE)

    def _resume(self) -> None:
        state_file = self.out / "checkpoint" / STATE
        if not state_file.is_file():
            return
        self.model = load_checkpoint(self.out / "checkpoint", self.config.device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        state = torch.load(state_file, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at step %d", state_file, self.step)

    def _log(self, record: dict) -> None:
        record = {**record, "time": time.time()}
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps({k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                                for k, v in record.items()}) + "\n")
