"""Running exported networks on other simulators (Norse now; Lava later, imported lazily)."""
