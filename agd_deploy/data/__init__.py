"""Images and data for training and evaluation: image folders, built-in sample images, the SR protocol (LR by
bicubic, PSNR/SSIM on Y), LR degradations (degrade.py), a teacher-output cache and random patches cut from it."""

from .cache import Sample, TeacherCache, center_crop
from .degrade import Degradation, degrade, get_degradation
from .images import BUILTIN_HELDOUT, BUILTIN_TRAIN, ImageFolder, Images, builtin_images, load_image, open_images
from .patches import PatchDataset
from .protocol import bicubic_upscale, make_lr, psnr_y, rgb_to_y, ssim_y, to_tensor, to_uint8
from .tiles import tiled_apply

__all__ = ["BUILTIN_HELDOUT", "BUILTIN_TRAIN", "Degradation", "ImageFolder", "Images", "PatchDataset", "Sample",
           "TeacherCache", "bicubic_upscale", "builtin_images", "center_crop", "degrade", "get_degradation", "load_image", "make_lr", "open_images", "psnr_y",
           "rgb_to_y", "ssim_y", "tiled_apply", "to_tensor", "to_uint8"]
