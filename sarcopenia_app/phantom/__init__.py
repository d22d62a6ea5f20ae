"""Synthetic abdominal CT phantom with exact ground truth (the project's test bed)."""

from .generate import PhantomCase, generate_case
from .labels import Anatomy, TRUNK_MUSCLES, Tissue

__all__ = ["PhantomCase", "generate_case", "Anatomy", "Tissue", "TRUNK_MUSCLES"]
