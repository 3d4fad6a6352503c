"""kdtools: run LLM post-training knowledge-distillation studies end to end, on Slurm or a laptop.

    kdtools --help
"""

__version__ = "0.1.0"
