"""Inference: load a checkpoint of any kind once, and restore tensors, arrays and image files with it.

- :mod:`~exda.inference.loader`: the one loader (:func:`load_network`: exda checkpoints and run folders,
  BasicSR ``.pth``, Lightning ``.ckpt``, plain state dicts) and the record of what it loaded
  (:class:`CheckpointInfo`); the exda format itself is read in :mod:`~exda.inference.checkpoint_format`.
- :mod:`~exda.inference.restorer`: :class:`Restorer` (a loaded network on the fast path or an ONNX backend,
  restoring tensors, arrays and files within a memory budget) and the process's cache of them,
  :data:`RESTORERS`, which ``exda restore``, ``exda serve`` and :func:`exda.restore` share.
- the paths a restoration takes: :mod:`~exda.inference.fast` (fp32 / bf16, channels-last),
  :mod:`~exda.inference.compiled` (AOTInductor artefacts cached on disk per weights, precision and shape),
  :mod:`~exda.inference.threads` (threads = the idle cores),
  :mod:`~exda.inference.backends` and :mod:`~exda.inference.export` (ONNX, onnxruntime, OpenVINO),
  :mod:`~exda.inference.tiling` and :mod:`~exda.inference.memory` (tiles within a memory budget);
  :mod:`~exda.inference.pretrained`: the shipped default models.
- the web page of ``exda serve``: :mod:`~exda.inference.serve` and :mod:`~exda.inference.serve_lanes`;
  :func:`exda.restore` (:mod:`~exda.inference.api`). The commands ``exda restore``, ``exda serve`` and
  ``exda export`` live in :mod:`exda.commands`.
"""

from exda.inference.loader import CheckpointInfo, load_network
from exda.inference.restorer import RESTORERS, Restorer

__all__ = ["RESTORERS", "CheckpointInfo", "Restorer", "load_network"]
