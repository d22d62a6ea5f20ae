"""Self-supervised pretraining of the muscle network on unlabelled CT (transfer learning)."""

from .loop import PretrainSettings, pretrain, ssl_losses

__all__ = ["PretrainSettings", "pretrain", "ssl_losses"]
