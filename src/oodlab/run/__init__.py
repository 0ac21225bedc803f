"""One run of ``src/train.py`` or ``src/eval.py``, from a composed Hydra config to its outputs.

The modules, in the order a run meets them:

* :mod:`~oodlab.run.runtime`: what Hydra's runtime says (multirun, sweep group, overrides,
  SLURM requeue). Torch-free, imported by the entry points.
* :mod:`~oodlab.run.process`: the process-wide settings a run makes, each with its reason.
* :mod:`~oodlab.run.resume`: the resume plan, decided once: skip, which checkpoint, W&B id.
* :mod:`~oodlab.run.check`: the config's values, checked before any data loads.
* :mod:`~oodlab.run.build`: data module, task, callbacks, loggers, Fabric, a plain model.
* :mod:`~oodlab.run.train`: training and its evaluation.
* :mod:`~oodlab.run.evaluate`: the evaluation of a saved model, and the call into
  ``oodlab.evaluate`` that both share.
* :mod:`~oodlab.run.sweep`: what a multirun needs beyond its jobs: the failure record of a job
  and the summary callback at its end.

Nothing here is imported by ``import oodlab.run``: the entry points answer ``--help`` without
loading torch.
"""
