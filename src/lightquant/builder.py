"""Config -> data and model: the one place that turns a composed config into the dataset (with its
texts encoded) and the model, reading what the model declares it needs (``needs``,
:class:`lightquant.models.needs.DataNeeds`): its item layout, horizons and the sizes taken from
the data. ``training.train``, evaluation, the entry points and the benchmarks all build through it.
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from lightquant.data.encoders import encode_cached
from lightquant.data.market import MarketData, load_market_data
from lightquant.errors import ConfigError
from lightquant.models.layers import WordEncoder
from lightquant.models.needs import DataNeeds, needs_of
from lightquant.settings import dataset_settings

#: model sizes the data gives: key -> (its value in the data, whether a configured value fits, what the data has)
DATA_SIZES = {
    "num_stocks": (lambda data: len(data.stocks), lambda value, n: value >= n,  # per-stock parameters
                   lambda n: f"the dataset has {n} stocks"),
    "vocab_size": (lambda data: data.vocab_size, lambda value, n: value == n,  # word ids: the vocabulary; else 0
                   lambda n: f"the text encoder gives {'a ' + str(n) + '-word vocabulary' if n else 'text vectors (0)'}"),
}


def model_needs(cfg: DictConfig) -> DataNeeds:
    """What ``cfg.model``'s class declares it needs from the data."""
    return needs_of(get_class(cfg.model._target_))


def build_data(cfg: DictConfig, *, norm_stats: tuple | None = None, text_encoder: dict | None = None,
               score_day: Any = None) -> MarketData:
    """Load the dataset; with ``use_news`` also encode its texts (encoder fitted on
    training-period texts only) and attach them.

    A trained model's data (evaluate.py, predict.py): ``norm_stats`` (mean, std) and
    ``text_encoder`` (a fitted encoder's state) are the ones it was trained with, used instead of
    being recomputed; ``score_day`` builds the data as known at that day's close and adds its
    stocks as the :data:`~lightquant.data.market.SCORE_SPLIT` split (``"latest"``: the data's last day)."""
    d = dataset_settings(cfg)  # typed and checked: an exported model's dataset spec too (evaluate, predict)
    data = load_market_data(
        # from a resolved copy: instantiating the node resolves, in the run's config, the lists it points at
        instantiate(OmegaConf.to_container(cfg.dataset.source, resolve=True)),
        cache_dir=cfg.paths.cache_dir,
        until=None if score_day in (None, "latest") else score_day,
        norm_stats=norm_stats,
        # price-only runs leave the texts on disk, unless the protocol selects samples by their texts
        news=bool(cfg.use_news) or d.require_text_days,
        **d.market_arguments(),
    )
    if score_day is None:
        data.check_splits()
    else:  # scoring needs no validation or test samples, only the model's statistics and encoder
        data = data.with_scoring(data.dates[-1] if score_day == "latest" else score_day)
    if cfg.use_news:
        if not data.news_text:
            raise ConfigError(f"use_news=true but dataset {d.name} has no news texts; check its news folders")
        encoder = instantiate(cfg.encoder)
        if text_encoder:
            encoder.load_state(text_encoder)
        emb = encode_cached(encoder, None if text_encoder else data.train_texts(), data.news_text, cfg.paths.cache_dir)
        state = encoder.state()
        # word ids (encoder=words) come with the vocabulary's starting vectors for the model's embedding
        data = data.with_news(emb, d.max_num_tweets_len, state["vectors"] if emb.dtype.kind in "iu" else None)
        data.text_encoder = state
    # The model's declaration decides the item layout (date items for cross-stock models) and the
    # horizons labelled (days t+1 .. t+h for multi-horizon models).
    needs = model_needs(cfg)
    if needs.layout == "date":
        data = data.by_date(d.n_stocks, seed=int(cfg.seed))
    if needs.horizons and cfg.model.get(needs.horizons, 1) > 1:
        data = data.with_horizons(int(cfg.model[needs.horizons]))
    return data


def build_model(cfg: DictConfig, data: MarketData) -> torch.nn.Module:
    """Instantiate ``cfg.model`` after checking its sizes against the data it will see."""
    m = cfg.model
    if "input_size" in m and m.input_size != data.num_features:
        raise ConfigError(
            f"model.input_size={m.input_size} but the dataset gives {data.num_features} features "
            f"({data.feature_names}); leave model.input_size at its default "
            "${lq.len:${dataset.features}} so it follows dataset.features"
        )
    news_size = m.get("news_size", 0)
    if news_size != data.news_size:
        raise ConfigError(
            f"model.news_size={news_size} but the text encoder gives {data.news_size}-dim embeddings; "
            "leave model.news_size at its default so it follows encoder.dim"
        )
    needs = model_needs(cfg)
    if data.vocab_size and "vocab_size" not in needs.from_data:
        raise ConfigError(f"the text encoder ({cfg.encoder._target_}) gives word ids, which only models with a "
                          f"word-level text encoder (a model.vocab_size setting) read; model={cfg.model_name} reads "
                          "text vectors: use encoder=tfidf or encoder=word2vec")
    for key in needs.from_data:  # sizes the config leaves null: from the data; set ones must fit it
        size, check, hint = DATA_SIZES[key]
        value, actual = m.get(key), size(data)
        if value is None:
            with open_dict(cfg):
                cfg.model[key] = actual
        elif not check(value, actual):
            raise ConfigError(f"model.{key}={value} but {hint(actual)}; leave it null so it follows the data")
    model = instantiate(cfg.model)
    if data.word_vectors is not None:  # the word-level encoders start from the encoder's vectors
        for module in model.modules():
            if isinstance(module, WordEncoder):
                module.load_vectors(data.word_vectors)
    return model
