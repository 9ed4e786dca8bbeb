"""Distillation training of derived archs, checkpoints (CKPT folders) and evaluation.

    ckpt = train(arch, load_teacher("realesrgan-x4plus"), builtin_images("train"), TrainConfig(steps=300), "out/ckpt")
    model, arch = load_ckpt("out/ckpt")
    evaluate("out/ckpt", builtin_images("heldout"), scale=4, teacher="realesrgan-x4plus")
"""

from .ckpt import is_ckpt, load_ckpt, save_ckpt
from .evaluate import evaluate
from .loop import TrainConfig, train
from .models import Upscaler, load_upscaler

__all__ = ["TrainConfig", "Upscaler", "evaluate", "is_ckpt", "load_ckpt", "load_upscaler", "save_ckpt", "train"]
