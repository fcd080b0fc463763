"""keras_mta.preprocessing (see ../ARCHITECTURE sketch in CONTRIBUTING.md)."""
