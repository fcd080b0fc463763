"""Analysis of runs: plots of training curves and results."""

from keras_mta.analysis.plots import plot_results_table
from keras_mta.analysis.plots import plot_training_curves
