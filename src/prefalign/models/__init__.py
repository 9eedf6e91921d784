"""Loading models, reading their geometry, and the prefix/cache plumbing shared by all prefix methods."""

from .introspect import ModelGeometry, geometry
from .loading import ALIASES, LoadedModel, load_backbone, resolve_model_path

__all__ = ["ALIASES", "LoadedModel", "ModelGeometry", "geometry", "load_backbone", "resolve_model_path"]
