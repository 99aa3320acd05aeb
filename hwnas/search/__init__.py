"""Training-free search: the cell space, the spiking network simulator, scores and strategies."""
