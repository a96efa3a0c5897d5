"""The Hydra adapter: the only code that imports hydra or omegaconf."""
