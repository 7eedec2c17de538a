"""What a model needs from the data, declared on the model class (``needs = DataNeeds(...)``).

The builder (:mod:`lightquant.builder`) reads it to shape the data and fill the model's sizes, so
adding a model is its module, its config file and its tests; nothing else names it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataNeeds:
    #: "stock": one window of one stock per item; "date": one date's stocks per item (cross-stock models)
    layout: str = "stock"
    #: reads ``batch.news`` by default (runs need use_news=true)
    news: bool = False
    #: constructor sizes left null in conf/model/ that the builder fills from the data
    #: ("num_stocks": the stocks; "vocab_size": the text encoder's vocabulary, 0 for text vectors)
    from_data: tuple[str, ...] = ()
    #: the constructor argument that sets how many horizons (days t+1 ..) a sample predicts
    horizons: str | None = None


def needs_of(model_class: type) -> DataNeeds:
    """The class's declaration; the plain per-stock, price-first default for classes without one."""
    return getattr(model_class, "needs", DataNeeds())
