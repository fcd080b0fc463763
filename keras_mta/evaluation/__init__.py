"""keras_mta.evaluation (see ../ARCHITECTURE sketch in CONTRIBUTING.md)."""
