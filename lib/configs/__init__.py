"""One module per model; each holds a ``TaskConfig`` subclass and is found by main.py.

The module name is the model name used in ``--conf models <name>[,<name>...]``.
"""
