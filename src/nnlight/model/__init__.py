"""The model: the network a plan and a run's ``network`` choice describe, and its weights.

One place, below training, inference and exchange, for building a network (:mod:`nnlight.model.network`) and
loading weights into it: nnlight checkpoints (:mod:`nnlight.model.checkpoints`), a run folder's or an nnU-Net
checkpoint's weights (:mod:`nnlight.model.weights`) and ``init_from=`` (:mod:`nnlight.model.pretrained`).
"""
