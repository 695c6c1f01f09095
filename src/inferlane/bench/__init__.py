"""Workloads and the in-process mode comparison behind ``inferlane bench``."""
