"""`agd train ARCH.json`: train a derived generator from scratch by distillation (resumable)."""

from __future__ import annotations

import json

import click

from .options import device_options


@click.command()
@click.argument("arch_path", metavar="ARCH.json")
@click.option("--teacher", default="realesrgan-x4plus", show_default=True,
              help="realesrgan-x4plus, esrgan-pth:PATH, cyclegan-pth:PATH, PATH.onnx, ncnn:PATH.param "
                   "or a named ncnn model (waifu2x-cunet-denoise0..3, realcugan-x2, ...).")
@click.option("--data", default=None, help="Folder of HR training images (default: the built-in images).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="Passes over the training LR pixels (ignored with --steps).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Total optimizer steps.")
@click.option("--patch", type=click.IntRange(min=4), default=32, show_default=True, help="LR patch side.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lr", "lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
# --loss: train/loop.py LOSSES' keys, spelled out to keep torch out of the CLI's start-up (tests check they agree)
@click.option("--loss", type=click.Choice(["l1", "mse", "psnr"]), default="l1", show_default=True,
              help="The teacher term: l1, mse (what PSNR vs the teacher scores), or psnr (the log of each patch's "
                   "MSE: clean and heavily degraded patches weigh alike).")
@click.option("--gt-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of an L1 term to the ground truth (the teacher term has weight 1).")
@click.option("--vgg", type=click.Path(dir_okay=False), default=None,
              help="A torchvision-layout VGG19 state_dict (.pth) for perceptual/style terms (never downloaded).")
@click.option("--perceptual-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of the VGG conv5_4 L1 term (default 0.01 when --vgg is given).")
@click.option("--style-weight", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--ckpt-every", type=click.IntRange(min=1), default=50, show_default=True,
              help="Save a resumable checkpoint every N steps.")
@click.option("--max-side", type=click.IntRange(min=16), default=512, show_default=True,
              help="Centre-crop HR training images to this side before running the teacher (its cost).")
@click.option("--degradation", default=None, callback=lambda c, p, v: _check_degradation(v),
              help="LR inputs teacher and student see: bicubic, realesrgan (Real-ESRGAN's second-order blur/"
                   "resize/noise/JPEG), realesrgan+clean (30% of draws clean bicubic), photo (mild blur/noise/"
                   "JPEG q60-95, 20% clean), jpeg:Q or noise:S. "
                   "Default: jpeg:Q for the waifu2x denoise teachers, else bicubic (realesrgan is opt-in: "
                   "benchmarks/results/degradation.md).")
@click.option("--variants", type=click.IntRange(min=1), default=2, show_default=True,
              help="Degraded variants per image, cached with the teacher's outputs (random degradations only).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="DataLoader worker processes cutting the next batches while a step trains (pinned memory on "
                   "CUDA); 0: in the training process. The same batches, so the same weights, at any value.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out", default="ckpt", show_default=True, help="Output CKPT folder.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from <out>.partial/ after an interruption.")
@device_options(amp_default="auto")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def train(arch_path, teacher, data, epochs, steps, patch, batch, lr, loss, gt_weight, vgg, perceptual_weight,
          style_weight, ckpt_every, max_side, degradation, variants, threads, workers, seed, out, resume, device, amp,
          as_json):
    """Train ARCH.json (or an arch's CKPT folder) from scratch, distilling TEACHER on --data.

    Loss: L1 (or --loss mse / psnr) to the teacher's output [+ gt-weight * L1 to ground truth] [+ VGG terms]. Writes
    the CKPT folder OUT (generator.safetensors + arch.json); checkpoints go to OUT.partial/ and a rerun resumes
    from them.

    \b
    Several GPUs / processes: torchrun --nproc_per_node N -m agd_deploy train ... (--batch stays the
    effective batch, split over the ranks; rank 0 writes OUT)."""
    from ..data import open_images
    from ..space import Arch
    from ..teachers import load_teacher
    from ..train import TrainConfig, train as run_train

    arch = Arch.load(arch_path)
    if vgg and perceptual_weight is None:
        perceptual_weight = 0.01
    cfg = TrainConfig(steps=steps, epochs=epochs, patch=patch, batch=batch, lr=lr, loss=loss, gt_weight=gt_weight,
                      vgg=vgg, perceptual_weight=perceptual_weight or 0.0, style_weight=style_weight,
                      ckpt_every=ckpt_every, seed=seed, threads=threads, max_side=max_side, degradation=degradation, variants=variants,
                      device=device, amp=amp, workers=workers)
    if (perceptual_weight or style_weight) and not vgg:
        raise click.BadParameter("perceptual/style terms need --vgg STATE_DICT", param_hint="--perceptual-weight")
    t = load_teacher(teacher)
    images = open_images(data, "train")
    _refuse_non_rgb(teacher, images)
    res = run_train(arch, t, images, cfg, out, resume=resume)
    if res.get("rank", 0) != 0:
        return  # under torchrun rank 0 alone reports
    if as_json:
        click.echo(json.dumps(res))
    else:
        extra = f" (resumed from step {res['resumed_from']})" if res.get("resumed_from") else ""
        click.echo(f"trained {res['steps']} steps{extra} on {res.get('degradation', 'bicubic')} LR, final loss "
                   f"{res['final_loss']:.4f} -> {res['ckpt']}")


def _refuse_non_rgb(teacher: str, images) -> None:
    """An ncnn teacher takes RGB files only (teachers/ncnn_teacher.py: refuse_non_rgb); other teachers keep
    data/images.py's conversion."""
    from ..teachers.ncnn_teacher import is_ncnn_spec, refuse_non_rgb

    if is_ncnn_spec(str(teacher)):
        refuse_non_rgb(images, str(teacher))


def _check_degradation(value):
    """A bad --degradation is a usage error (exit 2) before the teacher loads."""
    if value is None:
        return None
    from ..data.degrade import get_degradation
    from ..errors import AgdError

    try:
        return get_degradation(value).name
    except AgdError as e:
        raise click.BadParameter(str(e), param_hint="--degradation") from None
