"""MONAI Label infer tasks: adapters from server requests to ``sarcopenia_app`` code."""
