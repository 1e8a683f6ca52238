"""`python -m marsbench ...` (also what `torchrun -m marsbench run ...` starts)."""

from marsbench.cli.main import app

app()
