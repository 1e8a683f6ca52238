"""marsbench: the Mars-Bench benchmark for vision foundation models on Mars science tasks."""

__version__ = "0.1.0"
