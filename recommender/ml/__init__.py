"""Pure numpy/torch machine learning: datasets, models, metrics. Never imports Django."""
