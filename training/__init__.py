"""Training: point-in-time examples, time split, LightGBM, calibration, evaluation, MLflow, promotion.

Pure steps (dataset, split, model, calibrate, metrics, baselines, pipeline) know nothing of
tracking; `tracking`, `promote` and `cli` are the edges that talk to MLflow and the disk.
"""
