"""The design space: genotypes as data (no torch), the neuron registry and the hand designs."""

from search_spaces.genotype import Decision, Genotype, SearchSpace
from search_spaces.neurons import NEURONS
from search_spaces.presets import PRESETS, preset

__all__ = ["Decision", "Genotype", "SearchSpace", "NEURONS", "PRESETS", "preset"]
