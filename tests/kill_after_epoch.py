"""``python tests/kill_after_epoch.py <train.py overrides>``: train.py, killed with SIGKILL right
after epoch ``$LQ_KILL_AFTER_EPOCH`` is checkpointed (no cleanup, no atexit), for the resume test."""

import os
import runpy
import signal
import sys
from pathlib import Path

from lightquant.engine import Trainer

KILL_AFTER = int(os.environ["LQ_KILL_AFTER_EPOCH"])


class KillAfterEpoch:
    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:  # called after last.pt is written
        if trainer.epoch == KILL_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)


_init = Trainer.__init__


def _init_with_kill(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.callbacks.append(KillAfterEpoch())


Trainer.__init__ = _init_with_kill
train_py = Path(__file__).resolve().parents[1] / "train.py"
sys.argv[0] = str(train_py)
runpy.run_path(str(train_py), run_name="__main__")
