"""Pickers: choose one of the scored candidates."""
