"""cuaflow: a self-hostable, durable workflow engine for computer-use agents."""

__version__ = "0.1.0"
