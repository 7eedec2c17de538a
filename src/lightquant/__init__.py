"""LightQuant: next-day stock movement prediction from prices and news.

``lightquant.compose(...)`` and ``lightquant.train(cfg)`` run training from Python (a notebook)
as ``train.py`` does; they load on first use, so ``import lightquant`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["compose", "train"]


def __getattr__(name: str):
    if name in __all__:
        from lightquant import api

        return getattr(api, name)
    raise AttributeError(f"module 'lightquant' has no attribute {name!r}")
