"""Database -> arrays: interaction snapshots, id maps, texts to embed."""
