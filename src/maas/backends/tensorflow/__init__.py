"""The TensorFlow backend: Keras 3 models on TensorFlow, behind the same api as torch.

Importing this package is cheap; it only prepares the environment so that the
first `import keras` (in `maas.models.tensorflow` or `api`) runs on
TensorFlow and keeps TensorFlow's C++ INFO/WARNING chatter out of a normal run
(errors still print). A user's own TF_CPP_MIN_LOG_LEVEL wins.
"""

from __future__ import annotations

import os
import sys

from maas.errors import ConfigError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # 2: errors only (0 all, 1 no INFO)


def keras():
    """Keras 3, on TensorFlow whatever KERAS_BACKEND says elsewhere in the environment."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras as _keras

    if _keras.backend.backend() != "tensorflow":
        raise ConfigError(f"Keras was already imported with KERAS_BACKEND={_keras.backend.backend()!r}; "
                          "trainer.backend=tensorflow needs KERAS_BACKEND=tensorflow (or unset)")
    return _keras
