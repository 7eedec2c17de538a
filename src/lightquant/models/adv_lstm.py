"""Adv-ALSTM (Feng et al., IJCAI 2019): ALSTM trained with adversarial perturbations of its
latent representation, added to the loss through the engine's ``extra_loss`` hook."""

from __future__ import annotations

import torch

from lightquant.batch import Batch
from lightquant.losses import Criterion, bce
from lightquant.models.alstm import ALSTM
from lightquant.models.layers import check_non_negative_float


class AdvLSTM(ALSTM):
    """ALSTM + adversarial loss ``adv_weight * criterion(head(e + delta), y)``.

    delta = epsilon * g / ||g|| + perturbation_size * r / ||r||, with g the gradient of this
    step's clean loss w.r.t. the latent e (per-sample L2 norm, as in the paper) and
    r ~ N(0, I) an optional random perturbation. The gradient of the adversarial loss flows
    into the whole network through e; delta itself is a constant. ``criterion`` is the run's
    loss (``trainer.loss``: BCE, or hinge as in the paper's code), so the adversarial term is
    scored like the clean one.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 128,
        attention_size: int = 128,
        layers: int = 2,
        dropout: float = 0.2,
        epsilon: float = 0.01,
        perturbation_size: float = 0.0,
        adv_weight: float = 1.0,
        news_size: int = 0,
        mapping_size: int | None = None,
        init: str = "torch",
    ) -> None:
        super().__init__(input_size, hidden_size, attention_size, layers, dropout, news_size, mapping_size, init)
        self.epsilon = check_non_negative_float("epsilon", epsilon)
        self.perturbation_size = check_non_negative_float("perturbation_size", perturbation_size)
        self.adv_weight = check_non_negative_float("adv_weight", adv_weight)
        self._latent: torch.Tensor | None = None

    def forward(self, batch: Batch) -> torch.Tensor:
        e = self.latent(batch)  # (B, 2H)
        # The adversarial direction is the gradient of *this step's* clean loss w.r.t. *this
        # step's* latent, so keep the graph node e for extra_loss; only in training with grad
        # on (eval / no_grad forwards clear it, so a stale latent is never reused).
        self._latent = e if (self.training and torch.is_grad_enabled()) else None
        return self.head(e)  # (B,)

    def extra_loss(self, batch: Batch, loss: torch.Tensor, criterion: Criterion = bce) -> torch.Tensor:
        """Adversarial loss for the clean ``loss`` of the preceding training forward."""
        e, self._latent = self._latent, None  # drop our reference to the graph right away
        if e is None:
            raise RuntimeError(
                "AdvLSTM.extra_loss needs a preceding forward in training mode with grad enabled"
            )
        if e.shape[0] != len(batch):
            raise RuntimeError(
                f"extra_loss batch size {len(batch)} != forward batch size {e.shape[0]}"
            )
        # retain_graph: the engine still backpropagates the clean loss through this graph
        g = torch.autograd.grad(loss, e, retain_graph=True)[0].detach().float()  # (B, 2H)
        # norms in float32: under autocast e / g can be bf16; clamp avoids 0/0 for g == 0
        g_norm = g.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # (B, 1) per-sample L2
        delta = self.epsilon * g / g_norm  # (B, 2H)
        if self.perturbation_size > 0:
            r = torch.randn_like(g)  # (B, 2H)
            r_norm = r.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # (B, 1)
            delta = delta + self.perturbation_size * r / r_norm
        adv_logits = self.head(e + delta.to(e.dtype))  # (B,)
        return self.adv_weight * criterion(adv_logits, batch.y).mean()
