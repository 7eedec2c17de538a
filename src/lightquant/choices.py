"""Every enumerated config value, in one module that imports nothing heavy.

The entry points check a config against these before torch, pandas or any data is loaded, so
a typo costs the two seconds of composing the config; the modules that act on a value import
its list from here, so the check and the code cannot disagree.
"""

SPLITS = ("train", "val", "test")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("32", "bf16", "16")  # trainer.precision: fp32, bf16 autocast, fp16 autocast with loss scaling
LOSSES = ("bce", "hinge")
#: trainer.shuffle: a fresh permutation per epoch | the Adv-ALSTM code's order (data order, then one
#: permutation applied again every epoch) | data order every epoch
SHUFFLES = ("epoch", "repeat", "none")
STRATEGIES = ("long_only", "long_short")  # backtest.strategy
NEWS_ALIGNMENTS = ("next", "previous")  # dataset.news_alignment
ON_JUMP = ("warn", "error", "adjust")  # dataset.on_jump
LABEL_PRICES = ("open", "high", "low", "close", "adj_close")  # dataset.label.price
EARLY_STOPPING_MODES = ("min", "max")
TOKENIZERS = ("auto", "whitespace", "jieba")  # encoder.tokenizer (word2vec)
WORD2VEC_POOLINGS = ("sif", "mean")  # encoder.pooling (word2vec)
WORD_VECTOR_MODELS = ("word2vec", "fasttext")  # encoder.model (word2vec, words): how word vectors are trained
WORD_ENCODERS = ("gru", "attention", "mean")  # model.word_encoder of the news models, with encoder=words
WORD_VECTOR_SOURCES = ("train", "random")  # encoder.vectors (words) unless encoder.pretrained_file is given
#: model.init of the LSTM family: PyTorch's own initialisation, or TensorFlow 1's (the Adv-ALSTM authors' code)
INITS = ("torch", "tensorflow")
#: what every evaluation reports per split: trainer.early_stopping.monitor may name any (val/<metric>)
EPOCH_METRICS = ("loss", "accuracy", "mcc", "f1", "up_share", "pred_up_share", "majority_accuracy", "p_vs_majority",
                 "ic", "ic_std", "ic_ir", "rank_ic", "rank_ic_std", "rank_ic_ir")
#: ... and the final evaluation adds: optimized_metric may name any (<split>/<metric>)
FINAL_METRICS = (*EPOCH_METRICS, "auc")
#: tracker.mode -> SwanLab's own mode name
SWANLAB_MODES = {"local": "local", "offline": "offline", "cloud": "online", "online": "online", "disabled": "disabled"}
