"""Synthetic abdominal CT phantom with exact ground truth (the project's test bed)."""

from .generate import PhantomCase, generate_case
from .labels import Anatomy, TRUNK_MUSCLES, Tissue
from .writer import write_case, write_dataset

__all__ = ["PhantomCase", "generate_case", "write_case", "write_dataset", "Anatomy", "Tissue", "TRUNK_MUSCLES"]
