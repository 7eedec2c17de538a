"""On-disk cache of parsed panels, in the project's own cache dir.

Parsing thousands of small news files dominates start-up; everything derived from
the panel (features, labels, windows) is vectorised and cheap, so the panel is
what gets cached. Stored as .npz without pickles, written atomically, keyed by the
source's fingerprint (its config and the inode, size, mtime and ctime of every input file).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from lightquant.atomic import atomic_write
from lightquant.data.panel import PRICE_FIELDS, Panel

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


def _encode_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    blobs = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def _decode_texts(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = data.tobytes()
    return [raw[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


def save_panel(panel: Panel, path: Path) -> None:
    text_data, text_offsets = _encode_texts(panel.news_text)
    stocks_data, stocks_offsets = _encode_texts(panel.stocks)
    arrays = {f"price_{f}": panel.prices[f] for f in PRICE_FIELDS}
    atomic_write(path, lambda fh: np.savez(
        fh,
        format=np.array(CACHE_FORMAT),
        dates=panel.dates.astype("datetime64[D]").astype(np.int64),
        stocks_data=stocks_data,
        stocks_offsets=stocks_offsets,
        news_stock=panel.news_stock,
        news_date=panel.news_date.astype("datetime64[D]").astype(np.int64),
        text_data=text_data,
        text_offsets=text_offsets,
        **arrays,
    ))


def load_panel(path: Path, news: bool = True) -> Panel:
    """The cached panel; ``news=False`` leaves its texts on disk (a price-only run never reads
    them, and millions of Python strings would dominate its memory)."""
    with np.load(path, allow_pickle=False) as z:
        if int(z["format"]) != CACHE_FORMAT:
            raise ValueError(f"{path}: cache format {int(z['format'])} != {CACHE_FORMAT}")
        texts = dict(
            news_stock=z["news_stock"],
            news_date=z["news_date"].astype("datetime64[D]"),
            news_text=_decode_texts(z["text_data"], z["text_offsets"]),
        ) if news else {}
        return Panel(
            stocks=_decode_texts(z["stocks_data"], z["stocks_offsets"]),
            dates=z["dates"].astype("datetime64[D]"),
            prices={f: z[f"price_{f}"] for f in PRICE_FIELDS},
            **texts,
        )


def cached_panel(source, cache_dir: str | Path | None, news: bool = True) -> Panel:
    """``source.load()``, through the cache when ``cache_dir`` is set; ``news=False`` drops the
    texts (the cache keeps them, so a later run with news reuses the same file).

    ``source`` is any object with ``name``, ``fingerprint()`` and ``load()``.
    """
    if cache_dir is None:
        panel = source.load()
        return panel if news else panel.without_news()
    path = Path(cache_dir) / "panels" / f"{source.name}-{source.fingerprint()[:20]}.npz"
    if path.exists():
        try:
            panel = load_panel(path, news)
            log.info("Loaded cached panel %s", path)
            return panel
        # A truncated or bit-flipped .npz raises zipfile.BadZipFile (bad zip / bad CRC) and an empty
        # file EOFError, neither of which is an OSError/ValueError: catch them too, or a damaged
        # cache would crash every run instead of being rebuilt.
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # corrupt/old: rebuild
            log.warning("Ignoring unreadable cache %s (%s); rebuilding", path, e)
    panel = source.load()
    try:
        save_panel(panel, path)
        log.info("Cached panel at %s", path)
    except OSError as e:  # a read-only or full cache folder costs the next run a parse, not this run
        log.warning("Could not write the cache %s (%s): continuing without it; set paths.cache_dir or "
                    "LIGHTQUANT_CACHE to a writable folder", path, e)
    return panel if news else panel.without_news()
