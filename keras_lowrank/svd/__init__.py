"""SVD compression math: truncated factors, rank selection, spectrum plots.

Example:
```python
from keras_lowrank import svd

s = svd.singular_values(dense_layer)
k = svd.select_rank(s, energy=0.9)
left, right = svd.truncated_svd(dense_layer.kernel, rank=k)
svd.relative_error(dense_layer.kernel, left, right)
```
"""

from keras_lowrank.svd.factorization import balanced_factors
from keras_lowrank.svd.factorization import kernel_matrix
from keras_lowrank.svd.factorization import relative_error
from keras_lowrank.svd.factorization import singular_values
from keras_lowrank.svd.factorization import truncated_svd
from keras_lowrank.svd.factorization import truncated_triplets
from keras_lowrank.svd.rank_selection import cumulative_energy
from keras_lowrank.svd.rank_selection import select_rank
from keras_lowrank.svd.spectrum_plot import plot_spectrum

__all__ = [
    "balanced_factors",
    "cumulative_energy",
    "kernel_matrix",
    "plot_spectrum",
    "relative_error",
    "select_rank",
    "singular_values",
    "truncated_svd",
    "truncated_triplets",
]
