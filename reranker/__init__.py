"""Learning to rank: features, served-feature logs, LightGBM training, model versions, serving."""
