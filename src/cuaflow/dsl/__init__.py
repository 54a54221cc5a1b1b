"""The workflow language: models, normalisation, validation, templates, conditions, schema."""
