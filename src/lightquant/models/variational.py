"""The Gaussian latents of the variational news models (StockNet, PEN): a linear layer's output read
as a diagonal Gaussian, its reparameterised sample, the KL divergence between two of them, and the
annealing of the KL term's weight.

Annealing: the t-th training step (t = 1, 2, ...; the models count it in their ``kl_step`` buffer,
saved with the weights, so a resumed run carries on) weighs the KL by min(1, t / steps), the linear
schedule of stocknet-code (``kl_lambda = min(1, kl_lambda_anneal_rate * global_step)``, the rate being
1 / steps), which PEN's code keeps.
"""

from __future__ import annotations

import torch

#: log variances are clamped to this range so exp() can neither overflow nor vanish early in training
LOG_VAR_RANGE = (-10.0, 10.0)


def gaussian(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2Z) linear output -> mean, log variance (..., Z), in float32 (bf16 exp and KL lose too much)."""
    mu, log_var = out.float().chunk(2, dim=-1)
    return mu, log_var.clamp(*LOG_VAR_RANGE)


def sample(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """A reparameterised draw from N(mu, e^log_var): differentiable in both."""
    return mu + (0.5 * log_var).exp() * torch.randn_like(mu)


def gaussian_kl(mu_q: torch.Tensor, lv_q: torch.Tensor, mu_p: torch.Tensor, lv_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, e^lv_q) || N(mu_p, e^lv_p)) summed over the last dim, in float32: (..., Z) -> (...)."""
    mu_q, lv_q, mu_p, lv_p = (t.float() for t in (mu_q, lv_q, mu_p, lv_p))
    return 0.5 * (lv_p - lv_q + (lv_q.exp() + (mu_q - mu_p) ** 2) / lv_p.exp() - 1.0).sum(-1)


def kl_anneal(step: torch.Tensor, steps: int) -> torch.Tensor:
    """The KL weight factor of training step ``step`` (counted from 1): min(1, step / steps), a 0-d
    float tensor (no host sync per step)."""
    return (step.float() / steps).clamp(max=1.0)
