"""rgcd: reasoning-guided cross-domain representations, from short videos to live streams."""

__version__ = "0.1.0"
