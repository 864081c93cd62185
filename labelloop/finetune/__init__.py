"""Fine-tuning and evaluation runs: LoRA (peft) or full fine-tuning on Hugging Face ``Trainer``.

:class:`~labelloop.finetune.config.RunConfig` describes a run; :func:`~labelloop.finetune.train.run_training`
executes it (under ``accelerate launch`` for several processes or machines); the
:class:`~labelloop.finetune.registry.RunRegistry` records every run under ``$LABELLOOP_HOME/runs``.
"""
