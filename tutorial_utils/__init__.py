"""distill-and-compress: helpers for the notebooks, one small module per stage.

Import modules, not names: `from tutorial_utils import data, training` then `data.load(...)`.
"""

__version__ = "0.1.0"
