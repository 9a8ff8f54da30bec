"""The ranking (CTR) task: examples -> batches -> a ranking head -> AUC / GAUC / log loss.

``examples`` (leak-free temporal examples, sampled negatives), ``inputs`` (the data and its
batches), ``head`` (the encoder + target-attention head, the logistic baseline), ``task``
(`RankingTask`: what the trainer trains), ``baselines`` (popularity and item-kNN, which train
nothing), ``popularity`` / ``itemknn`` (their statistics).
"""
