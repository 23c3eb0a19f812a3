"""Pictures: skeletons and 3D panels drawn on frames (`draw.py`), used by the demo and by the
engine's TensorBoard previews; a finished run's figures (`figures.py`: learning curve, confusion
matrix, contact sheet) and their orchestration for `tools/showcase.py` (`showcase.py`)."""
