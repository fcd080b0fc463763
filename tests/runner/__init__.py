"""Tests of keras_mta.runner modules."""
