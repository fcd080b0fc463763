"""keras_mta.models (see ../ARCHITECTURE sketch in CONTRIBUTING.md)."""
