"""`compress`: a model whose Dense / EinsumDense kernels are SVD factors.

Internal module; the public names are `klr.compress` and `klr.CompressionReport`.
"""
