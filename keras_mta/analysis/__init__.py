"""Analysis of runs: the teacher/student trajectory, plots of training
curves and results, the results table."""

from keras_mta.analysis.callback import TrajectoryCallback
from keras_mta.analysis.plots import plot_results_chart
from keras_mta.analysis.plots import plot_results_table
from keras_mta.analysis.plots import plot_training_curves
from keras_mta.analysis.plots import plot_trajectory_heatmaps
from keras_mta.analysis.plots import plot_trajectory_lines
from keras_mta.analysis.results import format_table
from keras_mta.analysis.results import results_rows
from keras_mta.analysis.results import write_results
from keras_mta.analysis.trajectory import TrajectoryTable
from keras_mta.analysis.trajectory import linear_cka
from keras_mta.analysis.trajectory import trajectory
