"""Text encoders: texts -> fixed-size embeddings, one interface, chosen in config.

- ``TfidfSvdEncoder`` (default, no download): TF-IDF + truncated SVD (latent semantic
  analysis) from scikit-learn; character n-grams for Chinese, words for English.
- ``Word2VecEncoder``: word vectors trained offline on the training texts (gensim), pooled
  per text (SIF-weighted or mean); needs the optional ``word2vec`` extra.
- ``WordIdsEncoder``: texts as word ids, with a vocabulary and initial word vectors learned from
  the training texts (or read from a local file), for the news models' word-level encoders.
- ``TransformerEncoder``: a pretrained transformer from a local folder (or a hub id when
  online), frozen, pooled (CLS or mean); needs the optional ``transformers`` extra.

All are fitted (where fitting applies) on training-period texts only, and all are
wrapped by :func:`encode_cached`, which keeps embeddings on disk keyed by the
encoder's config and the texts. ``state()`` is what fitting learned, as plain lists and
tensors: a run exports it with its model, so ``evaluate.py`` and ``predict.py`` embed new
texts with the training-time encoder (``load_state``) instead of refitting it on other texts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lightquant.atomic import atomic_write
from lightquant.choices import TOKENIZERS, WORD2VEC_POOLINGS, WORD_VECTOR_MODELS, WORD_VECTOR_SOURCES
from lightquant.errors import ConfigError, DataError, MissingPathError

log = logging.getLogger(__name__)

_CJK = re.compile(r"[\u3400-\u9fff]")


def _mostly_chinese(texts: Sequence[str]) -> bool:
    """Whether most of the (first 2,000) texts an encoder is fitted on contain CJK characters."""
    sample = texts[:2000]
    return sum(bool(_CJK.search(t)) for t in sample) > len(sample) / 2


def _digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def _check_word_vector_settings(dim: int, tokenizer: str, model: str, sg: int, **counts: int) -> None:
    """The settings the word-vector encoders share, each error naming its key."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"encoder.dim={dim!r} must be an integer >= 1")
    if tokenizer not in TOKENIZERS:
        raise ConfigError(f"encoder.tokenizer={tokenizer!r}; use {', '.join(TOKENIZERS)}")
    if model not in WORD_VECTOR_MODELS:
        raise ConfigError(f"encoder.model={model!r}; use {', '.join(WORD_VECTOR_MODELS)}")
    if sg not in (0, 1):
        raise ConfigError(f"encoder.sg={sg!r}: 1 for skip-gram, 0 for CBOW")
    for key, v in counts.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"encoder.{key}={v!r} must be an integer >= 1")


def _resolve_tokenizer(tokenizer: str, texts: Sequence[str]) -> str:
    """``auto``: jieba when most texts are Chinese, else lower-cased whitespace tokens."""
    if tokenizer != "auto":
        return tokenizer
    return "jieba" if _mostly_chinese(texts) else "whitespace"


def tokenize(texts: Sequence[str], tokenizer: str) -> list[list[str]]:
    """Lower-cased words of each text: whitespace-separated (the ACL18 tweets come tokenised) or
    segmented by jieba (Chinese)."""
    if tokenizer == "whitespace":
        return [t.lower().split() for t in texts]
    try:
        import jieba
    except ImportError as e:
        raise ImportError("encoder.tokenizer=jieba needs the optional 'jieba' package: "
                          "pip install -e '.[word2vec]'") from e
    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading banner
    return [[w for w in jieba.lcut(t.lower()) if w.strip()] for t in texts]


def train_word_vectors(sentences: list[list[str]], model: str, dim: int, window: int, sg: int, epochs: int,
                       min_count: int, seed: int):
    """gensim word vectors (``KeyedVectors``) trained on ``sentences``: word2vec, or fastText, whose
    word vectors add character n-gram vectors, so a rare word's vector borrows from its spelling
    (200,000 n-gram buckets instead of gensim's 2 million: ~50 MB at dim 64, not 0.5 GB). One worker
    thread: gensim then seeds every initial vector from ``seed`` alone, so the vectors are reproducible."""
    try:
        from gensim.models import FastText, Word2Vec
    except ImportError as e:
        raise ImportError("word vectors (encoder=word2vec / encoder=words) need the optional 'gensim' package: "
                          "pip install -e '.[word2vec]' (or use the default encoder=tfidf)") from e
    cls, extra = (FastText, {"bucket": 200_000}) if model == "fasttext" else (Word2Vec, {})
    gensim_log = logging.getLogger("gensim")
    level = gensim_log.level
    gensim_log.setLevel(logging.WARNING)  # its per-second progress lines; the callers log what was fitted
    try:
        return cls(sentences, vector_size=dim, window=window, sg=sg, epochs=epochs, min_count=min_count, seed=seed,
                   workers=1, **extra).wv
    finally:
        gensim_log.setLevel(level)


class TfidfSvdEncoder:
    """Latent semantic analysis: TF-IDF, then a truncated SVD to ``dim`` dimensions.

    ``analyzer``: ``char`` (character n-grams, for Chinese: no word segmentation needed),
    ``word``, or ``auto`` (``char`` when most fitted texts contain CJK characters).
    """

    def __init__(
        self,
        dim: int = 64,
        analyzer: str = "auto",
        ngram_range: Sequence[int] = (1, 2),
        max_features: int = 50_000,
        min_df: int = 2,
        seed: int = 0,
    ) -> None:
        if dim < 1:
            raise ConfigError(f"encoder.dim={dim} must be >= 1")
        if analyzer not in ("auto", "char", "word"):
            raise ConfigError(f"encoder.analyzer={analyzer!r}; use auto, char or word")
        self.dim, self.analyzer = int(dim), analyzer
        self.ngram_range = tuple(int(n) for n in ngram_range)
        self.max_features, self.min_df, self.seed = int(max_features), int(min_df), int(seed)
        self._pipeline = None

    def config(self) -> dict:
        return {"kind": "tfidf-svd-1", "dim": self.dim, "analyzer": self.analyzer, "ngram_range": self.ngram_range,
                "max_features": self.max_features, "min_df": self.min_df, "seed": self.seed}

    def _vectorizer(self, analyzer: str, **kwargs):
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(analyzer=analyzer, ngram_range=self.ngram_range, sublinear_tf=True,
                               dtype=np.float32, **kwargs)

    def fit(self, texts: Sequence[str]) -> "TfidfSvdEncoder":
        from sklearn.decomposition import TruncatedSVD

        if len(texts) == 0:
            raise DataError("No training-period texts to fit the text encoder on; check the news folders and dataset.splits")
        analyzer = self.analyzer
        if analyzer == "auto":
            analyzer = "char" if _mostly_chinese(texts) else "word"
        vec = self._vectorizer(analyzer, max_features=self.max_features, min_df=min(self.min_df, len(texts)))
        tfidf = vec.fit_transform(texts)
        # SVD needs fewer components than features; tiny corpora get what they can and are zero-padded.
        k = max(1, min(self.dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1))
        svd = TruncatedSVD(n_components=k, random_state=self.seed)
        svd.fit(tfidf)
        self._pipeline = (vec, svd.components_.astype(np.float32))  # SVD's transform is X @ components.T
        log.info("Fitted TF-IDF(%s n-grams %s, %d terms) + SVD(%d) on %d texts", analyzer, self.ngram_range,
                 len(vec.vocabulary_), k, len(texts))
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._pipeline is None:
            raise RuntimeError("TfidfSvdEncoder.encode before fit")
        vec, components = self._pipeline
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if len(texts):
            z = np.asarray(vec.transform(texts) @ components.T, dtype=np.float32)
            # unit length: LSA similarity is the cosine; keeps the scale independent of text length
            z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-8)
            out[:, : z.shape[1]] = z
        return out

    def state(self) -> dict:
        """The fitted vocabulary, idf weights and SVD axes (plain types: exports load with weights_only)."""
        if self._pipeline is None:
            raise RuntimeError("TfidfSvdEncoder.state before fit")
        vec, components = self._pipeline
        vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.get)  # terms in column order
        return {"kind": "tfidf-svd-1", "analyzer": vec.analyzer, "vocabulary": vocab,
                "idf": torch.from_numpy(np.asarray(vec.idf_, dtype=np.float64)), "components": torch.from_numpy(components)}

    def load_state(self, state: dict) -> "TfidfSvdEncoder":
        """Restore a fitted encoder from :meth:`state`; its texts need not be at hand."""
        if state.get("kind") != "tfidf-svd-1":
            raise ConfigError(f"the saved text encoder is {state.get('kind')!r}, not the TF-IDF one "
                              "(encoder=tfidf); keep the training run's encoder")
        vocab = list(state["vocabulary"])
        vec = self._vectorizer(state["analyzer"], vocabulary={t: i for i, t in enumerate(vocab)})
        vec.idf_ = np.asarray(state["idf"], dtype=np.float64)
        self._pipeline = (vec, np.asarray(state["components"], dtype=np.float32))
        return self


class Word2VecEncoder:
    """Word vectors trained on the training period's own texts (gensim's word2vec), pooled per text.

    No download: the embedding table is learned from the texts the encoder is fitted on (the
    training split's, as every encoder here). ``tokenizer``: ``whitespace`` (lower-cased; the ACL18
    tweets come tokenised), ``jieba`` (Chinese word segmentation, for CSMD news) or ``auto`` (jieba
    when most fitted texts contain CJK characters). ``pooling``: ``mean`` of a text's known words, or
    ``sif`` (Arora et al., ICLR 2017: weights a / (a + p(w)) from the training word frequencies, then
    the first principal component of the training texts' vectors removed), which keeps frequent
    words from dominating. Text vectors are unit length, as the TF-IDF encoder's; a text without a
    known word is zeros. Deterministic for a ``seed``: one worker thread, and gensim seeds its initial
    vectors from the seed alone (tested across processes with different hash seeds).
    """

    def __init__(
        self,
        dim: int = 64,
        tokenizer: str = "auto",
        pooling: str = "sif",
        window: int = 5,
        min_count: int = 2,
        epochs: int = 10,
        sg: int = 1,
        sif_a: float = 1e-3,
        seed: int = 0,
        model: str = "word2vec",
    ) -> None:
        _check_word_vector_settings(dim, tokenizer, model, sg, window=window, min_count=min_count, epochs=epochs)
        if pooling not in WORD2VEC_POOLINGS:
            raise ConfigError(f"encoder.pooling={pooling!r}; use {', '.join(WORD2VEC_POOLINGS)}")
        if not sif_a > 0:
            raise ConfigError(f"encoder.sif_a={sif_a!r} must be > 0")
        self.dim, self.tokenizer, self.pooling = int(dim), tokenizer, pooling
        self.window, self.min_count, self.epochs, self.sg = window, min_count, epochs, sg
        self.sif_a, self.seed, self.model = float(sif_a), int(seed), model
        self._state: dict | None = None

    def config(self) -> dict:
        return {"kind": "word2vec-1", "dim": self.dim, "tokenizer": self.tokenizer, "pooling": self.pooling,
                "window": self.window, "min_count": self.min_count, "epochs": self.epochs, "sg": self.sg,
                "sif_a": self.sif_a, "seed": self.seed, **({"model": self.model} if self.model != "word2vec" else {})}

    def fit(self, texts: Sequence[str]) -> "Word2VecEncoder":
        if len(texts) == 0:
            raise DataError("No training-period texts to fit the text encoder on; check the news folders and dataset.splits")
        tokenizer = _resolve_tokenizer(self.tokenizer, texts)
        sentences = tokenize(texts, tokenizer)
        wv = train_word_vectors(sentences, self.model, self.dim, self.window, self.sg, self.epochs,
                                min(self.min_count, len(texts)), self.seed)
        vocab = list(wv.index_to_key)
        if not vocab:
            raise DataError(f"encoder=word2vec: no word occurs encoder.min_count={self.min_count} times in the "
                            f"{len(texts)} training texts; lower encoder.min_count")
        counts = np.array([wv.get_vecattr(w, "count") for w in vocab], dtype=np.float64)
        weights = self.sif_a / (self.sif_a + counts / counts.sum()) if self.pooling == "sif" else np.ones(len(vocab))
        self._state = {"kind": "word2vec-1", "tokenizer": tokenizer, "vocabulary": vocab,
                       "vectors": torch.from_numpy(wv.vectors.astype(np.float32)),
                       "weights": torch.from_numpy(weights.astype(np.float32)),
                       "component": torch.zeros(self.dim)}
        if self.pooling == "sif":  # the common direction of the training texts, removed from every text
            pooled = self._pool(sentences)
            pooled = pooled[np.abs(pooled).sum(1) > 0]
            if len(pooled) > 1:
                _, _, vt = np.linalg.svd(pooled, full_matrices=False)
                self._state["component"] = torch.from_numpy(vt[0].astype(np.float32))
        log.info("Fitted %s (%s tokens, %d words, dim %d, %d epochs, %s pooling) on %d texts", self.model, tokenizer,
                 len(vocab), self.dim, self.epochs, self.pooling, len(texts))
        return self

    def _pool(self, sentences: list[list[str]]) -> np.ndarray:
        """(texts, dim) weighted means of the known words' vectors: one sparse (texts, words) product."""
        from scipy.sparse import csr_matrix

        st = self._state
        index = {w: i for i, w in enumerate(st["vocabulary"])}
        rows, cols = [], []
        for r, words in enumerate(sentences):
            ids = [index[w] for w in words if w in index]
            rows += [r] * len(ids)
            cols += ids
        weights = st["weights"].numpy()
        m = csr_matrix((weights[cols], (rows, cols)), shape=(len(sentences), len(weights)), dtype=np.float32)
        total = np.asarray(m.sum(axis=1), dtype=np.float32)
        return np.asarray(m @ st["vectors"].numpy()) / np.maximum(total, 1e-12)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._state is None:
            raise RuntimeError("Word2VecEncoder.encode before fit")
        z = self._pool(tokenize(texts, self._state["tokenizer"])).astype(np.float32)
        u = self._state["component"].numpy()
        z -= np.outer(z @ u, u)  # zero for mean pooling (no component kept)
        z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-8)
        return z

    def state(self) -> dict:
        """The fitted vocabulary, word vectors, word weights and removed component (plain types)."""
        if self._state is None:
            raise RuntimeError("Word2VecEncoder.state before fit")
        return dict(self._state)

    def load_state(self, state: dict) -> "Word2VecEncoder":
        if state.get("kind") != "word2vec-1":
            raise ConfigError(f"the saved text encoder is {state.get('kind')!r}, not the word2vec one "
                              "(encoder=word2vec); keep the training run's encoder")
        self._state = {**state, "vocabulary": list(state["vocabulary"])}
        return self


class WordIdsEncoder:
    """Texts as word ids, for the news models' word-level message encoders (``encoder=words``).

    Fitting builds the vocabulary from the training texts (words seen ``min_count`` times, the
    ``max_vocab`` most frequent; ids 0 = padding, 1 = a word outside it) and the initial embedding
    table (``vectors``): ``train`` learns word2vec (or fastText with ``model=fasttext``) vectors on the
    same texts, ``random`` draws small seeded normal vectors (no pretraining at all), and
    ``pretrained_file`` reads a local word-vector file instead (word2vec text or binary format, or a
    GloVe text file without a header line; words missing from it get seeded random vectors of the
    file's scale). ``encode`` gives (texts, ``max_num_tokens_len``) int64 ids, the first words of
    each text, 0-padded. The model's embedding layer starts from the table and trains with it
    (``model.freeze_embeddings`` keeps it fixed).
    """

    def __init__(
        self,
        dim: int = 64,
        tokenizer: str = "auto",
        max_num_tokens_len: int = 30,
        min_count: int = 2,
        max_vocab: int = 50_000,
        vectors: str = "train",
        pretrained_file: str | None = None,
        model: str = "word2vec",
        window: int = 5,
        epochs: int = 10,
        sg: int = 1,
        seed: int = 0,
    ) -> None:
        _check_word_vector_settings(dim, tokenizer, model, sg, max_num_tokens_len=max_num_tokens_len,
                                    min_count=min_count, max_vocab=max_vocab, window=window, epochs=epochs)
        if vectors not in WORD_VECTOR_SOURCES:
            raise ConfigError(f"encoder.vectors={vectors!r}; use {', '.join(WORD_VECTOR_SOURCES)} "
                              "(or encoder.pretrained_file=<a local word-vector file>)")
        if pretrained_file is not None and not Path(pretrained_file).is_file():
            raise MissingPathError(f"encoder.pretrained_file={pretrained_file!r} is not a file: give a local "
                                   "word2vec- or GloVe-format vector file (nothing is downloaded)")
        self.dim, self.tokenizer, self.max_len = int(dim), tokenizer, int(max_num_tokens_len)
        self.min_count, self.max_vocab, self.vectors = min_count, max_vocab, vectors
        self.pretrained_file = str(pretrained_file) if pretrained_file is not None else None
        self.model, self.window, self.epochs, self.sg, self.seed = model, window, epochs, sg, int(seed)
        self._state: dict | None = None

    def config(self) -> dict:
        f = Path(self.pretrained_file) if self.pretrained_file else None
        stamp = [str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] if f else None  # a replaced file re-encodes
        return {"kind": "words-1", "dim": self.dim, "tokenizer": self.tokenizer, "max_len": self.max_len,
                "min_count": self.min_count, "max_vocab": self.max_vocab, "vectors": self.vectors, "pretrained": stamp,
                "model": self.model, "window": self.window, "epochs": self.epochs, "sg": self.sg, "seed": self.seed}

    def fit(self, texts: Sequence[str]) -> "WordIdsEncoder":
        from collections import Counter

        if len(texts) == 0:
            raise DataError("No training-period texts to fit the text encoder on; check the news folders and dataset.splits")
        tokenizer = _resolve_tokenizer(self.tokenizer, texts)
        sentences = tokenize(texts, tokenizer)
        counts = Counter(w for words in sentences for w in words)
        keep = sorted((w for w, c in counts.items() if c >= min(self.min_count, len(texts))),
                      key=lambda w: (-counts[w], w))[: self.max_vocab]  # most frequent first; ties by the word
        if not keep:
            raise DataError(f"encoder=words: no word occurs encoder.min_count={self.min_count} times in the "
                            f"{len(texts)} training texts; lower encoder.min_count")
        rng = np.random.default_rng(self.seed)
        if self.pretrained_file:
            table, found = self._read_pretrained(keep, rng)
            source = f"{found} of {len(keep)} words from {self.pretrained_file}"
        elif self.vectors == "train":
            wv = train_word_vectors(sentences, self.model, self.dim, self.window, self.sg, self.epochs,
                                    min(self.min_count, len(texts)), self.seed)
            table = np.stack([wv[w] for w in keep]).astype(np.float32)  # every kept word met min_count: it has one
            source = f"{self.model} trained on them"
        else:
            table = rng.normal(0.0, 0.1, (len(keep), self.dim)).astype(np.float32)
            source = "random"
        # row 0 (padding) is zeros; row 1 (a word outside the vocabulary) the mean word vector
        vectors = np.concatenate([np.zeros((1, self.dim), np.float32), table.mean(0, keepdims=True), table])
        self._state = {"kind": "words-1", "tokenizer": tokenizer, "vocabulary": keep, "max_len": self.max_len,
                       "vectors": torch.from_numpy(vectors)}
        log.info("Fitted a %d-word vocabulary (%s tokens, vectors %s, dim %d, %d words per text) on %d texts",
                 len(keep), tokenizer, source, self.dim, self.max_len, len(texts))
        return self

    def _read_pretrained(self, words: list[str], rng: np.random.Generator) -> tuple[np.ndarray, int]:
        try:
            from gensim.models import KeyedVectors
        except ImportError as e:
            raise ImportError("encoder.pretrained_file needs the optional 'gensim' package: "
                              "pip install -e '.[word2vec]'") from e
        path = self.pretrained_file
        binary = path.endswith(".bin")
        with open(path, "rb") as fh:  # GloVe's text files have no "<count> <dim>" header line
            head = fh.readline().split()
        kv = KeyedVectors.load_word2vec_format(path, binary=binary, no_header=not binary and len(head) != 2)
        if kv.vector_size != self.dim:
            raise ConfigError(f"encoder.pretrained_file={path!r} holds {kv.vector_size}-dim vectors but "
                              f"encoder.dim={self.dim}; set encoder.dim={kv.vector_size}")
        scale = float(kv.vectors.std())
        table = rng.normal(0.0, scale, (len(words), self.dim)).astype(np.float32)
        found = [i for i, w in enumerate(words) if w in kv.key_to_index]
        if found:
            table[found] = np.stack([kv[words[i]] for i in found])
        return table, len(found)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._state is None:
            raise RuntimeError("WordIdsEncoder.encode before fit")
        index = {w: i + 2 for i, w in enumerate(self._state["vocabulary"])}
        out = np.zeros((len(texts), self.max_len), dtype=np.int64)
        for r, words in enumerate(tokenize(texts, self._state["tokenizer"])):
            ids = [index.get(w, 1) for w in words[: self.max_len]]
            out[r, : len(ids)] = ids
        return out

    def state(self) -> dict:
        """The vocabulary (ids 2..), the tokenizer and the initial embedding table (rows: pad, unknown, words)."""
        if self._state is None:
            raise RuntimeError("WordIdsEncoder.state before fit")
        return dict(self._state)

    def load_state(self, state: dict) -> "WordIdsEncoder":
        if state.get("kind") != "words-1":
            raise ConfigError(f"the saved text encoder is {state.get('kind')!r}, not the word-id one "
                              "(encoder=words); keep the training run's encoder")
        self._state = {**state, "vocabulary": list(state["vocabulary"])}
        self.max_len = int(state["max_len"])
        return self


class TransformerEncoder:
    """Frozen pretrained transformer; ``pretrained_model`` is a local folder or a hub id."""

    def __init__(
        self,
        pretrained_model: str,
        dim: int | None = None,
        max_num_tokens_len: int = 64,
        pooling: str = "cls",
        batch_size: int = 64,
        device: str = "auto",
    ) -> None:
        if pooling not in ("cls", "mean"):
            raise ConfigError(f"encoder.pooling={pooling!r}; use cls or mean")
        if not pretrained_model:
            raise ConfigError("encoder.pretrained_model is empty; give a local model folder (or a hub id when online)")
        self.pretrained_model, self.dim = str(pretrained_model), dim
        self.max_num_tokens_len, self.pooling, self.batch_size = int(max_num_tokens_len), pooling, int(batch_size)
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        self._model = self._tokenizer = None

    def config(self) -> dict:
        p = Path(self.pretrained_model)
        # a local folder is identified by its content's mtimes too, so a replaced model re-encodes
        stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(p.glob("*"))] if p.is_dir() else []
        return {"kind": "transformer-1", "model": str(p.resolve()) if p.is_dir() else self.pretrained_model,
                "stamp": stamp, "max_len": self.max_num_tokens_len, "pooling": self.pooling}

    def _load(self) -> None:
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:
            raise ImportError(
                "encoder=transformer needs the optional 'transformers' package: "
                "pip install -e '.[transformers]' (or use the default encoder=tfidf)"
            ) from e
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.pretrained_model)
            self._model = AutoModel.from_pretrained(self.pretrained_model).to(self.device).eval()
        except OSError as e:
            raise MissingPathError(
                f"encoder.pretrained_model={self.pretrained_model!r} could not be loaded: give a local folder "
                "saved with save_pretrained() (this machine may be offline) ({e})"
            ) from e
        hidden = self._model.config.hidden_size
        if self.dim is not None and self.dim != hidden:
            raise ConfigError(f"encoder.dim={self.dim} but {self.pretrained_model} has hidden size {hidden}; set encoder.dim={hidden}")
        self.dim = hidden

    def fit(self, texts: Sequence[str]) -> "TransformerEncoder":
        if self._model is None:
            self._load()
        return self  # pretrained: nothing is fitted, so nothing can leak from later texts

    def state(self) -> dict:
        return {"kind": "transformer-1"}  # pretrained and frozen: its config names it all

    def load_state(self, state: dict) -> "TransformerEncoder":
        if state.get("kind") != "transformer-1":
            raise ConfigError(f"the saved text encoder is {state.get('kind')!r}, not a transformer; "
                              "keep the training run's encoder")
        return self

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            self._load()
        out = []
        for i in range(0, len(texts), self.batch_size):
            tok = self._tokenizer(list(texts[i : i + self.batch_size]), padding=True, truncation=True,
                                  max_length=self.max_num_tokens_len, return_tensors="pt").to(self.device)
            h = self._model(**tok).last_hidden_state  # (b, L, H)
            if self.pooling == "cls":
                v = h[:, 0]
            else:
                m = tok["attention_mask"].unsqueeze(-1).to(h.dtype)
                v = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
            out.append(v.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim or 0), dtype=np.float32)


def _state_digest(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(k.encode())
        h.update(v.numpy().tobytes() if isinstance(v, torch.Tensor) else json.dumps(v, default=str).encode())
    return h.hexdigest()


def encode_cached(encoder, fit_texts: Sequence[str] | None, texts: Sequence[str],
                  cache_dir: str | Path | None) -> np.ndarray:
    """Fit ``encoder`` on ``fit_texts`` and encode ``texts`` (float32 vectors, or int64 word ids);
    cached on disk by (config, texts).

    ``fit_texts=None``: the encoder is already fitted (``load_state``) and is used as it is.
    A cache hit restores the fitted state too, so ``encoder.state()`` works either way."""
    fitted = _state_digest(encoder.state()) if fit_texts is None else _digest(fit_texts)
    key = hashlib.sha256(
        json.dumps(encoder.config(), sort_keys=True, default=str).encode() + fitted.encode() + _digest(texts).encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / "embeddings" / f"{key}.npy" if cache_dir else None
    state_path = path.with_suffix(".state.pt") if path is not None else None
    if path is not None and path.exists() and state_path.exists():
        emb = np.load(path, allow_pickle=False)
        if emb.shape[0] == len(texts):
            log.info("Loaded cached text embeddings %s", path)
            if getattr(encoder, "dim", None) is None:
                encoder.dim = emb.shape[1]
            if fit_texts is not None:
                encoder.load_state(torch.load(state_path, weights_only=True))
            return emb
    if fit_texts is not None:
        encoder.fit(fit_texts)
    emb = np.asarray(encoder.encode(texts))
    if emb.dtype.kind == "f":  # vectors as float32; word ids (encoder=words) stay integers
        emb = emb.astype(np.float32)
    if path is not None:
        atomic_write(path, lambda fh: np.save(fh, emb))
        atomic_write(state_path, lambda fh: torch.save(encoder.state(), fh))
    return emb
