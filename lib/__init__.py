"""Server-side glue of the MONAI Label app: model configs, infer and train tasks."""
