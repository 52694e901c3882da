"""Models: MobileNetV1-BAS and pretrained-backbone loading."""
from .mobilenet_bas import BASOutput, MobileNetBAS
from .pretrained import PretrainedMismatchError, load_pretrained_backbone

__all__ = ["BASOutput", "MobileNetBAS", "PretrainedMismatchError", "load_pretrained_backbone"]
