"""Pure-PyTorch training for the l2l study: data, block models, methods, measurement.

Nothing here imports Ray except `trainables.trainable`, so this package runs with torch alone.
"""
