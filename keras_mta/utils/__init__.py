"""Small helpers shared across keras-mta: one atomic file write, one cache
directory lookup, one progress-message channel.

Only the standard library is imported here (no keras, no TensorFlow), so
every package may use these.
"""

from keras_mta.utils.cache_dir import cache_dir
from keras_mta.utils.files import atomic_write
from keras_mta.utils.progress import fit_verbosity
from keras_mta.utils.progress import is_quiet
from keras_mta.utils.progress import say
