"""Vertebral level along the scan: where mid-L3 is, or that it is not in the field of view."""

from .locator import L3Location, LevelLocator, load_locator, locate_l3

__all__ = ["L3Location", "LevelLocator", "load_locator", "locate_l3"]
