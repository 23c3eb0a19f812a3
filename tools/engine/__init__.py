"""The training engine shared by all tasks: configs, trainer, checkpoints, distributed, logs.

Entry point: `python -m selecsls.tools.train CONFIG.yaml [section.key=value ...]`.
"""
