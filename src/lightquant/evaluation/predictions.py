"""Per-sample predictions as a table, with the news behind each one for models that explain.

A model may offer ``explain(batch) -> (B, T, K)``: the weight of each text slot of the
window on its prediction (HAN, PEN). The texts with the largest weights are written next
to the prediction, so a user can read which news items drove it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lightquant.data.market import MarketData
from lightquant.engine.trainer import predict_logits


@torch.no_grad()
def predict_frame(
    model: torch.nn.Module, data: MarketData, split: str, batch_size: int = 1024, top_news: int = 3,
    logits: torch.Tensor | None = None,
) -> pd.DataFrame:
    """One row per stock-day of ``split``: date (day t), target_date (t+1), stock, prob_up,
    pred_up, label, return (t -> t+1), day_return (t-1 -> t); ``prob_up_t+h`` for every horizon of a multi-horizon model; and
    ``news_i``/``news_date_i``/``news_weight_i`` (i = 1..top_news, the day a text is attached
    to) where the model explains. ``logits``: the model's on this split (``predict_logits``), when a
    pass computed them already; the model then runs again only to explain."""
    if logits is None:
        logits = predict_logits(model, data, split, batch_size)[0]
    model.eval()  # explain reads the model as exported
    device = next(model.parameters()).device
    explain = getattr(model, "explain", None) if data.row_news is not None and data.layout == "stock" else None
    s = data.splits[split]
    tops = []
    for i in range(0, len(s) if explain is not None else 0, batch_size):
        batch = data.batch(split, torch.arange(i, min(i + batch_size, len(s)), device=data.device))
        batch = batch.to(device)  # data may stay in host memory when it does not fit the GPU
        w = explain(batch).float().flatten(1)  # (B, T*K)
        k = min(top_news, w.shape[1])
        weight, pos = w.topk(k, dim=1)  # (B, k)
        pos = pos.to(data.device)
        rows = batch.row.to(data.device)[:, None] + data._offsets  # (B, T)
        width = batch.news.shape[-2]  # the batch's text slots (data.batch drops the all-padding ones)
        slots = data.row_news[rows][..., :width].flatten(1).gather(1, pos)  # (B, k) table index, 0 = padding
        day = data.row_day[rows.gather(1, pos // width)]  # (B, k) day the text is attached to
        tops.append((weight.cpu(), slots.cpu(), day.cpu()))
    prob = torch.sigmoid(logits.float().cpu())
    end, y, ret = s.end_row.cpu(), s.y.cpu(), s.ret.cpu()
    extra = {}
    if data.layout == "date":  # (N, S) -> the real stock-days
        m = s.mask.cpu()
        end, y, ret, prob = end[m], y[m], ret[m], prob[m]
    elif data.horizons > 1:  # (N, H) -> headline t+1, other horizons as columns
        extra = {f"prob_up_t+{h + 1}": prob[:, h].numpy() for h in range(1, data.horizons)}
        y, ret, prob = y[:, 0], ret[:, 0], prob[:, 0]
    prob = prob.numpy()
    end = end.to(data.device)
    nxt, has_next = (t.cpu().numpy() for t in data.neighbour(end, 1))  # a stock's last day: not known yet
    prv, has_prev = data.neighbour(end, -1)
    # the move into t's close (previous row's next-day return): a backtest's price-limit rule reads it
    day_return = (torch.where(has_prev, data._row_ret[prv], torch.nan).cpu().numpy() if data._row_ret is not None
                  else np.nan)
    row_day = data.row_day.cpu().numpy()
    frame = pd.DataFrame({
        "date": data.dates[row_day[end.cpu().numpy()]],
        "target_date": np.where(has_next, data.dates[row_day[nxt]], np.datetime64("NaT")),
        "stock": [data.stocks[i] for i in data.row_stock[end].cpu().tolist()],
        "prob_up": prob,
        "pred_up": (prob >= 0.5).astype(int),
        "label": y.numpy().astype(int),
        "return": ret.numpy(),
        "day_return": day_return,
        **extra,
    })
    if tops:
        weight, slots, day = (torch.cat(parts).numpy() for parts in zip(*tops))
        for j in range(weight.shape[1]):
            has = (slots[:, j] > 0) & (weight[:, j] > 0)
            frame[f"news_{j + 1}"] = [data.news_text[k - 1] if h else "" for k, h in zip(slots[:, j], has)]
            frame[f"news_date_{j + 1}"] = np.where(has, data.dates[day[:, j]].astype(str), "")
            frame[f"news_weight_{j + 1}"] = np.where(has, weight[:, j], 0.0)
    return frame
