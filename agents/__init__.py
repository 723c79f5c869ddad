"""Faust agents, one subpackage per capability: a pure core plus thin wiring."""
