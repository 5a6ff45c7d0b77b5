"""isograd-relay's domain and jobs: Isograd client, grades, storage, sinks, actors, settings."""

__version__ = "0.1.0"
