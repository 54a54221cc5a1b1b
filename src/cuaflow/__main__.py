"""``python -m cuaflow`` runs the command line."""

from cuaflow.cli.main import app

app()
